"""IR HTTP configs -> Envoy RDS `RouteConfiguration` resources.

Implements the Gateway API HTTPRoute/GRPCRoute semantics the translator left to the
data plane: segment-aware prefixes, weighted backends (invalid ones answer 500),
header modifiers, redirects, rewrites, mirrors, timeouts, retries, CORS and session
persistence.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from envoy.config.core.v3 import base_pb2, extension_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.stateful_session.v3 import stateful_session_pb2
from envoy.extensions.http.stateful_session.cookie.v3 import cookie_pb2
from envoy.extensions.http.stateful_session.header.v3 import header_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.http.v3 import cookie_pb2 as http_cookie_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from portico import ir
from portico.xds import policies
from portico.xds._common import INVALID_BACKEND_HEADER, INVALID_CLUSTER, millis, pack
from portico.xds.clientcert import certificate_check_route, client_cert_headers
from portico.xds.errorpages import MARKER, error_pages_per_route, marker_routes
from portico.xds.extauth import ext_authz_per_route
from portico.xds.signin import escape_per_route, signin_per_route

CORS_FILTER = "envoy.filters.http.cors"
SESSION_FILTER = "envoy.filters.http.stateful_session"
MISDIRECTED_VHOST = "portico/misdirected"
CATCH_ALL_VHOST = "portico/no-listener-host"

_HVO = base_pb2.HeaderValueOption
_REDIRECT_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


RouteBuilder = Callable[[ir.Route], rc.Route]


def route_config_header(http: ir.HTTPConfig) -> route_pb2.RouteConfiguration:
    """The route configuration without its virtual hosts (they are VHDS resources:
    `xds.resources`)."""
    # Virtual hosts match the Host without its port; the Host itself reaches the
    # backend unchanged (upstream HTTPRouteListenerPortMatching: "foo.com:8080").
    out = route_pb2.RouteConfiguration(name=http.route_config_name, ignore_port_in_host_matching=True,
                                       # what selects an error page route: never a client's (`errorpages`)
                                       internal_only_headers=[MARKER])
    if http.alt_svc is not None:  # HTTP/3 on the port (ClientTrafficPolicy http3)
        out.response_headers_to_add.append(_header("alt-svc", http.alt_svc, _HVO.OVERWRITE_IF_EXISTS_OR_ADD))
    return out


def closing_virtual_hosts(http: ir.HTTPConfig) -> list[rc.VirtualHost]:
    """What answers a Host none of the configuration's virtual hosts serves."""
    # (C-level iteration: configurations hold thousands of virtual hosts)
    if any(map(operator.contains, map(attrgetter("domains"), http.virtual_hosts), itertools.repeat("*"))):
        return []
    if http.misdirected_421:
        # Host not served by the SNI-selected listener: 421 Misdirected Request (Gateway API HTTPS).
        return [_misdirected_vhost()]
    # Hosts no listener serves answer 404 (no route; a malformed one was answered 400 before).
    return [rc.VirtualHost(name=CATCH_ALL_VHOST, domains=["*"])]


def build_virtual_host(vh: ir.VirtualHost, route_builder: RouteBuilder | None = None) -> rc.VirtualHost:
    """Envoy matches domains case-insensitively (and, here, ignoring the Host's port). A
    malformed Host never reaches a virtual host: the connection manager's first filter
    answers it 400 (`xds.listeners.bad_authority_filter`)."""
    out = rc.VirtualHost(name=vh.name, domains=list(vh.domains))
    out.routes.extend(marker_routes(vh.routes))
    build = route_builder or build_route
    for r in vh.routes:
        built = build(r)
        check = certificate_check_route(r, built.match) if r.action.client_cert_check is not None else None
        if check is not None:  # first: the rule's requests without the certificate it needs
            out.routes.append(check)
        out.routes.append(built)
    return out


