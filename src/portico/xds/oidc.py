"""SecurityPolicy oidc (ir.OIDC) → Envoy's oauth2 filter, enabled per route.

Envoy's oauth2 filter has no per-route config: one filter is one provider and client.
So that a route gaining an OIDC policy never changes (and drains) its listener, every
HTTP connection manager holds one composite filter (`envoy.filters.http.composite`
under an ExtensionWithMatcher), disabled; a route with OIDC enables it with an
ExtensionWithMatcherPerRoute whose matcher's only action runs an oauth2 filter with the
route's config (`ExecuteFilterAction`). The client secret and the HMAC secret are named
there, never inlined: Envoy fetches them over SDS (`secrets`), so neither is in a route
configuration, a listener, or a config dump of either.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import extension_pb2, http_uri_pb2
from envoy.extensions.common.matching.v3 import extension_matcher_pb2
from envoy.extensions.filters.http.composite.v3 import composite_pb2
from envoy.extensions.filters.http.oauth2.v3 import oauth_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.type.matcher.v3 import path_pb2, string_pb2
from google.protobuf import any_pb2, wrappers_pb2
from xds.core.v3 import extension_pb2 as xds_extension_pb2
from xds.type.matcher.v3 import matcher_pb2

from portico import ir
from portico.xds._common import millis, pack
from portico.xds.secrets import sds_config

OIDC_FILTER = "portico.oidc"  # the composite filter (a name of ours: it is not Envoy's oauth2 itself)
OAUTH2 = "envoy.filters.http.oauth2"
TOKEN_TIMEOUT_MS = 5_000


def oidc_filter() -> hcm.HttpFilter:
    """The connection manager's composite filter, disabled until a route enables it (with no
    matcher of its own: what it runs comes from the route's)."""
    config = extension_matcher_pb2.ExtensionWithMatcher(
        extension_config=extension_pb2.TypedExtensionConfig(
            name="envoy.filters.http.composite", typed_config=pack(composite_pb2.Composite())),
        xds_matcher=matcher_pb2.Matcher())
    return hcm.HttpFilter(name=OIDC_FILTER, typed_config=pack(config), disabled=True)


def per_route(o: ir.OIDC) -> any_pb2.Any:
    """The route's oauth2 filter, as the composite filter's only action."""
    action = composite_pb2.ExecuteFilterAction(typed_config=extension_pb2.TypedExtensionConfig(
        name=OAUTH2, typed_config=pack(oauth_pb2.OAuth2(config=oauth2_config(o)))))
    matcher = matcher_pb2.Matcher(on_no_match=matcher_pb2.Matcher.OnMatch(action=xds_extension_pb2.TypedExtensionConfig(
        name="oidc", typed_config=pack(action))))
    return pack(extension_matcher_pb2.ExtensionWithMatcherPerRoute(xds_matcher=matcher))


def oauth2_config(o: ir.OIDC) -> oauth_pb2.OAuth2Config:
    """Authorization code flow; Envoy sends a PKCE challenge (S256) with every authorization
    request and the verifier with the code (it keeps it in a cookie meanwhile)."""
    client_secret, hmac_secret = o.secret_names()
    suffix = o.cookie_suffix
    names = oauth_pb2.OAuth2Credentials.CookieNames(
        bearer_token=o.access_token_cookie, id_token=o.id_token_cookie,
        oauth_hmac=f"OauthHMAC-{suffix}", oauth_expires=f"OauthExpires-{suffix}",
        refresh_token=f"RefreshToken-{suffix}", oauth_nonce=f"OauthNonce-{suffix}",
        code_verifier=f"CodeVerifier-{suffix}")
    out = oauth_pb2.OAuth2Config(
        token_endpoint=http_uri_pb2.HttpUri(uri=o.token_endpoint, cluster=o.token_cluster,
                                            timeout=millis(TOKEN_TIMEOUT_MS)),
        authorization_endpoint=o.authorization_endpoint,
        end_session_endpoint=o.end_session_endpoint,
        credentials=oauth_pb2.OAuth2Credentials(
            client_id=o.client_id, token_secret=sds_config(client_secret), hmac_secret=sds_config(hmac_secret),
            cookie_names=names, cookie_domain=o.cookie_domain),
        redirect_uri=o.redirect_uri,
        redirect_path_matcher=_exact(o.redirect_path),
        signout_path=_exact(o.logout_path),
        forward_bearer_token=o.forward_access_token,
        auth_scopes=o.scopes, resources=o.resources,
        use_refresh_token=wrappers_pb2.BoolValue(value=o.refresh_token),
        stat_prefix=f"portico_oidc_{suffix}")
    if o.default_token_ttl_s is not None:
        out.default_expires_in.CopyFrom(millis(o.default_token_ttl_s * 1000))
    return out


def _exact(path: str) -> path_pb2.PathMatcher:
    return path_pb2.PathMatcher(path=string_pb2.StringMatcher(exact=path))


def secrets(configs: Iterable[ir.OIDC]) -> dict[str, secret_pb2.Secret]:
    """The SDS secrets of the routes' OIDC logins: the client secret and the HMAC secret."""
    out: dict[str, secret_pb2.Secret] = {}
    for o in configs:
        for name, value in zip(o.secret_names(), (o.client_secret, o.hmac_secret), strict=True):
            secret = secret_pb2.Secret(name=name)
            secret.generic_secret.secret.inline_string = value
            out.setdefault(name, secret)
    return out
