"""HTTPRoute → route entries on the listeners it attaches to.

Each rule becomes one IR route per match (matches are ORed, conditions within
a match ANDed); entries carry the precedence key of the HTTPRoute spec
(HTTPRouteRule "Precedence" rules) so the virtual host can order them. Rules
that cannot be programmed are dropped and reported (routebinding).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from portico import ir
from portico.models import HTTPRequestRedirectFilter, HTTPRoute, HTTPRouteMatch, HTTPRouteRule
from portico.objects import ObjectKey
from portico.translator import rules
from portico.translator.backends import Backends
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.durations import parse_duration_ms
from portico.translator.filters import (
    BACKEND_FILTER_TYPES,
    FilterSet,
    apply_filters,
    incompatible,
    prefix_replacements,
    unsupported,
)
from portico.translator.gateway import GatewayState, ListenerState, RouteEntry
from portico.translator.policies import Policies
from portico.translator.regex import regexes_problem
from portico.translator.routebinding import RouteResult, translate_routes
from portico.translator.session import session_persistence

RuleResult = rules.RuleResult[HTTPRouteRule]


def translate_httproutes(ctx: Context, gateways: dict[ObjectKey, GatewayState], backends: Backends,
                         policies: Policies) -> list[RouteResult]:
    return translate_routes(ctx, gateways, backends, policies, ctx.all(HTTPRoute, "HTTPRoute"), translate_rule,
                            entries_of)


def entries_of(route: HTTPRoute, rules: list[RuleResult]) -> Callable[[ListenerState], list[RouteEntry]]:
    def entries(listener: ListenerState) -> list[RouteEntry]:
        return route_entries(route, rules, listener)
    return entries


def translate_rule(route: HTTPRoute, rule: HTTPRouteRule, index: int, backends: Backends) -> RuleResult:
    filters = apply_filters(route, rule.filters, backends)
    problem = filters.invalid or rule_problem(rule)
    if problem is not None:
        return RuleResult(rule, index, ir.RouteAction(), filters, problem=problem)
    shares = rules.weighted_backends(route, rule.backend_refs, backends, BACKEND_FILTER_TYPES, "http1")
    if shares.problem is not None:
        return RuleResult(rule, index, ir.RouteAction(), filters, problem=shares.problem)
    action = ir.RouteAction(
        backends=shares.backends,
        direct_status=rule_direct_status(shares, filters),
        request_headers=filters.request_headers,
        response_headers=filters.response_headers,
        mirrors=filters.mirrors,
        rewrite=filters.rewrite,
        cors=filters.cors,
        external_auth=filters.external_auth,
        signin=filters.signin,
        error_pages=filters.error_pages,
        client_cert_check=filters.client_cert_check,
        client_cert_headers=filters.client_cert_headers,
        retry=retry_of(rule),
        session_persistence=session_persistence(route, index, rule.session_persistence),
        websocket=any(backends.clusters[b.cluster].protocol == "ws" for b in shares.backends if b.cluster),
        timeout_ms=request_timeout_ms(rule),
        backend_timeout_ms=backend_timeout_ms(rule),
    )
    return RuleResult(rule, index, action, filters, list(filters.conds) + shares.conds,
                      backend_filters=shares.filters)


def rule_problem(rule: HTTPRouteRule) -> Cond | None:
    """HTTPRouteRule validations the API server would make, and values this
    implementation cannot program."""
    if any(f.type == "RequestRedirect" for f in rule.filters) and rule.backend_refs:
        return incompatible("RequestRedirect filter must not be used together with backendRefs")
    uses_prefix = prefix_replacements(rule.filters) or any(prefix_replacements(b.filters)
                                                           for b in rule.backend_refs)
    if uses_prefix and not single_prefix_match(rule):
        # "ReplacePrefixMatch is only compatible with a PathPrefix HTTPRouteMatch."
        return incompatible("ReplacePrefixMatch requires exactly one PathPrefix match")
    return timeouts_problem(rule) or retry_problem(rule) or regex_problems(rule.matches)


def regex_problems(matches: list[HTTPRouteMatch]) -> Cond | None:
    """Path, header and query parameter RegularExpression values: RE2 that Envoy accepts."""
    exprs = []
    for m in matches:
        exprs += [m.path.value] if m.path is not None and m.path.type == "RegularExpression" else []
        exprs += [h.value for h in m.headers if h.type == "RegularExpression"]
        exprs += [q.value for q in m.query_params if q.type == "RegularExpression"]
    return regexes_problem(exprs)


def single_prefix_match(rule: HTTPRouteRule) -> bool:
    if len(rule.matches) != 1:
        return False
    path = rule.matches[0].path
    return path is None or path.type == "PathPrefix"


def rule_direct_status(shares: rules.WeightedBackends, filters: FilterSet) -> int | None:
    """HTTPRoute BackendRef rules: no backendRefs and no redirect answers 500;
    so does a rule whose backends are all invalid or all weighted 0, and one with
    an ExtensionRef that cannot be resolved (the filter must not be skipped)."""
    if filters.failed:
        return 500
    if filters.redirect is not None:
        return None
    if not shares.usable:
        return 500
    return None


# ---------------------------------------------------------------- timeouts and retries


def timeouts_problem(rule: HTTPRouteRule) -> Cond | None:
    t = rule.timeouts
    if t is None:
        return None
    request = parse_duration_ms(t.request) if t.request is not None else None
    backend = parse_duration_ms(t.backend_request) if t.backend_request is not None else None
    if (t.request is not None and request is None) or (t.backend_request is not None and backend is None):
        return unsupported("timeouts must be Gateway API durations (GEP-2257)")
    if request and backend is not None and backend > request:
        return unsupported("backendRequest timeout cannot be longer than request timeout")
    return None


def request_timeout_ms(rule: HTTPRouteRule) -> int | None:
    """HTTPRouteTimeouts.request: "0s" disables the timeout (kept as 0 in the IR)."""
    t = rule.timeouts
    return parse_duration_ms(t.request) if t and t.request else None


def backend_timeout_ms(rule: HTTPRouteRule) -> int | None:
    """HTTPRouteTimeouts.backendRequest: per try to a backend; "0s" disables it."""
    t = rule.timeouts
    return parse_duration_ms(t.backend_request) if t and t.backend_request else None


# Retries when HTTPRouteRetry.attempts is unspecified ("implementation-specific").
DEFAULT_RETRY_ATTEMPTS = 1


def retry_problem(rule: HTTPRouteRule) -> Cond | None:
    r = rule.retry
    if r is None:
        return None
    if r.backoff is not None and parse_duration_ms(r.backoff) is None:
        return unsupported("retry backoff must be a Gateway API duration (GEP-2257)")
    if any(not 400 <= c <= 599 for c in r.codes):
        return unsupported("retry codes must be HTTP error status codes (400-599)")
    return None


def retry_of(rule: HTTPRouteRule) -> ir.Retry | None:
    """HTTPRouteRetry: attempts is the number of retries after the first try;
    codes are retried, and so are connection errors (a reset or refused
    connection is always a retriable failure)."""
    r = rule.retry
    if r is None:
        return None
    attempts = DEFAULT_RETRY_ATTEMPTS if r.attempts is None else r.attempts
    if attempts <= 0:
        return None
    return ir.Retry(attempts=attempts, codes=tuple(sorted(set(r.codes))),
                    backoff_ms=parse_duration_ms(r.backoff) if r.backoff else None)


# ---------------------------------------------------------------- entries and matches


def route_entries(route: HTTPRoute, rules: list[RuleResult], listener: ListenerState) -> list[RouteEntry]:
    entries = []
    for rule in rules:
        label = rule.rule.name or str(rule.index)
        for j, match in enumerate(rule.rule.matches or [HTTPRouteMatch()]):
            m = route_match(match)
            name = f"httproute/{route.namespace}/{route.name}/rule/{label}/match/{j}"
            key = precedence(route, rule.index, j, match, m)
            for k, (split, action) in enumerate(backend_splits(rule, listener)):
                split_name = name if split is None and k == 0 else f"{name}/backend/{k}"
                split_match = replace(m, fraction_per_million=split)
                twin = explicit_port_twin(split_name, split_match, action, listener)
                if twin is not None:
                    entries.append(RouteEntry(key + (2 * k,), twin, rule.rule.name))
                entries.append(RouteEntry(key + (2 * k + 1,), ir.Route(split_name, split_match, action),
                                          rule.rule.name))
    return entries


# Backend shares are told apart by Envoy's per-request random value (the same for every
# route of one request), compared against cumulative fractions of a million.
SPLIT_DENOMINATOR = 1_000_000


def backend_splits(rule: RuleResult, listener: ListenerState) -> list[tuple[int | None, ir.RouteAction]]:
    """The rule's action, or, when a backendRef carries its own RequestRedirect or
    URLRewrite (filters "executed if and only if the request is being forwarded to the
    backend defined here"), one action per backend share, each for its weight's fraction
    of requests: (cumulative requests per million matched, else None for the rest)."""
    action = with_redirect(rule.action, rule.filters.redirect, rule.filters.failed, listener)
    sets = rule.backend_filters
    split = any(s.redirect is not None or s.rewrite is not None for s in sets)
    if not split or action.direct_status is not None or action.redirect is not None:
        return [(None, action)]
    live = [(b, s) for b, s in zip(action.backends, sets, strict=True) if b.weight > 0]
    total = sum(b.weight for b, _ in live)
    out: list[tuple[int | None, ir.RouteAction]] = []
    so_far = 0
    for i, (backend, own) in enumerate(live):
        so_far += backend.weight
        fraction = None if i == len(live) - 1 else so_far * SPLIT_DENOMINATOR // total
        out.append((fraction, backend_action(action, backend, own, listener)))
    return out


def backend_action(action: ir.RouteAction, backend: ir.WeightedBackend, own: FilterSet,
                   listener: ListenerState) -> ir.RouteAction:
    """One share's action: its redirect (answered instead of forwarding, unless the
    backendRef is invalid: 500), or forwarding with its URLRewrite over the rule's."""
    single = replace(action, backends=(backend,))
    if backend.cluster is None:
        return single
    if own.redirect is not None:
        return with_redirect(single, own.redirect, False, listener)
    if own.rewrite is not None:
        return replace(single, rewrite=merge_rewrites(action.rewrite, own.rewrite))
    return single


