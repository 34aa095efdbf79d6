"""RateLimitPolicy (gateway.portico.dev): local rate limits (token buckets).

Targets: HTTPRoutes and GRPCRoutes (sectionName: a rule) and Gateways (sectionName: a
listener). On a route: the rule's own budgets (`on_rule`). On a Gateway or listener:
budgets shared by every route of the filter chain, checked besides the routes' own
(`on_chain`). Over a budget a request is answered 429 (or local.responseStatusCode), with
x-ratelimit-* headers.
Clients are told apart by address, header values, or a claim of the token the route's
SecurityPolicy verified (`jwtClaim`: a budget per caller, not per address).
"""

from __future__ import annotations

from dataclasses import replace

from portico import ir
from portico.models import RateLimitPolicy, Resource
from portico.objects import ObjectKey
from portico.translator.backends import Backends
from portico.translator.gateway import ListenerState
from portico.translator.policies.kind import PolicyKind

UNIT_S = {"Second": 1, "Minute": 60, "Hour": 3600}


class RateLimitPolicies(PolicyKind):
    kind = "RateLimitPolicy"
    model = RateLimitPolicy

    def on_rule(self, action: ir.RouteAction, route: Resource, rule: str | None,
                backends: Backends) -> ir.RouteAction:
        policy = self.attachment.for_rule(self.kind, route.key, rule)
        return replace(action, rate_limits=rate_limits(policy)) if isinstance(policy, RateLimitPolicy) else action

    def on_chain(self, chain: ir.FilterChain, gateway: ObjectKey, group: list[ListenerState]) -> ir.FilterChain:
        policy = self.attachment.for_chain(self.kind, gateway, group)
        if not isinstance(policy, RateLimitPolicy):
            return chain
        return replace(chain, client=replace(chain.client, rate_limits=rate_limits(policy)))


def rate_limits(policy: RateLimitPolicy) -> tuple[ir.RateLimit, ...]:
    return tuple(ir.RateLimit(r.limit.requests, UNIT_S[r.limit.unit], r.burst or r.limit.requests,
                              source_ip=any(s.source_ip is not None for s in r.client_selectors),
                              headers=tuple(s.header["name"].lower() for s in r.client_selectors if s.header),
                              claims=tuple(s.jwt_claim["name"] for s in r.client_selectors if s.jwt_claim),
                              status=status_code(policy))
                 for r in policy.spec.local.rules)


def status_code(policy: RateLimitPolicy) -> int:
    """local.responseStatusCode, where the CRD allows it (400-599), else 429."""
    code = policy.spec.local.response_status_code
    return code if 400 <= code <= 599 else 429
