"""HTTPRouteFilter authSignin → the Location of the sign-in redirect (an Envoy format string).

ingress-nginx's buildAuthSignURL: the original URL
(`$pass_access_scheme://$http_host$escaped_request_uri`) is added as the `rd` (or
`redirectParam`) query parameter, after `?` or `&`, unless the URL already has one.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from portico.models import AuthSignin

# the path and query percent-encoded ($escaped_request_uri), which a Lua filter of the
# route leaves in the request's dynamic metadata (`portico.xds.signin`)
ESCAPED_REQUEST_URI = "%DYNAMIC_METADATA(portico.signin:escaped_request_uri)%"
SCHEME_HOST = "%REQ(x-forwarded-proto)%://%REQ(:authority)%"
# redirectValue -> its Envoy format (ingress-nginx's variables)
VALUES = {
    "URL": SCHEME_HOST + ESCAPED_REQUEST_URI,  # $pass_access_scheme://$http_host$escaped_request_uri
    "UnescapedURL": SCHEME_HOST + "%REQ(:path)%",  # $scheme://$host$request_uri
    "EscapedRequestURI": ESCAPED_REQUEST_URI,  # $escaped_request_uri
    "RequestURI": "%REQ(:path)%",  # $request_uri
}
ORIGINAL_URL = VALUES["URL"]


def signin_location(spec: AuthSignin) -> str | None:
    """The Location format string (a literal % of the URL doubled, as Envoy's format wants);
    None for a redirectValue that is not one of VALUES."""
    value = VALUES.get(spec.redirect_value)
    if value is None:
        return None
    url = spec.url.replace("%", "%%")
    query = urlsplit(spec.url).query
    if spec.redirect_param in parse_qs(query):
        return url
    return f"{url}{'&' if query else '?'}{spec.redirect_param}={value}"