def build_route(route: ir.Route) -> rc.Route:
    out = rc.Route(name=route.name, match=build_match(route.match))
    action = route.action
    _set_action(out, action, route.match.path)
    _header_modifier(action.request_headers, out.request_headers_to_add, out.request_headers_to_remove)
    _header_modifier(action.response_headers, out.response_headers_to_add, out.response_headers_to_remove)
    out.request_headers_to_add.extend(client_cert_headers(action.client_cert_headers))
    # CORS and stateful session are disabled in the HCM: a route's FilterConfig enables them
    if action.cors is not None:
        out.typed_per_filter_config[CORS_FILTER].CopyFrom(pack(rc.FilterConfig(config=pack(_cors_policy(action.cors)))))
    if action.session_persistence is not None:
        per_route = _session_per_route(action.session_persistence)
        out.typed_per_filter_config[SESSION_FILTER].CopyFrom(pack(rc.FilterConfig(config=pack(per_route))))
    if action.external_auth is not None and action.direct_status is None:
        name, config = ext_authz_per_route(action.external_auth)
        out.typed_per_filter_config[name].CopyFrom(config)
        if action.signin is not None:
            for name, config in (escape_per_route(), signin_per_route(action.signin)):
                out.typed_per_filter_config[name].CopyFrom(config)
    if action.error_pages is not None and action.direct_status is None and action.redirect is None:
        for name, config in error_pages_per_route(action.error_pages):
            out.typed_per_filter_config[name].CopyFrom(config)
    if action.policy_external_auth is not None and action.direct_status is None:
        name, config = ext_authz_per_route(action.policy_external_auth, policy=True)
        out.typed_per_filter_config[name].CopyFrom(config)
    policies.per_route(action, out)
    return out


# ---------------------------------------------------------------- matching


def build_match(m: ir.RouteMatch) -> rc.RouteMatch:
    out = rc.RouteMatch()
    _set_path(out, m.path)
    out.headers.extend(_header_matcher(h) for h in m.headers)
    if m.method is not None:
        out.headers.append(rc.HeaderMatcher(name=":method", string_match=string_pb2.StringMatcher(exact=m.method)))
    out.query_parameters.extend(_query_matcher(q) for q in m.query_params)
    if m.grpc:
        out.grpc.SetInParent()
    if m.fraction_per_million is not None:
        # Envoy draws one random value per request for every route's runtime_fraction, so
        # routes with cumulative fractions split requests by weight.
        out.runtime_fraction.default_value.CopyFrom(percent_pb2.FractionalPercent(
            numerator=m.fraction_per_million, denominator=percent_pb2.FractionalPercent.MILLION))
    return out


def _set_path(out: rc.RouteMatch, path: ir.PathMatch) -> None:
    if path.type == "Exact":
        out.path = path.value
    elif path.type == "RegularExpression":
        out.safe_regex.CopyFrom(_regex(path.value))
    else:
        # Gateway API PathPrefix is segment-aware, with a trailing "/" ignored: "/v2/" == "/v2".
        prefix = _segment_prefix(path.value)
        if prefix:
            out.path_separated_prefix = prefix
        else:
            out.prefix = "/"


def _segment_prefix(value: str) -> str:
    """The prefix without trailing slashes ("" for "/")."""
    return value.rstrip("/")


def _string_matcher(kind: ir.StringMatchType, value: str) -> string_pb2.StringMatcher:
    if kind == "RegularExpression":
        return string_pb2.StringMatcher(safe_regex=_regex(value))
    if kind == "Prefix":
        return string_pb2.StringMatcher(prefix=value)
    return string_pb2.StringMatcher(exact=value)


def _header_matcher(h: ir.HeaderMatch) -> rc.HeaderMatcher:
    return rc.HeaderMatcher(name=h.name, string_match=_string_matcher(h.type, h.value), invert_match=h.invert)


def _query_matcher(q: ir.QueryParamMatch) -> rc.QueryParameterMatcher:
    return rc.QueryParameterMatcher(name=q.name, string_match=_string_matcher(q.type, q.value))


def _regex(value: str) -> regex_pb2.RegexMatcher:
    # google_re2 is the (only) default engine of safe_regex.
    return regex_pb2.RegexMatcher(regex=value)


# ---------------------------------------------------------------- actions


def _set_action(out: rc.Route, action: ir.RouteAction, path: ir.PathMatch) -> None:
    if action.direct_status is not None:
        out.direct_response.status = action.direct_status
    elif action.redirect is not None:
        out.redirect.CopyFrom(_redirect(action.redirect, path))
    else:
        backends = [b for b in action.backends if b.weight > 0]
        if not any(b.cluster is not None for b in backends):
            # No backend at all, all weights 0, or every backendRef invalid: 500 (HTTPRoute spec).
            out.direct_response.status = 500
            return
        out.route.CopyFrom(_route_action(action, backends, path))


