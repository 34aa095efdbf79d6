"""Portico's policies (BackendTrafficPolicy, SecurityPolicy, RateLimitPolicy,
ClientTrafficPolicy): GEP-713 direct attachment, which policy is in effect where, and
their status.

Rules (GEP-713, as the Portico CRDs document them):
- targetRefs name objects in the policy's namespace, of the kinds its CRD lists
  (`TARGET_KINDS`): routes (sectionName: one rule, HTTPRouteRule.name), Gateways
  (sectionName: one listener), Services (sectionName: one port by name) and XBackends.
  Another kind is Accepted=False with reason Invalid; a target (or section) that does
  not exist, reason TargetNotFound.
- Per target, the oldest policy of a kind (creationTimestamp, then namespace/name)
  wins; the others are Accepted=False with reason Conflicted.
- The more specific target wins: a rule over its route (`for_rule`), a listener over
  its Gateway (`for_listener`), a route over the listener it is served on
  (`translator.traffic`). A Service's policy is the base of the traffic to it, which a
  route's or Gateway's policy overrides field by field.
- Ancestors: a Gateway target is its own ancestor; a route's are the Gateways it is
  attached to; a Service's or XBackend's, the Gateways of the routes that send to it.
  One PolicyAncestorStatus per Gateway; a target reached from no Gateway of ours is
  reported on the target itself.
- What a policy changes is `translator.traffic`'s and `translator.listenerpolicy`'s
  concern; a value Portico cannot program (`traffic.problem`) is Accepted=False,
  reason Invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portico.models import (
    POLICY_KINDS,
    PORTICO_GROUP,
    BackendTrafficPolicy,
    ClientTrafficPolicy,
    Gateway,
    GRPCRoute,
    HTTPRoute,
    LocalPolicyTargetReference,
    PorticoBackend,
    RateLimitPolicy,
    Resource,
    SecurityPolicy,
    Service,
    XBackend,
    XBackendTrafficPolicy,
)
from portico.objects import CORE_GROUP, GATEWAY_GROUP, ObjectKey
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.listenerpolicy import client_traffic_problem
from portico.translator.traffic import problem

XBACKEND_GROUP = "gateway.networking.x-k8s.io"
AnyPolicy = BackendTrafficPolicy | SecurityPolicy | RateLimitPolicy | ClientTrafficPolicy | XBackendTrafficPolicy
ROUTE_KINDS: dict[str, type[HTTPRoute | GRPCRoute]] = {"HTTPRoute": HTTPRoute, "GRPCRoute": GRPCRoute}
_ROUTES = ((GATEWAY_GROUP, "HTTPRoute"), (GATEWAY_GROUP, "GRPCRoute"))
_GATEWAY = ((GATEWAY_GROUP, "Gateway"),)
_BACKENDS = ((CORE_GROUP, "Service"), (XBACKEND_GROUP, "XBackend"), (PORTICO_GROUP, "Backend"))
# (group, kind) each policy kind may target, as its CRD documents
TARGET_KINDS: dict[str, tuple[tuple[str, str], ...]] = {
    "BackendTrafficPolicy": _ROUTES + _GATEWAY + _BACKENDS,
    "SecurityPolicy": _ROUTES + _GATEWAY,
    "RateLimitPolicy": _ROUTES + _GATEWAY,
    "ClientTrafficPolicy": _GATEWAY,
    "XBackendTrafficPolicy": _BACKENDS,
}
SECTION_NOUNS = {"HTTPRoute": "rule", "GRPCRoute": "rule", "Gateway": "listener", "Service": "port"}
# (policy kind, target key, section name or None for the whole target)
TargetKey = tuple[str, ObjectKey, str | None]


@dataclass
class Attached:
    policy: AnyPolicy
    conds: list[Cond] = field(default_factory=list)  # the policy's own problems
    ancestors: dict[ObjectKey, list[Cond]] = field(default_factory=dict)
    targets: list[ObjectKey] = field(default_factory=list)  # the objects it names that exist

    @property
    def precedence(self) -> tuple[str, str, str]:
        p = self.policy
        return (p.metadata.creation_timestamp, p.namespace, p.name)


class RoutePolicies:
    """The policies of one translation: who wins on which target, and the ancestors."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.policies = [Attached(p) for kind in POLICY_KINDS for p in ctx.all(Resource, kind)
                         if isinstance(p, AnyPolicy)]
        self.index: dict[TargetKey, list[Attached]] = {}
        self.invalid: dict[ObjectKey, list[Attached]] = {}
        self.by_target: dict[ObjectKey, list[TargetKey]] = {}
        for attached in sorted(self.policies, key=lambda a: a.precedence):
            why = problem(attached.policy) or client_traffic_problem(attached.policy)
            if why:
                attached.conds.append(Cond("Accepted", False, "Invalid", why))
            for ref in attached.policy.spec.target_refs:
                key = self.target(ctx, attached, ref)
                if key is None:
                    continue
                attached.targets.append(key)
                if why:  # reported on the Gateways of its target all the same
                    self.invalid.setdefault(key, []).append(attached)
                    continue
                target = (attached.policy.kind, key, ref.section_name)
                if target not in self.index:
                    self.by_target.setdefault(key, []).append(target)
                self.index.setdefault(target, []).append(attached)
        for key in [k for k in self.by_target if k.kind == "Gateway"] + [k for k in self.invalid
                                                                         if k.kind == "Gateway"]:
            self.record_target(key, [key])

    @staticmethod
    def target(ctx: Context, attached: Attached, ref: LocalPolicyTargetReference) -> ObjectKey | None:
        policy = attached.policy
        group = core_group(ref.group)
        key = ObjectKey(group, ref.kind, policy.namespace, ref.name)
        allowed = TARGET_KINDS[policy.kind]
        if (group, ref.kind) not in allowed:
            kinds = ", ".join(kind for _, kind in allowed)
            attached.ancestors[key] = [Cond("Accepted", False, "Invalid",
                                            f"targetRef kind {ref.group}/{ref.kind} is not supported ({kinds})")]
            return None
        found, sections = RoutePolicies.sections(ctx, ref.kind, policy.namespace, ref.name)
        if not found or (ref.section_name and ref.section_name not in sections):
            noun = SECTION_NOUNS.get(ref.kind, "section")
            what = f"{ref.kind} {policy.namespace}/{ref.name}" + (f" {noun} {ref.section_name}" if found else "")
            attached.ancestors[key] = [Cond("Accepted", False, "TargetNotFound", f"{what} not found")]
            return None
        return key

    @staticmethod
    def sections(ctx: Context, kind: str, namespace: str, name: str) -> tuple[bool, set[str]]:
        """Whether the target exists, and the names a sectionName may give: rules of a
        route, listeners of a Gateway, ports of a Service."""
        if kind in ROUTE_KINDS:
            route = ctx.get(ROUTE_KINDS[kind], kind, namespace, name)
            return route is not None, {r.name for r in route.spec.rules if r.name} if route else set()
        if kind == "Gateway":
            gw = ctx.get(Gateway, kind, namespace, name)
            return gw is not None, {ls.name for ls in gw.spec.listeners} if gw else set()
        if kind == "Service":
            svc = ctx.get(Service, kind, namespace, name)
            return svc is not None, {p.name for p in svc.spec.ports if p.name} if svc else set()
        if kind == "Backend":
            return ctx.get(PorticoBackend, kind, namespace, name) is not None, set()
        return ctx.get(XBackend, kind, namespace, name) is not None, set()

    def first(self, *targets: TargetKey) -> AnyPolicy | None:
        for target in targets:
            found = self.index.get(target)
            if found:
                return found[0].policy
        return None

    def for_rule(self, kind: str, route: ObjectKey, rule: str | None) -> AnyPolicy | None:
        """The policy of `kind` that targets a route's rule: for the rule by name, else
        for the route (GEP-713: the more specific target wins)."""
        if not self.index:
            return None
        return self.first(*([(kind, route, rule)] if rule else []), (kind, route, None))

    def for_backend(self, kind: str, group: str, backend_kind: str, namespace: str, name: str,
                    section: str | None) -> AnyPolicy | None:
        """The policy of `kind` on a Service (port `section`) or XBackend."""
        key = ObjectKey(group, backend_kind, namespace, name)
        return self.first(*([(kind, key, section)] if section else []), (kind, key, None))

    def for_listener(self, kind: str, gateway: ObjectKey, listener: str) -> AnyPolicy | None:
        """The policy of `kind` on a Gateway listener: for it by name, else the Gateway."""
        if not self.index:
            return None
        return self.first((kind, gateway, listener), (kind, gateway, None))

    def overridden(self, policy: Resource, ancestor: ObjectKey, message: str) -> None:
        """`policy` does not apply at `ancestor` after all (another takes its place there)."""
        for attached in self.policies:
            if attached.policy is policy:
                attached.ancestors[ancestor] = [Cond("Accepted", False, "Conflicted", message)]

    def record(self, route: Resource, gateways: list[ObjectKey]) -> None:
        """The Gateways `route` is attached to become ancestors of its policies and of
        the policies of the backends it sends to."""
        if not self.by_target and not self.invalid:
            return  # no policy targets anything: the common case, kept free
        self.record_target(route.key, gateways)
        for ref in backend_refs(route):
            group = core_group(ref.group)
            key = ObjectKey(group, ref.kind, ref.namespace or route.namespace, ref.name)
            self.record_target(key, gateways, self.port_name(key, ref.port))

    def port_name(self, key: ObjectKey, port: int | None) -> str | None:
        svc = self.ctx.get(Service, "Service", key.namespace, key.name) if key.kind == "Service" else None
        return next((p.name for p in svc.spec.ports if p.port == port), None) if svc else None

    def record_target(self, target_key: ObjectKey, gateways: list[ObjectKey], port: str | None = None) -> None:
        """`gateways` are ancestors of the policies of `target_key` (for a Service, those
        of the whole Service and of `port`, the port a route sends to)."""
        for invalid in self.invalid.get(target_key, []):
            for gw in gateways:
                invalid.ancestors.setdefault(gw, invalid.conds)
        for kind, key, section in self.by_target.get(target_key, []):
            if key.kind == "Service" and section is not None and section != port:
                continue
            winner, *losers = self.index[(kind, key, section)]
            for gw in gateways:
                winner.ancestors.setdefault(gw, winner.conds)
                for loser in losers:
                    noun = SECTION_NOUNS.get(key.kind, "section")
                    where = f"{key.kind} {key.name}" + (f" {noun} {section}" if section else "")
                    loser.ancestors.setdefault(gw, [Cond("Accepted", False, "Conflicted",
                                                         f"{kind} {winner.policy.namespace}/{winner.policy.name} "
                                                         f"takes precedence on {where}")])

    def unattached(self) -> None:
        """Targets that no Gateway serves are reported on the target itself."""
        for attached in self.policies:
            if attached.ancestors:
                continue
            for key in attached.targets:
                how = "is attached to" if key.kind in ROUTE_KINDS else "is used by no route of"
                attached.ancestors[key] = attached.conds + [
                    Cond("Accepted", False, "TargetNotFound", f"{key.kind} {key.name} {how} no Gateway of ours")]


def core_group(group: str) -> str:
    """References may spell the core group "core" (Gateway API BackendRef)."""
    return CORE_GROUP if group == "core" else group


def backend_refs(route: Resource) -> list[Any]:
    """Every backendRef of a route (any route kind)."""
    rules = getattr(getattr(route, "spec", None), "rules", [])
    return [ref for rule in rules for ref in getattr(rule, "backend_refs", [])]