def merge_rewrites(rule: ir.URLRewrite | None, own: ir.URLRewrite) -> ir.URLRewrite:
    """A backendRef's URLRewrite runs after the rule's: what it sets wins, the rest stays."""
    if rule is None:
        return own
    own_path = own.path_full is not None or own.path_prefix is not None
    return ir.URLRewrite(
        hostname=own.hostname if own.hostname is not None else rule.hostname,
        path_full=own.path_full if own_path else rule.path_full,
        path_prefix=own.path_prefix if own_path else rule.path_prefix,
        regex=None if own_path else rule.regex)


# A Host header that carries a port ("example.com:8080").
HOST_WITH_PORT = r".+:[0-9]+"


def explicit_port_twin(name: str, m: ir.RouteMatch, action: ir.RouteAction,
                       listener: ListenerState) -> ir.Route | None:
    """A redirect whose port is the scheme's default leaves the port out of Location,
    keeping the request's Host. A Host that names a port would keep that port, yet the
    redirect port MUST be the derived one: for such Hosts a twin route (tried first)
    names the derived port explicitly."""
    r = action.redirect
    if r is None or not r.strip_port or r.hostname is not None:
        return None  # a redirect hostname replaces the Host, port included
    scheme = r.scheme or ("https" if listener.protocol == "HTTPS" else "http")
    port = {"http": 80, "https": 443}[scheme]
    match = replace(m, headers=m.headers + (ir.HeaderMatch(":authority", HOST_WITH_PORT, "RegularExpression"),))
    return ir.Route(f"{name}/host-port", match, replace(action, redirect=replace(r, port=port, strip_port=False)))


