"""GEP-713 direct policy attachment: which policy is in effect where, and the
ancestors each policy reports on (the kind modules decide what a policy changes).

Rules (GEP-713, as the Portico CRDs document them):
- targetRefs name objects in the policy's namespace, of the kinds its CRD lists
  (`portico.kinds`, the policy kind's `targets`): routes (sectionName: one rule, HTTPRouteRule.name), Gateways
  (sectionName: one listener), Services (sectionName: one port by name) and XBackends.
  Another kind is Accepted=False with reason Invalid; a target (or section) that does
  not exist, reason TargetNotFound.
- Per target, the oldest policy of a kind (creationTimestamp, then namespace/name)
  wins; the others are Accepted=False with reason Conflicted.
- The more specific target wins: a rule over its route (`for_rule`), a listener over
  its Gateway (`for_listener`), a route over the listener it is served on (the kind
  modules' `on_listener`). A Service's policy is the base of the traffic to it, which a
  route's or Gateway's policy overrides field by field.
- Listeners that share one filter chain (HTTP listeners on one port) take the first
  policy of a kind found for one of them by name, else the Gateway's (`for_chain`); a
  listener's own policy that loses there is Conflicted.
- Ancestors: a Gateway target is its own ancestor; a route's are the Gateways it is
  attached to; a Service's or XBackend's, the Gateways of the routes that send to it.
  One PolicyAncestorStatus per Gateway; a target reached from no Gateway of ours is
  reported on the target itself (`unattached`).
- A value Portico cannot program (`PolicyKind.problem`) is Accepted=False, reason Invalid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from portico.kinds import targets_of
from portico.models import (
    Gateway,
    GRPCRoute,
    HTTPRoute,
    LocalPolicyTargetReference,
    PorticoBackend,
    Resource,
    Service,
    XBackend,
)
from portico.objects import CORE_GROUP, ObjectKey
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.gateway import ListenerState

ROUTE_KINDS: dict[str, type[HTTPRoute | GRPCRoute]] = {"HTTPRoute": HTTPRoute, "GRPCRoute": GRPCRoute}
SECTION_NOUNS = {"HTTPRoute": "rule", "GRPCRoute": "rule", "Gateway": "listener", "Service": "port"}
# (policy kind, target key, section name or None for the whole target)
TargetKey = tuple[str, ObjectKey, str | None]
Ancestors = dict[ObjectKey, list[Cond]]


class Attachable(Protocol):
    """What attachment reads of a policy kind (`kind.PolicyKind` provides it)."""

    kind: str
    model: type[Resource]

    def problem(self, policy: Any) -> str: ...


def precedence(policy: Resource) -> tuple[str, str, str]:
    """The oldest policy first (creationTimestamp), then by namespace/name (GEP-713)."""
    return (policy.metadata.creation_timestamp, policy.namespace, policy.name)


def conflicted(kind: str, winner: Resource, where: str | None = None) -> Cond:
    """A policy another one of its kind takes precedence over."""
    on = f" on {where}" if where else ""
    return Cond("Accepted", False, "Conflicted", f"{kind} {winner.namespace}/{winner.name} takes precedence{on}")


@dataclass
class Attached:
    policy: Any  # a policy of one of the attached kinds (each has spec.target_refs)
    conds: list[Cond] = field(default_factory=list)  # the policy's own problems
    ancestors: Ancestors = field(default_factory=dict)
    targets: list[ObjectKey] = field(default_factory=list)  # the objects it names that exist

    @property
    def precedence(self) -> tuple[str, str, str]:
        return precedence(self.policy)


class Attachment:
    """The policies of the attached kinds in one translation: who wins on which target,
    and the ancestors."""

    def __init__(self, ctx: Context, kinds: Sequence[Attachable]) -> None:
        self.ctx = ctx
        self.kinds = {k.kind: k for k in kinds}
        self.targets = {k.kind: targets_of(k.kind) for k in kinds}
        self.policies = [Attached(p) for k in kinds for p in ctx.all(k.model, k.kind)]
        self.index: dict[TargetKey, list[Attached]] = {}
        self.invalid: dict[ObjectKey, list[Attached]] = {}
        self.by_target: dict[ObjectKey, list[TargetKey]] = {}
        for attached in sorted(self.policies, key=lambda a: a.precedence):
            why = self.kinds[attached.policy.kind].problem(attached.policy)
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
        self.in_effect = frozenset(kind for kind, _, _ in self.index)
        for key in [k for k in self.by_target if k.kind == "Gateway"] + [k for k in self.invalid
                                                                         if k.kind == "Gateway"]:
            self.record_target(key, [key])

    def target(self, ctx: Context, attached: Attached, ref: LocalPolicyTargetReference) -> ObjectKey | None:
        policy = attached.policy
        group = core_group(ref.group)
        key = ObjectKey(group, ref.kind, policy.namespace, ref.name)
        allowed = self.targets[policy.kind]
        if (group, ref.kind) not in allowed:
            kinds = ", ".join(kind for _, kind in allowed)
            attached.ancestors[key] = [Cond("Accepted", False, "Invalid",
                                            f"targetRef kind {ref.group}/{ref.kind} is not supported ({kinds})")]
            return None
        found, sections = self.sections(ctx, ref.kind, policy.namespace, ref.name)
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

    # ------------------------------------------------------------ which policy where

    def first(self, *targets: TargetKey) -> Any:
        """The winning policy of the first of `targets` that has one, else None."""
        for target in targets:
            found = self.index.get(target)
            if found:
                return found[0].policy
        return None

    def for_rule(self, kind: str, route: ObjectKey, rule: str | None) -> Any:
        """The policy of `kind` that targets a route's rule: for the rule by name, else
        for the route (GEP-713: the more specific target wins)."""
        if not self.index:
            return None
        return self.first(*([(kind, route, rule)] if rule else []), (kind, route, None))

    def for_backend(self, kind: str, backend: ObjectKey, section: str | None) -> Any:
        """The policy of `kind` on a Service (port `section`), XBackend or Backend."""
        return self.first(*([(kind, backend, section)] if section else []), (kind, backend, None))

    def for_listener(self, kind: str, gateway: ObjectKey, listener: str) -> Any:
        """The policy of `kind` on a Gateway listener: for it by name, else the Gateway."""
        if not self.index:
            return None
        return self.first((kind, gateway, listener), (kind, gateway, None))

    def for_chain(self, kind: str, gateway: ObjectKey, group: list[ListenerState]) -> Any:
        """The policy of `kind` on listeners sharing one filter chain (`group`, most specific
        first): the first that targets one of them by name, else the Gateway's. A listener's
        own policy that loses is Conflicted, saying why."""
        own = next((p for ls in group if (p := self.first((kind, gateway, ls.qualified_name)))), None)
        winner = own if own is not None else self.for_listener(kind, gateway, group[0].qualified_name)
        if winner is None or len(group) < 2:
            return winner
        for ls in group:
            mine = self.first((kind, gateway, ls.qualified_name))
            if mine is not None and mine is not winner:
                self.overridden(mine, gateway, (
                    f"listener {ls.name} shares port {ls.spec.port}'s connection manager with listener "
                    f"{group[0].name}: {kind} {winner.namespace}/{winner.name} applies to them all"))
        return winner

    def overridden(self, policy: Resource, ancestor: ObjectKey, message: str) -> None:
        """`policy` does not apply at `ancestor` after all (another takes its place there)."""
        for attached in self.policies:
            if attached.policy is policy:
                attached.ancestors[ancestor] = [Cond("Accepted", False, "Conflicted", message)]

    def gateways_only(self, kind: str) -> bool:
        """Whether every policy of `kind` names only Gateways in its targetRefs."""
        return all(ref.kind == "Gateway" for a in self.policies if a.policy.kind == kind
                   for ref in a.policy.spec.target_refs)

    # ------------------------------------------------------------ ancestors

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
                    loser.ancestors.setdefault(gw, [conflicted(kind, winner.policy, where)])

    def unattached(self) -> None:
        """Targets that no Gateway serves are reported on the target itself."""
        for attached in self.policies:
            if attached.ancestors:
                continue
            for key in attached.targets:
                how = "is attached to" if key.kind in ROUTE_KINDS else "is used by no route of"
                attached.ancestors[key] = attached.conds + [
                    Cond("Accepted", False, "TargetNotFound", f"{key.kind} {key.name} {how} no Gateway of ours")]

    def statuses(self, kind: str) -> list[tuple[Resource, Ancestors]]:
        return [(a.policy, a.ancestors) for a in self.policies if a.policy.kind == kind]


def core_group(group: str) -> str:
    """References may spell the core group "core" (Gateway API BackendRef)."""
    return CORE_GROUP if group == "core" else group


def backend_refs(route: Resource) -> list[Any]:
    """Every backendRef of a route (any route kind)."""
    rules = getattr(getattr(route, "spec", None), "rules", [])
    return [ref for rule in rules for ref in getattr(rule, "backend_refs", [])]