def _route_action(action: ir.RouteAction, backends: list[ir.WeightedBackend], path: ir.PathMatch) -> rc.RouteAction:
    out = rc.RouteAction()
    _set_backends(out, backends, action.invalid_backend_status)
    host = _host_rewrite(action.request_headers)
    if host is not None:  # RequestHeaderModifier set Host (a URLRewrite hostname overrides it)
        out.host_rewrite_literal = host
    if action.rewrite is not None:
        _set_rewrite(out, action.rewrite, path)
    out.request_mirror_policies.extend(_mirror(m) for m in action.mirrors)
    _set_timeouts(out, action)
    out.hash_policy.extend(policies.hash_policies(action.hash_policies))
    if action.idle_timeout_ms is not None:
        out.idle_timeout.CopyFrom(millis(action.idle_timeout_ms))
    if action.websocket:
        out.upgrade_configs.append(rc.RouteAction.UpgradeConfig(upgrade_type="websocket", enabled=_true()))
    return out


def _set_backends(out: rc.RouteAction, backends: list[ir.WeightedBackend], invalid_status: int) -> None:
    only = backends[0]
    simple = len(backends) == 1 and not (only.request_headers or only.response_headers)
    if simple and only.cluster is not None:
        out.cluster = only.cluster
        return
    # weighted_clusters also carries per-backend header modifiers (single backend included).
    out.weighted_clusters.clusters.extend(_cluster_weight(b, invalid_status) for b in backends)


def _cluster_weight(b: ir.WeightedBackend, invalid_status: int) -> rc.WeightedCluster.ClusterWeight:
    out = rc.WeightedCluster.ClusterWeight(weight=wrappers_pb2.UInt32Value(value=b.weight))
    if b.cluster is None:
        # Invalid backendRef: its share answers `invalid_status` via the HCM local_reply_config
        # mappers (response flag UH on this empty cluster + this marker header naming the status).
        out.name = INVALID_CLUSTER
        marker = _header(INVALID_BACKEND_HEADER, str(invalid_status), _HVO.OVERWRITE_IF_EXISTS_OR_ADD)
        out.request_headers_to_add.append(marker)
        return out
    out.name = b.cluster
    host = _host_rewrite(b.request_headers)
    if host is not None:
        out.host_rewrite_literal = host
    _header_modifier(b.request_headers, out.request_headers_to_add, out.request_headers_to_remove)
    _header_modifier(b.response_headers, out.response_headers_to_add, out.response_headers_to_remove)
    return out


def _set_rewrite(out: rc.RouteAction, rw: ir.URLRewrite, path: ir.PathMatch) -> None:
    if rw.hostname is not None:
        out.host_rewrite_literal = rw.hostname
    if rw.regex is not None:
        out.regex_rewrite.CopyFrom(regex_pb2.RegexMatchAndSubstitute(pattern=_regex(rw.regex[0]),
                                                                     substitution=rw.regex[1]))
    elif rw.path_full is not None:
        out.regex_rewrite.CopyFrom(_full_path_rewrite(rw.path_full))
    elif rw.path_prefix is not None:
        prefix_rewrite, regex_rewrite = _prefix_replacement(path, rw.path_prefix)
        if regex_rewrite is not None:
            out.regex_rewrite.CopyFrom(regex_rewrite)
        elif prefix_rewrite is not None:
            out.prefix_rewrite = prefix_rewrite


def _full_path_rewrite(value: str) -> regex_pb2.RegexMatchAndSubstitute:
    """ReplaceFullPath: the whole path (the query string is kept by Envoy)."""
    return regex_pb2.RegexMatchAndSubstitute(pattern=_regex("^/.*$"), substitution=value)


def _prefix_replacement(
    path: ir.PathMatch, replacement: str
) -> tuple[str | None, regex_pb2.RegexMatchAndSubstitute | None]:
    """ReplacePrefixMatch (segment-aware, trailing "/" ignored on both sides):
    "/foo/bar" with prefix "/foo" -> "/xyz" gives "/xyz/bar"; -> "/" gives "/bar";
    "/foo" -> "/" gives "/". Returns (prefix_rewrite, regex_rewrite), at most one set."""
    prefix = _segment_prefix(path.value) if path.type != "RegularExpression" else ""
    target = replacement.rstrip("/")
    if prefix and target:
        # path_separated_prefix + prefix_rewrite replaces exactly the matched segments.
        return target, None
    if prefix:
        # Replacing with "/": drop the prefix and the slashes after it, keep one leading "/".
        pattern = "^" + re.escape(prefix) + "/*"
        return None, regex_pb2.RegexMatchAndSubstitute(pattern=_regex(pattern), substitution="/")
    if target:
        # Match "/" (everything): insert the replacement before the path.
        return target + "/", None
    return None, None


