"""Route attachment: which listeners of which Gateways a route's parentRefs bind to.

Implements the ParentReference rules shared by every route kind: name,
namespace, sectionName and port selection; Listener.allowedRoutes (namespaces
From Same/All/Selector, kinds); hostname intersection; and the route parent
reasons NoMatchingParent, NotAllowedByListeners, NoMatchingListenerHostname.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portico.models import ParentReference, Resource
from portico.objects import GATEWAY_GROUP, ObjectKey
from portico.translator import hostnames
from portico.translator.conditions import Cond
from portico.translator.context import Context, selector_matches
from portico.translator.gateway import GatewayState, ListenerState

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


def attach(ctx: Context, route: Resource, route_hostnames: list[str],
           parent_refs: list[ParentReference], gateways: dict[ObjectKey, GatewayState]) -> list[ParentResult]:
    """One result per parentRef that names a Gateway of ours (others are not ours
    to report on: their status entries belong to other controllers)."""
    results = []
    for ref in parent_refs:
        key = gateway_key(route, ref)
        gw = gateways.get(key) if key else None
        if gw is not None:
            results.append(attach_one(ctx, route, route_hostnames, ref, gw))
    return results


def attach_one(ctx: Context, route: Resource, route_hostnames: list[str],
               ref: ParentReference, gw: GatewayState) -> ParentResult:
    result = ParentResult(ref, gw)
    candidates = [ls for ls in gw.listeners
                  if (ref.section_name is None or ls.name == ref.section_name)
                  and (ref.port is None or ls.spec.port == ref.port)]
    if not candidates:
        result.conds.append(Cond("Accepted", False, "NoMatchingParent",
                                 "no listener matches the parentRef's sectionName and port"))
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
    return namespace == ls.gateway.namespace


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
