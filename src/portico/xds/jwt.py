"""SecurityPolicy JWT (ir.JWTAuthentication) → Envoy jwt_authn.

The providers live in the filter's own config, which is not per route; so that a route
gaining a JWT policy never changes (and drains) its listener, every HTTP connection
manager's jwt_authn filter takes its config by ECDS (extension config discovery over
the ADS stream). ECDS names a resource by the filter's name, so there is one,
`envoy.filters.http.jwt_authn`, holding the providers of every route of the data plane
(an Envoy serves one Gateway in Kubernetes mode: no other Gateway's providers). The
filter is disabled by default; a route with JWT enables it with a per-route config
naming its requirement (its providers, optional or not).

Each provider's verified payload is put in the request's dynamic metadata under its
name, where the RBAC filter after it reads claims and scopes (`policies.rbac_per_route`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2, config_source_pb2, extension_pb2, http_uri_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from google.protobuf import any_pb2, empty_pb2

from portico import ir
from portico.xds._common import TYPE_PREFIX, ads_source, millis, pack

JWT_FILTER = "envoy.filters.http.jwt_authn"
METADATA_NAMESPACE = JWT_FILTER  # where jwt_authn puts payload_in_metadata
JWKS_FETCH_TIMEOUT_MS = 5_000
_TYPE_URL = TYPE_PREFIX + jwt.JwtAuthentication.DESCRIPTOR.full_name


def jwt_filter() -> hcm.HttpFilter:
    """The connection manager's jwt_authn filter: its config by ECDS, off until a route
    enables it. Until the config arrives the listener serves with an empty one (no
    provider; a route naming a requirement it lacks is refused, fail closed)."""
    source = config_source_pb2.ExtensionConfigSource(
        config_source=ads_source(), type_urls=[_TYPE_URL],
        default_config=pack(jwt.JwtAuthentication()), apply_default_config_without_warming=True)
    return hcm.HttpFilter(name=JWT_FILTER, config_discovery=source, disabled=True)


def requirement_name(auth: ir.JWTAuthentication) -> str:
    """A name for the requirement (providers, optional), the same wherever it recurs."""
    text = "\n".join(sorted(p.name for p in auth.providers)) + ("\noptional" if auth.optional else "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def per_route(auth: ir.JWTAuthentication) -> any_pb2.Any:
    return pack(rc.FilterConfig(config=pack(jwt.PerRouteConfig(requirement_name=requirement_name(auth)))))


def extension_config(auths: Iterable[ir.JWTAuthentication]) -> extension_pb2.TypedExtensionConfig:
    """The ECDS resource: the providers and requirements of the routes."""
    out = jwt.JwtAuthentication()
    for auth in auths:
        for p in auth.providers:
            if p.name not in out.providers:
                out.providers[p.name].CopyFrom(provider(p))
        name = requirement_name(auth)
        if name not in out.requirement_map:
            out.requirement_map[name].CopyFrom(requirement(auth))
    return extension_pb2.TypedExtensionConfig(name=JWT_FILTER, typed_config=pack(out))


def requirement(auth: ir.JWTAuthentication) -> jwt.JwtRequirement:
    """A token of any provider; optional: no token at all passes too (a bad one does not)."""
    names = [jwt.JwtRequirement(provider_name=p.name) for p in sorted(auth.providers, key=lambda p: p.name)]
    if auth.optional:
        names.append(jwt.JwtRequirement(allow_missing=empty_pb2.Empty()))
    if len(names) == 1:
        return names[0]
    return jwt.JwtRequirement(requires_any=jwt.JwtRequirementOrList(requirements=names))


def provider(p: ir.JWTProvider) -> jwt.JwtProvider:
    out = jwt.JwtProvider(issuer=p.issuer, audiences=p.audiences, forward=p.forward,
                          payload_in_metadata=p.name,
                          from_cookies=p.from_cookies, from_params=p.from_params)
    if p.jwks_cluster:
        out.remote_jwks.CopyFrom(jwt.RemoteJwks(
            http_uri=http_uri_pb2.HttpUri(uri=p.jwks_uri, cluster=p.jwks_cluster,
                                          timeout=millis(JWKS_FETCH_TIMEOUT_MS)),
            cache_duration=millis(p.jwks_cache_s * 1000)))
    else:
        out.local_jwks.CopyFrom(base_pb2.DataSource(inline_string=p.local_jwks))
    for name, prefix in p.from_headers:
        out.from_headers.append(jwt.JwtHeader(name=name, value_prefix=prefix))
    if not (p.from_headers or p.from_cookies or p.from_params):
        # Envoy's default also reads an access_token query parameter: only the header here
        out.from_headers.append(jwt.JwtHeader(name="Authorization", value_prefix="Bearer "))
    for header, claim in p.claim_to_headers:
        out.claim_to_headers.append(jwt.JwtClaimToHeader(header_name=header, claim_name=claim))
    if p.clock_skew_s is not None:
        out.clock_skew_seconds = p.clock_skew_s
    return out


def union(newer: any_pb2.Any, older: any_pb2.Any) -> any_pb2.Any | None:
    """The ECDS resource (a packed TypedExtensionConfig) holding `newer`'s providers and
    requirements and those of `older` it lacks (None: it lacks none; `older` itself: that
    is `older`'s config): what Envoy is sent
    while it holds routes of the older version, so that neither a new route nor an old
    one names a requirement the config does not have (`connection.Connection.step`)."""
    configs = []
    for packed_config in (newer, older):
        typed = extension_pb2.TypedExtensionConfig()
        packed_config.Unpack(typed)
        config = jwt.JwtAuthentication()
        typed.typed_config.Unpack(config)
        configs.append(config)
    out, old = configs
    if old.providers.keys() <= out.providers.keys() and old.requirement_map.keys() <= out.requirement_map.keys():
        return None
    for name, p in old.providers.items():
        if name not in out.providers:
            out.providers[name].CopyFrom(p)
    for name, r in old.requirement_map.items():
        if name not in out.requirement_map:
            out.requirement_map[name].CopyFrom(r)
    if out == old:
        return older  # (nothing to send: Envoy holds it)
    return pack(extension_pb2.TypedExtensionConfig(name=JWT_FILTER, typed_config=pack(out)))
