"""HTTPRoute → route entries on the listeners it attaches to.

Each rule becomes one IR route per match (matches are ORed, conditions within
a match ANDed); entries carry the precedence key of the HTTPRoute spec
(HTTPRouteRule "Precedence" rules) so the virtual host can order them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from portico import ir
from portico.models import HTTPRoute, HTTPRouteMatch, HTTPRouteRule
from portico.objects import ObjectKey
from portico.translator.attachment import ParentResult, attach
from portico.translator.backends import Backends
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.durations import parse_duration_ms
from portico.translator.filters import FilterSet, apply_filters
from portico.translator.gateway import GatewayState, HostRoutes, ListenerState, RouteEntry


@dataclass
class RuleResult:
    rule: HTTPRouteRule
    index: int
    action: ir.RouteAction
    filters: FilterSet
    conds: list[Cond] = field(default_factory=list)


@dataclass
class RouteResult:
    route: HTTPRoute
    parents: list[ParentResult]
    conds: list[Cond]  # route-wide (ResolvedRefs, ...), applied to every parent entry


def translate_httproutes(ctx: Context, gateways: dict[ObjectKey, GatewayState],
                         backends: Backends) -> list[RouteResult]:
    results = []
    for route in ctx.all(HTTPRoute, "HTTPRoute"):
        parents = attach(ctx, route, route.spec.hostnames, route.spec.parent_refs, gateways)
        if not parents:
            continue
        rules = [translate_rule(route, rule, i, backends) for i, rule in enumerate(route.spec.rules)]
        for parent in parents:
            for binding in parent.bindings:
                binding.listener.attached_routes += 1
                binding.listener.http_routes.append(
                    HostRoutes(binding.hostnames, route_entries(route, rules, binding.listener)))
        conds = [c for r in rules for c in r.conds]
        results.append(RouteResult(route, parents, conds))
    return results


def translate_rule(route: HTTPRoute, rule: HTTPRouteRule, index: int, backends: Backends) -> RuleResult:
    conds: list[Cond] = []
    weighted = []
    for ref in rule.backend_refs:
        resolved = backends.resolve(route, ref, "http1")
        if resolved.problem:
            conds.append(resolved.problem)
        ref_filters = apply_filters(route, ref.filters, backends)
        conds += ref_filters.conds
        weighted.append(ir.WeightedBackend(resolved.cluster.name if resolved.cluster else None, ref.weight,
                                           ref_filters.request_headers, ref_filters.response_headers))
    filters = apply_filters(route, rule.filters, backends)
    conds += filters.conds
    action = ir.RouteAction(
        backends=tuple(weighted),
        direct_status=rule_direct_status(weighted, filters),
        request_headers=filters.request_headers,
        response_headers=filters.response_headers,
        mirrors=filters.mirrors,
        rewrite=filters.rewrite,
        cors=filters.cors,
        websocket=any(backends.clusters[b.cluster].protocol == "ws" for b in weighted if b.cluster),
    )
    action = replace(action, **timeouts(rule))
    return RuleResult(rule, index, action, filters, conds)


def rule_direct_status(weighted: list[ir.WeightedBackend], filters: FilterSet) -> int | None:
    """HTTPRoute BackendRef rules: no backendRefs and no redirect answers 500;
    so does a rule whose backends are all invalid or all weighted 0."""
    if filters.redirect is not None:
        return None
    if filters.failed:
        return 500
    if not weighted or all(b.cluster is None or b.weight == 0 for b in weighted):
        return 500
    return None


def timeouts(rule: HTTPRouteRule) -> dict[str, Any]:
    t = rule.timeouts
    if t is None:
        return {}
    return {"timeout_ms": parse_duration_ms(t.request) if t.request else None,
            "backend_timeout_ms": parse_duration_ms(t.backend_request) if t.backend_request else None}


def route_entries(route: HTTPRoute, rules: list[RuleResult], listener: ListenerState) -> list[RouteEntry]:
    entries = []
    for rule in rules:
        action = with_redirect(rule, listener)
        for j, match in enumerate(rule.rule.matches or [HTTPRouteMatch()]):
            m = route_match(match)
            name = f"httproute/{route.namespace}/{route.name}/rule/{rule.index}/match/{j}"
            entries.append(RouteEntry(precedence(route, rule.index, j, match, m),
                                      ir.Route(name, m, action)))
    return entries


def with_redirect(rule: RuleResult, listener: ListenerState) -> ir.RouteAction:
    """RequestRedirect port defaults depend on the listener (HTTPRequestRedirectFilter.port)."""
    spec = rule.filters.redirect
    if spec is None:
        return rule.action
    scheme = spec.scheme
    listener_scheme = "https" if listener.protocol == "HTTPS" else "http"
    port = spec.port or ({"http": 80, "https": 443}.get(scheme) if scheme else listener.spec.port)
    effective = scheme or listener_scheme
    default_port = {"http": 80, "https": 443}.get(effective)
    path = spec.path
    redirect = ir.Redirect(
        scheme=scheme,
        hostname=spec.hostname,
        port=None if port == default_port else port,
        strip_port=port == default_port,
        path_full=path.replace_full_path if path and path.type == "ReplaceFullPath" else None,
        path_prefix=path.replace_prefix_match if path and path.type == "ReplacePrefixMatch" else None,
        status_code=spec.status_code,
    )
    return replace(rule.action, redirect=redirect, backends=(), direct_status=None)


def route_match(match: HTTPRouteMatch) -> ir.RouteMatch:
    path = match.path
    if path is None or (path.type == "PathPrefix" and path.value in ("", "/")):
        p = ir.PathMatch("Prefix", "/")
    elif path.type == "PathPrefix":
        p = ir.PathMatch("Prefix", path.value.rstrip("/") or "/")
    elif path.type == "Exact":
        p = ir.PathMatch("Exact", path.value)
    else:
        p = ir.PathMatch("RegularExpression", path.value)
    return ir.RouteMatch(
        path=p,
        headers=tuple(ir.HeaderMatch(h.name.lower(), h.value, "RegularExpression"
                                     if h.type == "RegularExpression" else "Exact") for h in match.headers),
        query_params=tuple(ir.QueryParamMatch(q.name, q.value, "RegularExpression"
                                              if q.type == "RegularExpression" else "Exact")
                           for q in match.query_params),
        method=match.method,
    )


PATH_RANK = {"Exact": 3, "RegularExpression": 2, "Prefix": 1}


def precedence(route: HTTPRoute, rule: int, match_index: int, spec: HTTPRouteMatch,
               m: ir.RouteMatch) -> tuple[object, ...]:
    """HTTPRouteRule precedence, most important first (lower sorts first):
    Exact path; longest prefix; method; most headers; most query params;
    oldest route; namespace/name; rule order; match order."""
    return (
        -PATH_RANK[m.path.type], -len(m.path.value), 0 if m.method else 1, -len(m.headers),
        -len(m.query_params), route.metadata.creation_timestamp, route.namespace, route.name, rule, match_index,
    )
