"""GRPCRoute → route entries on the listeners it attaches to.

A gRPC call is an HTTP/2 POST to "/<service>/<method>", so a GRPCMethodMatch is
a path match (Exact service and method: the exact path; Exact service only: the
"/<service>" path segment; anything else: a regular expression over both
segments), and header matches are HTTP/2 header matches. Backends speak HTTP/2
(GRPCRoute always carries gRPC, whatever the Service's appProtocol says,
unless it names a protocol that is not HTTP/2).

Precedence (GRPCRouteRule.matches): longest hostname first (one virtual host per
hostname), then the most characters in the service, in the method, the most
header matches; then the oldest route, "{namespace}/{name}", rule order.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from portico import ir
from portico.models import GRPCMethodMatch, GRPCRoute, GRPCRouteMatch, GRPCRouteRule
from portico.objects import ObjectKey
from portico.translator import rules
from portico.translator.backends import Backends
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.filters import (
    BACKEND_FILTER_TYPES,
    GRPC_FILTER_TYPES,
    apply_filters,
    unsupported,
)
from portico.translator.gateway import GatewayState, ListenerState, RouteEntry
from portico.translator.policies import Policies
from portico.translator.regex import regexes_problem
from portico.translator.routebinding import RouteResult, translate_routes
from portico.translator.session import session_persistence

# Service appProtocols a GRPCRoute can use: the HTTP/2 ones (the cluster speaks h2c).
GRPC_PROTOCOLS = frozenset({"h2c", "h2"})
# Answer for a rule whose backends cannot be used: "all traffic which matches this
# rule MUST receive an UNAVAILABLE status" (gRPC maps HTTP 503 to UNAVAILABLE).
UNAVAILABLE_STATUS = 503
# GRPCMethodMatch (CEL): valid Exact service and method names.
SERVICE_NAME = re.compile(r"(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*")
METHOD_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
ANY_SEGMENT = "[^/]+"


GRPCRuleResult = rules.RuleResult[GRPCRouteRule]


def translate_grpcroutes(ctx: Context, gateways: dict[ObjectKey, GatewayState], backends: Backends,
                         policies: Policies) -> list[RouteResult]:
    return translate_routes(ctx, gateways, backends, policies, ctx.all(GRPCRoute, "GRPCRoute"), translate_rule,
                            entries_of)


def translate_rule(route: GRPCRoute, rule: GRPCRouteRule, index: int, backends: Backends) -> GRPCRuleResult:
    filters = apply_filters(route, rule.filters, backends, GRPC_FILTER_TYPES, protocol="h2c")
    problem = filters.invalid or matches_problem(rule.matches)
    if problem is not None:
        return GRPCRuleResult(rule, index, ir.RouteAction(), filters, problem=problem)
    shares = rules.weighted_backends(route, rule.backend_refs, backends, BACKEND_FILTER_TYPES & GRPC_FILTER_TYPES,
                                     "h2c", speaks_http2)
    if shares.problem is not None:
        return GRPCRuleResult(rule, index, ir.RouteAction(), filters, problem=shares.problem)
    action = ir.RouteAction(
        backends=shares.backends,
        # No usable backend or an unresolvable ExtensionRef: the rule's calls fail with UNAVAILABLE.
        direct_status=UNAVAILABLE_STATUS if filters.failed or not shares.usable else None,
        request_headers=filters.request_headers,
        response_headers=filters.response_headers,
        mirrors=filters.mirrors,
        session_persistence=session_persistence(route, index, rule.session_persistence),
        invalid_backend_status=UNAVAILABLE_STATUS,
        # GRPCRoute has no timeouts: no proxy-imposed deadline (streams may be long-lived;
        # gRPC clients carry their own deadlines).
        timeout_ms=0,
    )
    return GRPCRuleResult(rule, index, action, filters, list(filters.conds) + shares.conds)


def speaks_http2(cluster: ir.Cluster) -> Cond | None:
    """"If a Route is not able to send traffic to the backend using the specified
    protocol then the backend is considered invalid" (UnsupportedProtocol)."""
    if cluster.protocol in GRPC_PROTOCOLS:
        return None
    return Cond("ResolvedRefs", False, "UnsupportedProtocol",
                f"backend {cluster.name} does not speak HTTP/2, which gRPC needs")


# ---------------------------------------------------------------- matches


