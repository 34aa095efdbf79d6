"""Binding translated HTTPRoutes and GRPCRoutes to the listeners they attached to.

Shared by both kinds because of the rules that span them:
- GRPCRoute "cross serving": when an HTTPRoute and a GRPCRoute on one listener
  have intersecting hostnames, exactly one is accepted: the oldest by
  creation timestamp, then the first by "{namespace}/{name}"; the other gets
  Accepted=False on that parent.
- Dropped rules (HTTPRouteRule.filters): invalid rules are not programmed; if
  every rule of a route is invalid the route is not accepted, otherwise it
  reports PartiallyInvalid=True with a message starting "Dropped Rule".
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from portico import ir
from portico.models import GRPCRoute, HTTPRoute, Resource
from portico.objects import ObjectKey
from portico.translator import hostnames
from portico.translator.attachment import ParentResult, attach
from portico.translator.backends import Backends
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.gateway import GatewayState, HostRoutes, ListenerState, RouteEntry
from portico.translator.policies import Policies


@dataclass
class RouteResult:
    route: Resource
    parents: list[ParentResult]
    conds: list[Cond]  # route-wide (ResolvedRefs, PartiallyInvalid, ...), applied to every parent entry
    # the route's entries as served on a listener; None when no rule can be programmed
    entries: Callable[[ListenerState], list[RouteEntry]] | None = None


@dataclass(frozen=True)
class RuleCheck:
    """A rule's identity and, if it cannot be programmed, why (an Accepted=False condition)."""

    index: int
    name: str | None
    problem: Cond | None


class RuleLike(Protocol):
    """A translated HTTPRoute or GRPCRoute rule."""

    problem: Cond | None
    conds: list[Cond]
    action: ir.RouteAction

    @property
    def check(self) -> RuleCheck: ...


R = TypeVar("R", HTTPRoute, GRPCRoute)
Rule = TypeVar("Rule", bound=RuleLike)
Entries = Callable[[ListenerState], list[RouteEntry]]


def translate_routes(ctx: Context, gateways: dict[ObjectKey, GatewayState], backends: Backends,
                     policies: Policies, routes: Iterable[R], translate_rule: Callable[[R, Any, int, Backends], Rule],
                     entries_of: Callable[[R, list[Rule]], Entries]) -> list[RouteResult]:
    results = (translate_route(ctx, gateways, backends, policies, route, translate_rule, entries_of)
               for route in routes)
    return [r for r in results if r is not None]


def translate_route(ctx: Context, gateways: dict[ObjectKey, GatewayState], backends: Backends, policies: Policies,
                    route: R, translate_rule: Callable[[R, Any, int, Backends], Rule],
                    entries_of: Callable[[R, list[Rule]], Entries]) -> RouteResult | None:
    """Attach the route, translate its rules with the policies in effect on them (reused
    from the previous translation while the route is unchanged, see `Backends.rules`), and
    keep the programmable ones (dropped rules are reported through `rules_conditions`);
    None when no parent of the route is ours."""
    parents = attach(ctx, route, route.spec.hostnames, route.spec, gateways)
    if not parents:
        return None
    held = quarantined(ctx, route)
    if held is not None:
        return RouteResult(route, parents, [held], None)
    rules = backends.rules(route, functools.partial(translate_all, route, translate_rule, backends, policies))
    conds, programmable = rules_conditions([r.check for r in rules])
    conds += [c for r in rules if r.problem is None for c in r.conds]
    valid = [r for r in rules if r.problem is None]
    served = policies.served(route, entries_of(route, valid), backends) if programmable else None
    entries = backends.entries(route, served) if served is not None else None
    return RouteResult(route, parents, conds, entries)


def quarantined(ctx: Context, route: Resource) -> Cond | None:
    """The route is left out of the configuration at this generation (Envoy rejected it,
    `Snapshot.quarantined`): not accepted, with Envoy's reason, until it changes."""
    entry = ctx.snapshot.quarantined.get(route.key)
    if entry is None or entry.generation != route.metadata.generation:
        return None
    return Cond("Accepted", False, "UnsupportedValue", entry.message)


def translate_all(route: R, translate_rule: Callable[[R, Any, int, Backends], Rule], backends: Backends,
                  policies: Policies) -> list[Rule]:
    """Each rule of the route, and the policies in effect on the rules that can be programmed."""
    rules = [translate_rule(route, rule, i, backends) for i, rule in enumerate(route.spec.rules)]
    for rule in rules:
        if rule.problem is None:
            rule.action = policies.on_rule(rule.action, route, rule.check.name, backends)
    return rules


def rule_label(index: int, name: str | None) -> str:
    """How a rule is named in messages: its name when it has one (HTTPRouteRule.name)."""
    return f"rule {index} ({name})" if name else f"rule {index}"


