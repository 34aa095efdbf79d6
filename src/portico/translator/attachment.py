"""Route attachment: which listeners of which Gateways a route's parentRefs bind to.

Implements the ParentReference rules shared by every route kind: name,
namespace, sectionName and port selection; Listener.allowedRoutes (namespaces
From Same/All/Selector, kinds); hostname intersection; and the route parent
reasons NoMatchingParent, NotAllowedByListeners, NoMatchingListenerHostname.

A parentRef names a Gateway or a ListenerSet (GEP-1713). A Gateway parent
offers only the Gateway's own listeners, a ListenerSet parent only that set's
(sectionName is the ListenerSet listener's name); both report on the Gateway
whose address serves them.

Default Gateways (GEP-3793): a Gateway with `defaultScope: All` claims every
route with `useDefaultGateways: All` "subject to the usual rules about which
routes the Gateway can attach to" (allowedRoutes, hostnames), as if the route
named the whole Gateway in a parentRef; its status entry names that Gateway.
A route that already names the Gateway in a parentRef is not claimed twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portico.models import CommonRouteSpec, ListenerSet, ParentReference, Resource
from portico.objects import GATEWAY_GROUP, ObjectKey
from portico.translator import hostnames
from portico.translator.conditions import Cond
from portico.translator.context import Context, selector_matches
from portico.translator.gateway import GatewayState, ListenerState
from portico.translator.listenerset import LISTENERSET_GROUPS, parent_gateway_key

# Listener protocols whose routes carry hostnames (TCP and UDP have none).
HOSTNAME_PROTOCOLS = {"HTTP", "HTTPS", "TLS"}


@dataclass
class Binding:
    """A route bound to one listener, serving these hostnames there."""

    listener: ListenerState
    hostnames: list[str]


@dataclass
class ParentResult:
    ref: ParentReference
    gateway: GatewayState
    bindings: list[Binding] = field(default_factory=list)
    conds: list[Cond] = field(default_factory=list)


def gateway_key(route: Resource, ref: ParentReference) -> ObjectKey | None:
    if ref.group != GATEWAY_GROUP or ref.kind != "Gateway":
        return None
    return ObjectKey(GATEWAY_GROUP, "Gateway", ref.namespace or route.namespace, ref.name)


def resolve_parent(ctx: Context, route: Resource, ref: ParentReference,
                   gateways: dict[ObjectKey, GatewayState]) -> tuple[GatewayState, ListenerSet | None] | None:
    """(Gateway of ours, ListenerSet or None for the Gateway itself) a parentRef
    names; None when the parent is not ours."""
    if ref.kind == "ListenerSet" and ref.group in LISTENERSET_GROUPS:
        lset = ctx.get(ListenerSet, "ListenerSet", ref.namespace or route.namespace, ref.name)
        key = parent_gateway_key(lset) if lset else None
        gw = gateways.get(key) if key else None
        return (gw, lset) if gw else None
    key = gateway_key(route, ref)
    gw = gateways.get(key) if key else None
    return (gw, None) if gw else None


def attach(ctx: Context, route: Resource, route_hostnames: list[str],
           spec: CommonRouteSpec, gateways: dict[ObjectKey, GatewayState]) -> list[ParentResult]:
    """One result per parentRef that names a Gateway of ours, or a ListenerSet
    of one (others are not ours to report on: their status entries belong to
    other controllers), and one per default Gateway that claims the route."""
    results = []
    for ref in spec.parent_refs + default_parent_refs(route, spec, gateways):
        parent = resolve_parent(ctx, route, ref, gateways)
        if parent is not None:
            results.append(attach_one(ctx, route, route_hostnames, ref, *parent))
    return results


def default_parent_refs(route: Resource, spec: CommonRouteSpec,
                        gateways: dict[ObjectKey, GatewayState]) -> list[ParentReference]:
    """The default Gateways of ours that claim this route, as parentRefs."""
    if spec.use_default_gateways != "All":
        return []
    named = {gateway_key(route, ref) for ref in spec.parent_refs}
    return [ParentReference(namespace=key.namespace, name=key.name)
            for key, gw in sorted(gateways.items(), key=lambda item: (item[0].namespace, item[0].name))
            if gw.gateway.spec.default_scope == "All" and key not in named]


def attach_one(ctx: Context, route: Resource, route_hostnames: list[str],
               ref: ParentReference, gw: GatewayState, lset: ListenerSet | None = None) -> ParentResult:
    result = ParentResult(ref, gw)
    offered = parent_listeners(gw, lset)
    candidates = [ls for ls in offered
                  if (ref.section_name is None or ls.name == ref.section_name)
                  and (ref.port is None or ls.spec.port == ref.port)]
    if not candidates:
        message = ("no listener matches the parentRef's sectionName and port" if offered or lset is None
                   else f"ListenerSet {lset.namespace}/{lset.name} is not accepted by its Gateway")
        result.conds.append(Cond("Accepted", False, "NoMatchingParent", message))
        return result
    reasons: list[Cond] = []
    for ls in candidates:
        problem = listener_refusal(ctx, route, ls)
        if problem:
            reasons.append(problem)
            continue
        names = route_hostnames_on(ls, route_hostnames)
        if not names:
            reasons.append(Cond("Accepted", False, "NoMatchingListenerHostname",
                                "no route hostname matches the listener hostname"))
            continue
        result.bindings.append(Binding(ls, names))
    if not result.bindings:
        # the most telling reason: a hostname mismatch means the listener allowed us
        best = next((c for c in reasons if c.reason == "NoMatchingListenerHostname"), reasons[0])
        result.conds.append(best)
    return result


def parent_listeners(gw: GatewayState, lset: ListenerSet | None) -> list[ListenerState]:
    """The listeners a parent offers. A Gateway parent: its own only; a route
    reaches ListenerSet listeners through the ListenerSet (GEP-1713: "Routes can
    attach to a ListenerSet by specifying it as a parentRef"). A ListenerSet
    that is not attached offers none."""
    if lset is None:
        return gw.own_listeners
    key = lset.key
    return [ls for ls in gw.listeners if ls.listener_set is not None and ls.listener_set.key == key]


def listener_refusal(ctx: Context, route: Resource, ls: ListenerState) -> Cond | None:
    """Listener.allowedRoutes: the route's kind and namespace must be allowed."""
    if not ls.accepted:
        return Cond("Accepted", False, "NoMatchingParent", f"listener {ls.name} is not accepted")
    if not ls.allows_kind(route.kind):
        return Cond("Accepted", False, "NotAllowedByListeners",
                    f"listener {ls.name} does not allow {route.kind}")
    if not namespace_allowed(ctx, ls, route.namespace):
        return Cond("Accepted", False, "NotAllowedByListeners",
                    f"listener {ls.name} does not allow routes from namespace {route.namespace}")
    return None


def namespace_allowed(ctx: Context, ls: ListenerState, namespace: str) -> bool:
    ns = ls.spec.allowed_routes.namespaces
    if ns.from_ == "All":
        return True
    if ns.from_ == "Selector":
        return ns.selector is not None and selector_matches(ns.selector, ctx.namespace_labels(namespace))
    if ns.from_ == "None":
        return False
    # Same: the namespace of the Gateway or ListenerSet that declares the listener
    return namespace == ls.owner.namespace


def route_hostnames_on(ls: ListenerState, route_hostnames: list[str]) -> list[str]:
    if ls.protocol not in HOSTNAME_PROTOCOLS:
        return ["*"]
    return hostnames.intersect(ls.spec.hostname, route_hostnames)


def parent_ref_status(ref: ParentReference) -> dict[str, object]:
    """The parentRef as written by the user, with group and kind made explicit."""
    out: dict[str, object] = {"group": ref.group, "kind": ref.kind, "name": ref.name}
    if ref.namespace is not None:
        out["namespace"] = ref.namespace
    if ref.section_name is not None:
        out["sectionName"] = ref.section_name
    if ref.port is not None:
        out["port"] = ref.port
    return out