def with_redirect(action: ir.RouteAction, spec: HTTPRequestRedirectFilter | None, failed: bool,
                  listener: ListenerState) -> ir.RouteAction:
    """RequestRedirect port defaults depend on the listener (HTTPRequestRedirectFilter.port):
    no port and a scheme: the scheme's well-known port; no port and no scheme: the
    listener's port. The port is left out of Location when it is the default of the
    scheme in effect (http/80, https/443)."""
    if spec is None or failed:
        return action  # an unresolvable ExtensionRef next to the redirect: 500 wins
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
    return replace(action, redirect=redirect, backends=(), direct_status=None, rewrite=None)


def route_match(match: HTTPRouteMatch) -> ir.RouteMatch:
    return ir.RouteMatch(path=path_match(match), headers=header_matches(match),
                         query_params=query_matches(match), method=match.method)


def path_match(match: HTTPRouteMatch) -> ir.PathMatch:
    """PathPrefix matches whole path elements and ignores a trailing "/"."""
    path = match.path
    if path is None or (path.type == "PathPrefix" and path.value in ("", "/")):
        return ir.PathMatch("Prefix", "/")
    if path.type == "PathPrefix":
        return ir.PathMatch("Prefix", path.value.rstrip("/") or "/")
    if path.type == "Exact":
        return ir.PathMatch("Exact", path.value)
    return ir.PathMatch("RegularExpression", path.value)


def header_matches(match: HTTPRouteMatch) -> tuple[ir.HeaderMatch, ...]:
    """HTTPHeaderMatch: names are case-insensitive; "If multiple entries specify
    equivalent header names, only the first entry ... MUST be considered"."""
    seen: dict[str, ir.HeaderMatch] = {}
    for h in match.headers:
        seen.setdefault(h.name.lower(), ir.HeaderMatch(h.name.lower(), h.value, string_match_type(h.type)))
    return tuple(seen.values())


def query_matches(match: HTTPRouteMatch) -> tuple[ir.QueryParamMatch, ...]:
    """HTTPQueryParamMatch: exact (case-sensitive) names; the first of equivalent names wins."""
    seen: dict[str, ir.QueryParamMatch] = {}
    for q in match.query_params:
        seen.setdefault(q.name, ir.QueryParamMatch(q.name, q.value, string_match_type(q.type)))
    return tuple(seen.values())


def string_match_type(kind: str) -> ir.StringMatchType:
    return "RegularExpression" if kind == "RegularExpression" else "Exact"


PATH_RANK = {"Exact": 3, "RegularExpression": 2, "Prefix": 1}


def precedence(route: HTTPRoute, rule: int, match_index: int, spec: HTTPRouteMatch,
               m: ir.RouteMatch) -> tuple[object, ...]:
    """HTTPRouteRule precedence, most important first (lower sorts first):
    Exact path; longest prefix; method; most headers; most query params;
    oldest route; "{namespace}/{name}"; rule order; match order."""
    return (
        -PATH_RANK[m.path.type], -len(m.path.value), 0 if m.method else 1, -len(m.headers),
        -len(m.query_params), route.metadata.creation_timestamp, f"{route.namespace}/{route.name}",
        rule, match_index,
    )