def rules_conditions(rules: Sequence[RuleCheck]) -> tuple[list[Cond], bool]:
    """(route conditions, whether any rule survives). PartiallyInvalid: "Drop
    Rule(s): ... The message for this condition MUST start with the prefix
    'Dropped Rule' ... the Accepted condition MUST be set to True"."""
    dropped = [r for r in rules if r.problem is not None]
    if not dropped:
        return [], True
    details = "; ".join(f"{rule_label(r.index, r.name)}: {r.problem.message}" for r in dropped if r.problem)
    if len(dropped) == len(rules):
        first = dropped[0].problem
        assert first is not None
        return [Cond("Accepted", False, first.reason, f"no rule can be programmed: {details}")], False
    return [Cond("PartiallyInvalid", True, "UnsupportedValue", f"Dropped Rule(s): {details}")], True


@dataclass
class Candidate:
    """A route on one listener, through one or more of its parentRefs."""

    result: RouteResult
    parents: list[ParentResult]
    hostnames: list[str] = field(default_factory=list)

    @property
    def order(self) -> tuple[str, str]:
        """Route age, then "{namespace}/{name}" (the cross-serving tie-breakers)."""
        route = self.result.route
        return (route.metadata.creation_timestamp, f"{route.namespace}/{route.name}")


Candidacy = dict[int, tuple[ListenerState, list[Candidate]]]  # id(listener) -> (listener, its candidates)


def bind_routes(results: list[RouteResult]) -> Candidacy:
    """Attach each route's entries to its listeners, resolving HTTPRoute/GRPCRoute
    hostname conflicts; update parents' bindings and conditions accordingly. Returns
    every listener's candidates (the incremental path re-binds from them)."""
    by_listener: Candidacy = {}
    for result in results:
        if result.entries is None:
            count_attachment(result)
        for listener, candidate in candidates_of(result):
            by_listener.setdefault(id(listener), (listener, []))[1].append(candidate)
    for listener, candidates in by_listener.values():
        bind_listener(listener, candidates)
    return by_listener


def count_attachment(result: RouteResult) -> None:
    """A route none of whose rules can be programmed is still attached to the listeners its
    parentRefs and their allowedRoutes select: attachedRoutes counts it ("Listener or Route
    status does not impact successful attachment"), though it serves nothing."""
    seen: set[int] = set()
    for parent in result.parents:
        for binding in parent.bindings:
            if id(binding.listener) not in seen:
                seen.add(id(binding.listener))
                binding.listener.attached_routes += 1


def candidates_of(result: RouteResult) -> list[tuple[ListenerState, Candidate]]:
    """The route's candidacy on each listener it reaches, once per listener even through
    several parentRefs (it is attached, and counted, once; hostnames merged in order)."""
    if result.entries is None:
        return []
    merged: dict[int, tuple[ListenerState, Candidate]] = {}
    for parent in result.parents:
        for binding in parent.bindings:
            slot = merged.get(id(binding.listener))
            if slot is None:
                merged[id(binding.listener)] = (binding.listener, Candidate(result, [parent], list(binding.hostnames)))
                continue
            first = slot[1]
            first.parents.append(parent)  # a parent binds a listener once
            first.hostnames = list(dict.fromkeys(first.hostnames + binding.hostnames))
    return list(merged.values())


def bind_listener(listener: ListenerState, candidates: list[Candidate]) -> None:
    accepted: dict[str, list[Candidate]] = {}  # by route kind: only other kinds can be rivals
    for c in sorted(candidates, key=lambda c: c.order):
        kind = c.result.route.kind
        rival = next((a for k, same_kind in accepted.items() if k != kind for a in same_kind
                      if hostnames_intersect(a.hostnames, c.hostnames)), None)
        if rival is not None:
            reject(c, rival, listener)
            continue
        accepted.setdefault(kind, []).append(c)
        accept(c, listener)


def accept(c: Candidate, listener: ListenerState) -> HostRoutes:
    entries = c.result.entries
    assert entries is not None
    listener.attached_routes += 1
    served = HostRoutes(c.hostnames, entries(listener), c.result.route.key, c.order)
    listener.http_routes.append(served)
    return served


def reject(c: Candidate, rival: Candidate, listener: ListenerState) -> None:
    """GRPCRoute cross serving: "The rejected Route MUST raise an 'Accepted'
    condition with a status of 'False' in the corresponding RouteParentStatus"."""
    route, other = c.result.route, rival.result.route
    for parent in c.parents:
        parent.bindings = [b for b in parent.bindings if b.listener is not listener]
        if not parent.bindings:
            parent.conds.append(Cond(
                "Accepted", False, "HostnameConflict",
                f"{route.kind} hostnames intersect those of {other.kind} {other.namespace}/{other.name} "
                f"on listener {listener.name}, which takes precedence"))


def hostnames_intersect(a: list[str], b: list[str]) -> bool:
    """Do two hostname sets share a name? "*" matches any hostname; wildcards
    intersect when one covers the other (Gateway API hostname intersection)."""
    return any(x == "*" or y == "*" or x.lower() == y.lower()
               or hostnames.matches(x, y) or hostnames.matches(y, x) for x in a for y in b)