def _redirect(r: ir.Redirect, path: ir.PathMatch) -> rc.RedirectAction:
    out = rc.RedirectAction(response_code=_REDIRECT_CODES.get(r.status_code, rc.RedirectAction.FOUND))
    if r.scheme is not None:
        out.scheme_redirect = r.scheme
    if r.hostname is not None:
        out.host_redirect = r.hostname
    # strip_port: no port_redirect keeps the request's Host as it is (without a port in the
    # common case); the translator adds a twin route with the port explicit for Hosts with one.
    if r.port is not None and not r.strip_port:
        out.port_redirect = r.port
    if r.path_full is not None:
        out.path_redirect = r.path_full
    elif r.path_prefix is not None:
        prefix_rewrite, regex_rewrite = _prefix_replacement(path, r.path_prefix)
        if regex_rewrite is not None:
            out.regex_rewrite.CopyFrom(regex_rewrite)
        elif prefix_rewrite is not None:
            out.prefix_rewrite = prefix_rewrite
    return out


def _mirror(m: ir.Mirror) -> rc.RouteAction.RequestMirrorPolicy:
    out = rc.RouteAction.RequestMirrorPolicy(cluster=m.cluster)
    if m.denominator > 0 and m.numerator < m.denominator:
        # MILLION denominator keeps fractions such as 1/3 precise to 1e-6.
        numerator = m.numerator * 1_000_000 // m.denominator
        out.runtime_fraction.default_value.CopyFrom(
            percent_pb2.FractionalPercent(numerator=numerator, denominator=percent_pb2.FractionalPercent.MILLION)
        )
    return out


def _set_timeouts(out: rc.RouteAction, action: ir.RouteAction) -> None:
    """timeouts.request -> route timeout (0 disables); timeouts.backendRequest is per try
    (per_try_timeout), or the route timeout when there is neither a request timeout nor retries."""
    if action.timeout_ms is not None:
        out.timeout.CopyFrom(millis(action.timeout_ms))
    if action.retry is not None:
        out.retry_policy.CopyFrom(_retry_policy(action.retry))
    backend = action.backend_timeout_ms
    if backend is None:
        return
    if action.timeout_ms is None and action.retry is None:
        out.timeout.CopyFrom(millis(backend))
        return
    if action.timeout_ms is None:
        out.timeout.CopyFrom(millis(0))  # bounded by the per-try timeouts
    out.retry_policy.per_try_timeout.CopyFrom(millis(backend))


def _retry_policy(r: ir.Retry) -> rc.RetryPolicy:
    if r.triggers:
        conditions = list(r.triggers)
    else:
        conditions = ["retriable-status-codes"] if r.codes else []
        if r.on_connect_failure:
            conditions.append("connect-failure")
        conditions += ["refused-stream", "reset"]
    out = rc.RetryPolicy(
        retry_on=",".join(conditions),
        num_retries=wrappers_pb2.UInt32Value(value=r.attempts),
        retriable_status_codes=list(r.codes),
    )
    if r.backoff_ms is not None and r.backoff_ms > 0:
        out.retry_back_off.base_interval.CopyFrom(millis(r.backoff_ms))
        if r.max_backoff_ms is not None:
            out.retry_back_off.max_interval.CopyFrom(millis(max(r.max_backoff_ms, r.backoff_ms)))
    if r.per_try_timeout_ms is not None:
        out.per_try_timeout.CopyFrom(millis(r.per_try_timeout_ms))
    if r.triggers:
        # a retry goes to another endpoint where there is one (the failed one may be down)
        out.retry_host_predicate.add(name="envoy.retry_host_predicates.previous_hosts", typed_config=pack(
            previous_hosts_pb2.PreviousHostsPredicate()))
        out.host_selection_retry_max_attempts = 5
    return out