def matches_problem(matches: list[GRPCRouteMatch]) -> Cond | None:
    for m in matches:
        problem = method_problem(m.method) if m.method else None
        if problem:
            return problem
        # what Envoy runs: the method's path expression and header expressions, in RE2
        exprs = [path_match(m.method).value] if m.method and m.method.type == "RegularExpression" else []
        exprs += [h.value for h in m.headers if h.type == "RegularExpression"]
        problem = regexes_problem(exprs)
        if problem:
            return problem
    return None


def method_problem(m: GRPCMethodMatch) -> Cond | None:
    """GRPCMethodMatch validations: one of service or method; valid names for Exact;
    compilable expressions for RegularExpression."""
    if m.type not in ("Exact", "RegularExpression"):
        return unsupported(f"method match type {m.type} is not supported")
    if not m.service and not m.method:
        return unsupported("one or both of service or method must be specified")
    if m.type == "Exact":
        if m.service and not SERVICE_NAME.fullmatch(m.service):
            return unsupported(f"invalid service name {m.service!r}")
        if m.method and not METHOD_NAME.fullmatch(m.method):
            return unsupported(f"invalid method name {m.method!r}")
        return None
    return regexes_problem(e for e in (m.service, m.method) if e)


def path_match(m: GRPCMethodMatch | None) -> ir.PathMatch:
    """The request path "/<service>/<method>" a method match selects."""
    if m is None or (not m.service and not m.method):
        return ir.PathMatch("Prefix", "/")
    if m.type == "Exact":
        if m.service and m.method:
            return ir.PathMatch("Exact", f"/{m.service}/{m.method}")
        if m.service:
            return ir.PathMatch("Prefix", f"/{m.service}")  # segment-aware: "/svc/..." only
        return ir.PathMatch("RegularExpression", f"/{ANY_SEGMENT}/{re.escape(m.method or '')}")
    service = f"(?:{m.service})" if m.service else ANY_SEGMENT
    method = f"(?:{m.method})" if m.method else ANY_SEGMENT
    return ir.PathMatch("RegularExpression", f"/{service}/{method}")


def header_matches(match: GRPCRouteMatch) -> tuple[ir.HeaderMatch, ...]:
    """GRPCHeaderMatch: names are case-insensitive; only the first of equivalent names counts."""
    seen: dict[str, ir.HeaderMatch] = {}
    for h in match.headers:
        kind: ir.StringMatchType = "RegularExpression" if h.type == "RegularExpression" else "Exact"
        seen.setdefault(h.name.lower(), ir.HeaderMatch(h.name.lower(), h.value, kind))
    return tuple(seen.values())


def route_match(match: GRPCRouteMatch) -> ir.RouteMatch:
    return ir.RouteMatch(path=path_match(match.method), headers=header_matches(match))


# ---------------------------------------------------------------- entries


def entries_of(route: GRPCRoute, rules: list[GRPCRuleResult]) -> Callable[[ListenerState], list[RouteEntry]]:
    def entries(listener: ListenerState) -> list[RouteEntry]:
        return route_entries(route, rules)
    return entries


def route_entries(route: GRPCRoute, rules: list[GRPCRuleResult]) -> list[RouteEntry]:
    """"If no matches are specified, the implementation MUST match every gRPC request"."""
    out = []
    for rule in rules:
        label = rule.rule.name or str(rule.index)
        for j, match in enumerate(rule.rule.matches or [GRPCRouteMatch()]):
            name = f"grpcroute/{route.namespace}/{route.name}/rule/{label}/match/{j}"
            out.append(RouteEntry(precedence(route, rule.index, j, match),
                                  ir.Route(name, route_match(match), rule.action), rule.rule.name))
    return out


def precedence(route: GRPCRoute, rule: int, match_index: int, match: GRPCRouteMatch) -> tuple[object, ...]:
    """GRPCRouteRule precedence within a hostname, lower sorts first. The leading 1
    keeps gRPC keys apart from HTTPRoute keys (which start below 0): the two kinds
    never share a hostname on a listener (cross serving), so they never tie."""
    m = match.method
    return (1, -len(m.service or "") if m else 0, -len(m.method or "") if m else 0,
            -len(header_matches(match)), route.metadata.creation_timestamp, f"{route.namespace}/{route.name}",
            rule, match_index)
