"""Portico's route policies (BackendTrafficPolicy, SecurityPolicy, RateLimitPolicy):
GEP-713 direct attachment, and their status.

Rules (GEP-713, as the Portico CRDs document them):
- targetRefs name an HTTPRoute or GRPCRoute in the policy's namespace; a sectionName
  names one of its rules (HTTPRouteRule.name). Another kind is Accepted=False with
  reason Invalid; a target (or rule) that does not exist, reason TargetNotFound.
- Per target, the oldest policy of a kind (creationTimestamp, then namespace/name)
  wins; the others are Accepted=False with reason Conflicted. A policy for a rule
  wins over one for the whole route for that rule (the more specific target).
- Ancestors are the Gateways the targeted route is attached to: one
  PolicyAncestorStatus per Gateway; a target that is attached nowhere is reported
  on the target itself.
- What a policy changes is `translator.traffic`'s concern; a policy with a value
  Portico cannot program (`traffic.problem`) is Accepted=False, reason Invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portico.models import (
    POLICY_KINDS,
    BackendTrafficPolicy,
    GRPCRoute,
    HTTPRoute,
    LocalPolicyTargetReference,
    RateLimitPolicy,
    Resource,
    SecurityPolicy,
)
from portico.objects import GATEWAY_GROUP, ObjectKey
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.traffic import problem

AnyPolicy = BackendTrafficPolicy | SecurityPolicy | RateLimitPolicy
ROUTE_KINDS: dict[str, type[HTTPRoute | GRPCRoute]] = {"HTTPRoute": HTTPRoute, "GRPCRoute": GRPCRoute}
# (policy kind, route key, rule name or None for the whole route)
TargetKey = tuple[str, ObjectKey, str | None]


@dataclass
class Attached:
    policy: AnyPolicy
    conds: list[Cond] = field(default_factory=list)  # the policy's own problems
    ancestors: dict[ObjectKey, list[Cond]] = field(default_factory=dict)
    targets: list[ObjectKey] = field(default_factory=list)  # the routes it names that exist

    @property
    def precedence(self) -> tuple[str, str, str]:
        p = self.policy
        return (p.metadata.creation_timestamp, p.namespace, p.name)


class RoutePolicies:
    """The route policies of one translation: who wins on which rule, and the ancestors."""

    def __init__(self, ctx: Context) -> None:
        self.policies = [Attached(p) for kind in POLICY_KINDS for p in ctx.all(Resource, kind)
                         if isinstance(p, AnyPolicy)]
        self.index: dict[TargetKey, list[Attached]] = {}
        self.invalid: dict[ObjectKey, list[Attached]] = {}
        self.by_route: dict[ObjectKey, list[TargetKey]] = {}
        for attached in sorted(self.policies, key=lambda a: a.precedence):
            why = problem(attached.policy)
            if why:
                attached.conds.append(Cond("Accepted", False, "Invalid", why))
            for ref in attached.policy.spec.target_refs:
                key = self.target(ctx, attached, ref)
                if key is not None:
                    attached.targets.append(key)
                    if why:  # reported on the Gateways of its target all the same
                        self.invalid.setdefault(key, []).append(attached)
                    else:
                        target = (attached.policy.kind, key, ref.section_name)
                        if target not in self.index:
                            self.by_route.setdefault(key, []).append(target)
                        self.index.setdefault(target, []).append(attached)

    @staticmethod
    def target(ctx: Context, attached: Attached, ref: LocalPolicyTargetReference) -> ObjectKey | None:
        policy = attached.policy
        key = ObjectKey(ref.group, ref.kind, policy.namespace, ref.name)
        if ref.group != GATEWAY_GROUP or ref.kind not in ROUTE_KINDS:
            attached.ancestors[key] = [Cond("Accepted", False, "Invalid",
                                            f"targetRef kind {ref.group}/{ref.kind} is not supported "
                                            "(HTTPRoute or GRPCRoute)")]
            return None
        route = ctx.get(ROUTE_KINDS[ref.kind], ref.kind, policy.namespace, ref.name)
        if route is None or (ref.section_name and all(r.name != ref.section_name for r in route.spec.rules)):
            what = f"{ref.kind} {policy.namespace}/{ref.name}" + (f" rule {ref.section_name}"
                                                                  if route is not None else "")
            attached.ancestors[key] = [Cond("Accepted", False, "TargetNotFound", f"{what} not found")]
            return None
        return key

    def for_rule(self, kind: str, route: ObjectKey, rule: str | None) -> AnyPolicy | None:
        """The policy of `kind` in effect on a rule: for the rule by name, else for the route."""
        found = (self.index.get((kind, route, rule)) if rule else None) or self.index.get((kind, route, None))
        return found[0].policy if found else None

    def record(self, route: ObjectKey, gateways: list[ObjectKey]) -> None:
        """The Gateways `route` is attached to become ancestors of its policies."""
        for invalid in self.invalid.get(route, []):
            for gw in gateways:
                invalid.ancestors.setdefault(gw, invalid.conds)
        for kind, key, section in self.by_route.get(route, []):
            winner, *losers = self.index[(kind, key, section)]
            for gw in gateways:
                winner.ancestors.setdefault(gw, winner.conds)
                for loser in losers:
                    where = f"{key.kind} {key.name}" + (f" rule {section}" if section else "")
                    loser.ancestors.setdefault(gw, [Cond("Accepted", False, "Conflicted",
                                                         f"{kind} {winner.policy.namespace}/{winner.policy.name} "
                                                         f"takes precedence on {where}")])

    def unattached(self) -> None:
        """Targets that no Gateway serves are reported on the target itself."""
        for attached in self.policies:
            if attached.ancestors:
                continue
            for key in attached.targets:
                attached.ancestors[key] = attached.conds + [
                    Cond("Accepted", False, "TargetNotFound", f"{key.kind} {key.name} is attached to no Gateway "
                                                              "of ours")]