# ---------------------------------------------------------------- headers, CORS, sessions


def _header(name: str, value: str, action: int) -> base_pb2.HeaderValueOption:
    return _HVO(header=base_pb2.HeaderValue(key=name, value=value), append_action=action)


def _header_modifier(mod: ir.HeaderModifier, to_add: Any, to_remove: Any) -> None:
    """Gateway API HeaderModifier: set overwrites, add appends, remove removes.
    `to_add`/`to_remove` are the repeated fields of a Route or ClusterWeight.

    Envoy reads a header value as a substitution format string: "%" starts a command
    (`%START_TIME%` would be expanded, `50%` or `%FOO(%` NACKed), and "%%" is a literal
    "%". The Gateway API value is literal, so every "%" is doubled. Host is not in
    Envoy's header lists (it refuses them): a `set` of it is the route's host rewrite
    (`_host_rewrite`); the translator refuses any other edit of Host."""
    adds = [_header(h.name, _literal(h.value), _HVO.OVERWRITE_IF_EXISTS_OR_ADD) for h in mod.set if not _is_host(h)]
    adds += [_header(h.name, _literal(h.value), _HVO.APPEND_IF_EXISTS_OR_ADD) for h in mod.add]
    to_add.extend(adds)
    to_remove.extend(mod.remove)


def _literal(value: str) -> str:
    """A header value Envoy sends as it is (no substitution commands)."""
    return value.replace("%", "%%")


def _is_host(h: ir.HeaderValue) -> bool:
    return h.name.lower() == "host"


def _host_rewrite(mod: ir.HeaderModifier) -> str | None:
    """The Host a RequestHeaderModifier sets (the last one set), if any."""
    return next((h.value for h in reversed(mod.set) if _is_host(h)), None)


def _cors_policy(c: ir.CORS) -> cors_pb2.CorsPolicy:
    out = cors_pb2.CorsPolicy(
        allow_origin_string_match=[_origin_matcher(o) for o in c.allow_origins],
        allow_methods=", ".join(c.allow_methods),
        allow_headers=", ".join(c.allow_headers),
        expose_headers=", ".join(c.expose_headers),
        allow_credentials=wrappers_pb2.BoolValue(value=c.allow_credentials),
    )
    if c.max_age_s is not None:
        out.max_age = str(c.max_age_s)
    return out


def _origin_matcher(origin: str) -> string_pb2.StringMatcher:
    """Gateway API allowOrigins: "*" alone matches all; "*" in the host is a greedy
    match to the left (any number of labels)."""
    if origin == "*":
        return string_pb2.StringMatcher(safe_regex=_regex(".*"))
    if "*" not in origin:
        return string_pb2.StringMatcher(exact=origin)
    pattern = ".*".join(re.escape(part) for part in origin.split("*"))
    return string_pb2.StringMatcher(safe_regex=_regex(pattern))


def _session_per_route(sp: ir.SessionPersistence) -> stateful_session_pb2.StatefulSessionPerRoute:
    """Gateway API sessionPersistence -> stateful_session with a cookie or header state."""
    state = extension_pb2.TypedExtensionConfig()
    if sp.type == "Cookie":
        cookie = http_cookie_pb2.Cookie(name=sp.name, path=sp.path)
        if sp.ttl_s is not None:
            cookie.ttl.CopyFrom(millis(sp.ttl_s * 1000))
        state.name = "envoy.http.stateful_session.cookie"
        state.typed_config.CopyFrom(pack(cookie_pb2.CookieBasedSessionState(cookie=cookie)))
    else:
        state.name = "envoy.http.stateful_session.header"
        state.typed_config.CopyFrom(pack(header_pb2.HeaderBasedSessionState(name=sp.name)))
    return stateful_session_pb2.StatefulSessionPerRoute(
        stateful_session=stateful_session_pb2.StatefulSession(session_state=state)
    )


def _misdirected_vhost() -> rc.VirtualHost:
    route = rc.Route(
        name=MISDIRECTED_VHOST,
        match=rc.RouteMatch(prefix="/"),
        direct_response=rc.DirectResponseAction(status=421),
    )
    return rc.VirtualHost(name=MISDIRECTED_VHOST, domains=["*"], routes=[route])


def _true() -> wrappers_pb2.BoolValue:
    return wrappers_pb2.BoolValue(value=True)
