"""A route's error pages (Portico HTTPRouteFilter `errorPages`, ingress-nginx's
custom-http-errors with a default backend) → Envoy's custom_response filter.

ingress-nginx answers a listed code with `error_page <code> = @custom_...`: a GET of `/` to
the default backend with X-Code, X-Format, X-Original-URI, X-Namespace, X-Ingress-Name,
X-Service-Name, X-Service-Port and X-Request-ID, whose answer (status included) the
client gets. Here, a route with error pages enables two filters every HTTP connection
manager carries disabled (a route gaining error pages never changes the listener):

- set_filter_state keeps the request's original path and query (`portico.original_uri`),
  since the redirect has replaced `:path` by the time its headers are formatted;
- custom_response, after the authorization filters (it sees the backend's answers and the
  router's own, such as 503 without endpoints), with one matcher per code: a redirect
  policy recreates the request as a GET of `/` (query kept, Host unchanged) carrying the
  marker header `x-portico-error-page: <key>` and ingress-nginx's headers. Without an
  error page backend, a local answer instead (ingress-nginx's built-in 404).

The marker selects the error page route (`marker_route`), first in the virtual host. A
client cannot send the marker itself: it is an internal-only header of every route
configuration, which Envoy removes from a client's request before routing (and not from
the recreated one). The error page's own answer passes the filter as it is.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.core.v3 import substitution_format_string_pb2 as fmt_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.set_filter_state.v3 import value_pb2 as state_pb2
from envoy.extensions.filters.http.custom_response.v3 import custom_response_pb2 as cr
from envoy.extensions.filters.http.set_filter_state.v3 import set_filter_state_pb2 as sfs
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.http.custom_response.local_response_policy.v3 import local_response_policy_pb2 as lrp
from envoy.extensions.http.custom_response.redirect_policy.v3 import redirect_policy_pb2 as rp
from envoy.type.matcher.v3 import status_code_input_pb2, string_pb2
from google.protobuf import any_pb2, message, wrappers_pb2
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import matcher_pb2
from xds.type.matcher.v3 import string_pb2 as xds_string_pb2

from portico import ir
from portico.xds._common import pack

FILTER = "portico.error_pages"
ORIGINAL_URI_FILTER = "portico.error_pages.original_uri"
ORIGINAL_URI = "portico.original_uri"
MARKER = "x-portico-error-page"
ROUTE_PREFIX = "portico/error-page/"
_HVO = base_pb2.HeaderValueOption


def error_page_filters() -> list[hcm.HttpFilter]:
    """The two filters of every HTTP connection manager, off until a route enables them."""
    return [hcm.HttpFilter(name=ORIGINAL_URI_FILTER, typed_config=pack(_original_uri()), disabled=True),
            hcm.HttpFilter(name=FILTER, typed_config=pack(cr.CustomResponse()), disabled=True)]


def _original_uri() -> sfs.Config:
    return sfs.Config(on_request_headers=[state_pb2.FilterStateValue(
        object_key=ORIGINAL_URI, factory_key="envoy.string",
        format_string=fmt_pb2.SubstitutionFormatString(
            text_format_source=base_pb2.DataSource(inline_string="%REQ(:path)%")))])


def error_pages_per_route(pages: ir.ErrorPages) -> list[tuple[str, any_pb2.Any]]:
    """(filter name, per-route config) of both filters for a route with `pages`."""
    matchers = [_code_matcher(code, _policy(pages, code)) for code in pages.codes]
    config = cr.CustomResponse(custom_response_matcher=matcher_pb2.Matcher(
        matcher_list=matcher_pb2.Matcher.MatcherList(matchers=matchers)))
    out = [(FILTER, pack(rc.FilterConfig(config=pack(config))))]
    if pages.cluster is not None:
        out.insert(0, (ORIGINAL_URI_FILTER, pack(rc.FilterConfig(config=pack(_original_uri())))))
    return out


def _code_matcher(code: int, policy: message.Message) -> matcher_pb2.Matcher.MatcherList.FieldMatcher:
    predicate = matcher_pb2.Matcher.MatcherList.Predicate(
        single_predicate=matcher_pb2.Matcher.MatcherList.Predicate.SinglePredicate(
            input=extension_pb2.TypedExtensionConfig(
                name="status", typed_config=pack(status_code_input_pb2.HttpResponseStatusCodeMatchInput())),
            value_match=xds_string_pb2.StringMatcher(exact=str(code))))
    return matcher_pb2.Matcher.MatcherList.FieldMatcher(predicate=predicate, on_match=matcher_pb2.Matcher.OnMatch(
        action=extension_pb2.TypedExtensionConfig(name=f"error-page-{code}", typed_config=pack(policy))))


def _policy(pages: ir.ErrorPages, code: int) -> message.Message:
    if pages.cluster is None:
        return lrp.LocalResponsePolicy(status_code=wrappers_pb2.UInt32Value(value=pages.status),
                                       body=base_pb2.DataSource(inline_string=pages.body) if pages.body else None)
    headers = [
        (MARKER, pages.key, _HVO.OVERWRITE_IF_EXISTS_OR_ADD),
        ("x-code", str(code), _HVO.OVERWRITE_IF_EXISTS_OR_ADD),
        ("x-format", "%REQ(accept)%", _HVO.OVERWRITE_IF_EXISTS_OR_ADD),
        ("x-original-uri", f"%FILTER_STATE({ORIGINAL_URI}:PLAIN)%", _HVO.OVERWRITE_IF_EXISTS_OR_ADD),
        # the client's request id, else a new one (Portico generates none for the backends)
        ("x-request-id", "%UNIQUE_ID%", _HVO.ADD_IF_ABSENT),
        *((name, value.replace("%", "%%"), _HVO.OVERWRITE_IF_EXISTS_OR_ADD) for name, value in pages.headers),
    ]
    return rp.RedirectPolicy(
        redirect_action=rc.RedirectAction(path_redirect="/"),
        request_headers_to_add=[_HVO(header=base_pb2.HeaderValue(key=k, value=v), append_action=a)
                                for k, v, a in headers])


def marker_routes(routes: tuple[ir.Route, ...]) -> list[rc.Route]:
    """The error page routes of a virtual host's routes (one per error page key): the
    recreated request, marked, goes to the error page backend."""
    seen: dict[str, str] = {}
    for r in routes:
        pages = r.action.error_pages
        if pages is not None and pages.cluster is not None:
            seen.setdefault(pages.key, pages.cluster)
    return [rc.Route(
        name=ROUTE_PREFIX + key,
        match=rc.RouteMatch(prefix="/", headers=[
            rc.HeaderMatcher(name=MARKER, string_match=string_pb2.StringMatcher(exact=key))]),
        route=rc.RouteAction(cluster=cluster),
        request_headers_to_remove=[MARKER]) for key, cluster in sorted(seen.items())]
