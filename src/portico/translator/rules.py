"""What HTTPRoute and GRPCRoute rules share: the result of translating one rule,
and the resolution of its backendRefs (with their own filters) into weighted
backends. Each route kind keeps its own matches, filters allowed and actions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from portico import ir
from portico.models import GRPCBackendRef, HTTPBackendRef, Resource
from portico.translator.backends import Backends
from portico.translator.conditions import Cond
from portico.translator.filters import FilterSet, apply_filters
from portico.translator.routebinding import RuleCheck

Rule = TypeVar("Rule")
# a resolved cluster the route kind cannot use: why (ResolvedRefs=False), else None
ClusterCheck = Callable[[ir.Cluster], Cond | None]


@dataclass
class RuleResult(Generic[Rule]):
    """One translated rule: its action, conditions, or why it is dropped."""

    rule: Rule
    index: int
    action: ir.RouteAction
    filters: FilterSet
    conds: list[Cond] = field(default_factory=list)
    problem: Cond | None = None  # the rule cannot be programmed (dropped)
    # each backendRef's own filters, in the order of action.backends
    backend_filters: tuple[FilterSet, ...] = ()

    @property
    def check(self) -> RuleCheck:
        return RuleCheck(self.index, getattr(self.rule, "name", None), self.problem)


@dataclass
class WeightedBackends:
    backends: tuple[ir.WeightedBackend, ...] = ()
    filters: tuple[FilterSet, ...] = ()  # each backendRef's own filters, as `backends`
    conds: list[Cond] = field(default_factory=list)
    problem: Cond | None = None  # a backendRef whose filters make the rule unprogrammable

    @property
    def usable(self) -> bool:
        """Some backend gets traffic (HTTPRoute: else 500; GRPCRoute: UNAVAILABLE)."""
        return any(b.cluster is not None and b.weight > 0 for b in self.backends)


def weighted_backends(route: Resource, refs: Sequence[HTTPBackendRef] | Sequence[GRPCBackendRef], backends: Backends,
                      filter_types: frozenset[str], default_protocol: ir.AppProtocol,
                      check: ClusterCheck | None = None) -> WeightedBackends:
    """Each backendRef's share: its cluster (None when the ref is invalid: that share
    answers with an error, "If a backendRef is invalid"), weight and header filters
    ("executed if and only if the request is being forwarded to the backend defined here")."""
    out = WeightedBackends()
    shares = []
    filter_sets = []
    for ref in refs:
        ref_filters = apply_filters(route, ref.filters, backends, filter_types, where="on a backendRef")
        if ref_filters.invalid is not None:
            return WeightedBackends(problem=ref_filters.invalid)
        resolved = backends.resolve(route, ref, default_protocol)
        out.conds += ref_filters.conds + ([resolved.problem] if resolved.problem else [])
        cluster = resolved.cluster
        unusable = check(cluster) if cluster is not None and check is not None else None
        if unusable is not None:
            out.conds.append(unusable)
            cluster = None
        # An unresolvable ExtensionRef on the backendRef: its share answers with an error too.
        name = cluster.name if cluster is not None and not ref_filters.failed else None
        shares.append(ir.WeightedBackend(name, ref.weight, ref_filters.request_headers, ref_filters.response_headers))
        filter_sets.append(ref_filters)
    out.backends = tuple(shares)
    out.filters = tuple(filter_sets)
    return out
