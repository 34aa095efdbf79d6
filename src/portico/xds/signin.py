"""A route's sign-in redirect (Portico HTTPRouteFilter `authSignin`, ingress-nginx's
auth-signin) → Envoy's custom_response filter.

Every HTTP connection manager carries the filter, disabled (so a route gaining a sign-in
page never changes the listener), before the ext_authz filters: the 401 an authorization
service answers is a local reply of ext_authz, which passes back through the filters
before it, so custom_response sees it and replaces it with a 302 to the sign-in page. A
route with a sign-in page enables it with its own matcher (status 401 → that redirect).
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.custom_response.v3 import custom_response_pb2 as cr
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.http.custom_response.local_response_policy.v3 import local_response_policy_pb2 as lrp
from envoy.type.matcher.v3 import status_code_input_pb2
from google.protobuf import any_pb2, wrappers_pb2
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import matcher_pb2
from xds.type.matcher.v3 import string_pb2 as xds_string_pb2

from portico.xds._common import pack

FILTER = "envoy.filters.http.custom_response"
ESCAPE_FILTER = "portico.signin.escape_request_uri"
ESCAPE_CODE = "escape-request-uri"
# the request's path and query, every byte but RFC 3986's unreserved ones percent-encoded
ESCAPE_LUA = """
function envoy_on_request(request_handle)
  local uri = request_handle:headers():get(":path") or "/"
  local escaped = string.gsub(uri, "[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end)
  request_handle:streamInfo():dynamicMetadata():set("portico.signin", "escaped_request_uri", escaped)
end
"""


def signin_filters() -> list[hcm.HttpFilter]:
    """The Lua filter encoding the request URI and the custom_response filter of every HTTP
    connection manager, off until a route enables them."""
    lua = lua_pb2.Lua(source_codes={ESCAPE_CODE: base_pb2.DataSource(inline_string=ESCAPE_LUA)})
    return [hcm.HttpFilter(name=ESCAPE_FILTER, typed_config=pack(lua), disabled=True),
            hcm.HttpFilter(name=FILTER, typed_config=pack(cr.CustomResponse()), disabled=True)]


def escape_per_route() -> tuple[str, any_pb2.Any]:
    return ESCAPE_FILTER, pack(rc.FilterConfig(config=pack(lua_pb2.LuaPerRoute(name=ESCAPE_CODE))))


def signin_per_route(location: str) -> tuple[str, any_pb2.Any]:
    """(filter name, per-route config): a 401 becomes a 302 to `location` (an Envoy format
    string: the original URL is put in with %REQ(...)%)."""
    redirect = lrp.LocalResponsePolicy(
        status_code=wrappers_pb2.UInt32Value(value=302),
        response_headers_to_add=[base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key="location", value=location),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)])
    matcher = matcher_pb2.Matcher(matcher_list=matcher_pb2.Matcher.MatcherList(matchers=[
        matcher_pb2.Matcher.MatcherList.FieldMatcher(
            predicate=matcher_pb2.Matcher.MatcherList.Predicate(
                single_predicate=matcher_pb2.Matcher.MatcherList.Predicate.SinglePredicate(
                    input=extension_pb2.TypedExtensionConfig(
                        name="status", typed_config=pack(status_code_input_pb2.HttpResponseStatusCodeMatchInput())),
                    value_match=xds_string_pb2.StringMatcher(exact="401"))),
            on_match=matcher_pb2.Matcher.OnMatch(action=extension_pb2.TypedExtensionConfig(
                name="signin", typed_config=pack(redirect))))]))
    return FILTER, pack(rc.FilterConfig(config=pack(cr.CustomResponse(custom_response_matcher=matcher))))
