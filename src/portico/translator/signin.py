"""HTTPRouteFilter authSignin → the Location of the sign-in redirect (an Envoy format string).

ingress-nginx's buildAuthSignURL: the original URL
(`$pass_access_scheme://$http_host$escaped_request_uri`) is added as the `rd` (or
`redirectParam`) query parameter, after `?` or `&`, unless the URL already has one.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from portico.models import AuthSignin

# the request's own URL as ingress-nginx puts it: scheme://host, then the path and query
# percent-encoded ($escaped_request_uri), which a Lua filter of the route leaves in the
# request's dynamic metadata (`portico.xds.signin`)
ORIGINAL_URL = "%REQ(x-forwarded-proto)%://%REQ(:authority)%%DYNAMIC_METADATA(portico.signin:escaped_request_uri)%"


def signin_location(spec: AuthSignin) -> str:
    """The Location format string (a literal % of the URL doubled, as Envoy's format wants)."""
    url = spec.url.replace("%", "%%")
    query = urlsplit(spec.url).query
    if spec.redirect_param in parse_qs(query):
        return url
    return f"{url}{'&' if query else '?'}{spec.redirect_param}={ORIGINAL_URL}"
