"""Route policies (translator.policies) as Envoy per-route filter configs.

The RBAC, local rate limit and buffer filters are always in the HCM but disabled, like
CORS: a route whose policy needs one enables it with its own FilterConfig, so gaining
a policy never changes the listener (no connection drain).
"""

from __future__ import annotations

import ipaddress
import re

from envoy.config.core.v3 import address_pb2, base_pb2, extension_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac_config
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.extensions.filters.http.api_key_auth.v3 import api_key_auth_pb2
from envoy.extensions.filters.http.basic_auth.v3 import basic_auth_pb2
from envoy.extensions.filters.http.buffer.v3 import buffer_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.rbac.principals.mtls_authenticated.v3 import mtls_authenticated_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2
from envoy.type.metadata.v3 import metadata_pb2 as metadata_key_pb2
from envoy.type.v3 import http_status_pb2, percent_pb2, token_bucket_pb2
from google.protobuf import wrappers_pb2

from portico import ir
from portico.xds._common import millis, pack
from portico.xds.jwt import JWT_FILTER
from portico.xds.jwt import METADATA_NAMESPACE as JWT_METADATA
from portico.xds.jwt import per_route as jwt_per_route
from portico.xds.oidc import OIDC_FILTER
from portico.xds.oidc import per_route as oidc_per_route

RBAC_FILTER = "envoy.filters.http.rbac"
BASIC_AUTH_FILTER = "envoy.filters.http.basic_auth"
API_KEY_FILTER = "envoy.filters.http.api_key_auth"
NO_USER = "-:{SHA}AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
MTLS_AUTHENTICATED = "envoy.rbac.principals.mtls_authenticated"
RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
BUFFER_FILTER = "envoy.filters.http.buffer"
# distinct clients (source IPs, header values) remembered per route rule: the LRU of
# Envoy's dynamic descriptors, so a flood of new addresses cannot grow memory unbounded
MAX_DYNAMIC_DESCRIPTORS = 10_000
_UNLIMITED = token_bucket_pb2.TokenBucket(max_tokens=2**31, tokens_per_fill=wrappers_pb2.UInt32Value(value=2**31),
                                          fill_interval=millis(1000))


def first_filters() -> list[hcm.HttpFilter]:
    """Before CORS: a denied or rate-limited request goes no further. Basic auth and API
    keys (after jwt_authn) authenticate before RBAC decides; their per-route configs carry
    the users and keys (the listener's are empty)."""
    return [
        # (Envoy requires users: one no password matches, a SHA-1 of all zeros; routes bring theirs)
        hcm.HttpFilter(name=BASIC_AUTH_FILTER, disabled=True, typed_config=pack(basic_auth_pb2.BasicAuth(
            users=base_pb2.DataSource(inline_string=NO_USER)))),
        hcm.HttpFilter(name=API_KEY_FILTER, typed_config=pack(api_key_auth_pb2.ApiKeyAuth()), disabled=True),
        hcm.HttpFilter(name=RBAC_FILTER, typed_config=pack(rbac_pb2.RBAC()), disabled=True),
        hcm.HttpFilter(name=RATE_LIMIT_FILTER, disabled=True, typed_config=pack(
            local_rate_limit_pb2.LocalRateLimit(stat_prefix="portico_rate_limit"))),
    ]


def last_filters() -> list[hcm.HttpFilter]:
    """Just before the router: the body is buffered only once a request is let through."""
    return [hcm.HttpFilter(name=BUFFER_FILTER, disabled=True, typed_config=pack(
        buffer_pb2.Buffer(max_request_bytes=wrappers_pb2.UInt32Value(value=1 << 20))))]


def per_route(action: ir.RouteAction, out: rc.Route) -> None:
    configs = out.typed_per_filter_config
    if action.oidc is not None:
        configs[OIDC_FILTER].CopyFrom(oidc_per_route(action.oidc))
    if action.jwt is not None:
        configs[JWT_FILTER].CopyFrom(jwt_per_route(action.jwt))
    if action.basic_auth is not None:
        configs[BASIC_AUTH_FILTER].CopyFrom(pack(rc.FilterConfig(config=pack(basic_auth(action.basic_auth)))))
    if action.api_key_auth is not None:
        configs[API_KEY_FILTER].CopyFrom(pack(rc.FilterConfig(config=pack(api_key_auth(action.api_key_auth)))))
    if action.authorization is not None:
        configs[RBAC_FILTER].CopyFrom(pack(rc.FilterConfig(config=pack(rbac_per_route(action.authorization)))))
    if action.rate_limits:
        configs[RATE_LIMIT_FILTER].CopyFrom(pack(rc.FilterConfig(config=pack(
            local_rate_limit(action.rate_limits, jwt=action.jwt)))))
    if action.request_body_limit is not None:
        buffer = buffer_pb2.BufferPerRoute(buffer=buffer_pb2.Buffer(
            max_request_bytes=wrappers_pb2.UInt32Value(value=action.request_body_limit)))
        configs[BUFFER_FILTER].CopyFrom(pack(rc.FilterConfig(config=pack(buffer))))


def basic_auth(b: ir.BasicAuth) -> basic_auth_pb2.BasicAuthPerRoute:
    # (Envoy's forward_username_header is a listener setting, not per route: Envoy
    # Gateway's forwardUsernameHeader is not offered)
    return basic_auth_pb2.BasicAuthPerRoute(users=base_pb2.DataSource(inline_string=b.htpasswd))


def api_key_auth(a: ir.APIKeyAuth) -> api_key_auth_pb2.ApiKeyAuthPerRoute:
    out = api_key_auth_pb2.ApiKeyAuthPerRoute(
        credentials=[api_key_auth_pb2.Credential(key=key, client=client) for client, key in a.credentials])
    out.key_sources.extend([api_key_auth_pb2.KeySource(header=h) for h in a.headers]
                           + [api_key_auth_pb2.KeySource(query=q) for q in a.params]
                           + [api_key_auth_pb2.KeySource(cookie=c) for c in a.cookies])
    if a.forward_client_header or a.hide_credentials:
        out.forwarding.CopyFrom(api_key_auth_pb2.Forwarding(header=a.forward_client_header,
                                                            hide_credentials=a.hide_credentials))
    return out


def rbac_per_route(auth: ir.ClientAuthorization) -> rbac_pb2.RBACPerRoute:
    """First matching rule decides, else the default action: as one ALLOW policy, rule i
    allows a request it matches that no earlier Deny rule matches."""
    principals = []
    denied: list[rbac_config.Principal] = []
    for rule in auth.rules:
        match = rule_principal(rule)
        if rule.allow:
            principals.append(_and([match, *(_not(d) for d in denied)]))
        else:
            denied.append(match)
    if auth.default_allow:
        principals.append(_and([_not(d) for d in denied]))
    policy = rbac_config.Policy(permissions=[rbac_config.Permission(any=True)], principals=principals
                                or [_not(rbac_config.Principal(any=True))])
    return rbac_pb2.RBACPerRoute(rbac=rbac_pb2.RBAC(rules=rbac_config.RBAC(
        action=rbac_config.RBAC.ALLOW, policies={"portico": policy})))


def rule_principal(rule: ir.AuthorizationRule) -> rbac_config.Principal:
    """What a request must be to match `rule`: every condition it has (any value of each)."""
    parts: list[rbac_config.Principal] = []
    if rule.cidrs:
        parts.append(_or([rbac_config.Principal(remote_ip=_cidr(c)) for c in rule.cidrs]))
    if rule.methods:
        parts.append(_or([_header(":method", m) for m in rule.methods]))
    if rule.paths:
        parts.append(_or([rbac_config.Principal(url_path=_path(p)) for p in rule.paths]))
    for name, values in rule.headers:
        parts.append(_or([_header(name, v) for v in values]) if values else
                     rbac_config.Principal(header=rc.HeaderMatcher(name=name, present_match=True)))
    if rule.client_certificate:
        parts.append(_client_certificate(rule.certificate_names))
    if rule.jwt_provider:
        parts.append(_claim(rule.jwt_provider, (), value_pb2.ValueMatcher(present_match=True)))
        for claim, values in rule.claims:
            parts.append(_claim(rule.jwt_provider, claim, _any_value(
                [string_pb2.StringMatcher(exact=v) for v in values])))
        for scope in rule.scopes:
            # "scope": a space-separated string (RFC 8693), or a list (as some issuers send it)
            parts.append(_claim(rule.jwt_provider, ("scope",), _any_value([string_pb2.StringMatcher(
                safe_regex=regex_pb2.RegexMatcher(regex=f"(?:^|.* ){re.escape(scope)}(?: .*|$)"))],
                [string_pb2.StringMatcher(exact=scope)])))
    return _and(parts)


def _client_certificate(names: tuple[tuple[str, str], ...]) -> rbac_config.Principal:
    """A certificate the listener verified (mtls_authenticated: `authenticated` alone matches
    any TLS connection, and an AllowInsecureFallback listener accepts unverified ones), whose
    principal name, if `names`, is one of them (`authenticated.principal_name`: the URI SANs,
    else the DNS SANs, else the subject)."""
    verified = rbac_config.Principal(custom=extension_pb2.TypedExtensionConfig(
        name=MTLS_AUTHENTICATED, typed_config=pack(mtls_authenticated_pb2.Config(
            any_validated_client_certificate=True))))
    if not names:
        return verified
    return _and([verified, _or([rbac_config.Principal(authenticated=rbac_config.Principal.Authenticated(
        principal_name=_string(kind, value))) for kind, value in names])])


def _string(kind: str, value: str) -> string_pb2.StringMatcher:
    if kind == "Prefix":
        return string_pb2.StringMatcher(prefix=value)
    if kind == "Suffix":
        return string_pb2.StringMatcher(suffix=value)
    if kind == "RegularExpression":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value))
    return string_pb2.StringMatcher(exact=value)


def _header(name: str, value: str) -> rbac_config.Principal:
    return rbac_config.Principal(header=rc.HeaderMatcher(name=name, string_match=string_pb2.StringMatcher(exact=value)))


def _path(path: str) -> path_pb2.PathMatcher:
    if path.endswith("/*"):
        return path_pb2.PathMatcher(path=string_pb2.StringMatcher(prefix=path[:-1]))
    if path.startswith("*"):
        return path_pb2.PathMatcher(path=string_pb2.StringMatcher(suffix=path[1:]))
    return path_pb2.PathMatcher(path=string_pb2.StringMatcher(exact=path))


def _claim(provider: str, claim: tuple[str, ...], value: value_pb2.ValueMatcher) -> rbac_config.Principal:
    path = [metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in (provider, *claim)]
    return rbac_config.Principal(metadata=metadata_pb2.MetadataMatcher(filter=JWT_METADATA, path=path, value=value))


def _any_value(strings: list[string_pb2.StringMatcher],
               items: list[string_pb2.StringMatcher] | None = None) -> value_pb2.ValueMatcher:
    """A claim that is one of `strings`, or a list holding one of `items` (default: the same)."""
    matchers = [value_pb2.ValueMatcher(string_match=m) for m in strings]
    matchers += [value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=value_pb2.ValueMatcher(string_match=m)))
                 for m in (strings if items is None else items)]
    return value_pb2.ValueMatcher(or_match=value_pb2.OrMatcher(value_matchers=matchers))


def _or(ids: list[rbac_config.Principal]) -> rbac_config.Principal:
    return ids[0] if len(ids) == 1 else rbac_config.Principal(or_ids=rbac_config.Principal.Set(ids=ids))


def _and(ids: list[rbac_config.Principal]) -> rbac_config.Principal:
    if not ids:
        return rbac_config.Principal(any=True)
    return ids[0] if len(ids) == 1 else rbac_config.Principal(and_ids=rbac_config.Principal.Set(ids=ids))


def _not(p: rbac_config.Principal) -> rbac_config.Principal:
    return rbac_config.Principal(not_id=p)


def _cidr(cidr: str) -> address_pb2.CidrRange:
    net = ipaddress.ip_network(cidr, strict=False)
    return address_pb2.CidrRange(address_prefix=str(net.network_address),
                                 prefix_len=wrappers_pb2.UInt32Value(value=net.prefixlen))


def local_rate_limit(limits: tuple[ir.RateLimit, ...], stat_prefix: str = "portico_rate_limit",
                     jwt: ir.JWTAuthentication | None = None) -> local_rate_limit_pb2.LocalRateLimit:
    """A descriptor per rule (`rule=<i>`, plus the client's address / header values as
    dynamic entries: a bucket each); requests no rule counts take the unlimited default."""
    out = local_rate_limit_pb2.LocalRateLimit(
        stat_prefix=stat_prefix, token_bucket=_UNLIMITED,
        filter_enabled=_all(), filter_enforced=_all(),
        always_consume_default_token_bucket=wrappers_pb2.BoolValue(value=False),
        enable_x_ratelimit_headers=ratelimit_pb2.DRAFT_VERSION_03,
        max_dynamic_descriptors=wrappers_pb2.UInt32Value(value=MAX_DYNAMIC_DESCRIPTORS))
    # one policy's limits: one status; Envoy takes the codes its HttpStatus names (else 429)
    if limits and limits[0].status != 429 and limits[0].status in http_status_pb2.StatusCode.values():
        out.status.code = limits[0].status
    for i, limit in enumerate(limits):
        actions = [rc.RateLimit.Action(generic_key=rc.RateLimit.Action.GenericKey(
            descriptor_key="rule", descriptor_value=str(i)))]
        entries = [ratelimit_pb2.RateLimitDescriptor.Entry(key="rule", value=str(i))]
        if limit.source_ip:
            actions.append(rc.RateLimit.Action(remote_address=rc.RateLimit.Action.RemoteAddress()))
            entries.append(ratelimit_pb2.RateLimitDescriptor.Entry(key="remote_address"))
        for header in limit.headers:
            actions.append(rc.RateLimit.Action(request_headers=rc.RateLimit.Action.RequestHeaders(
                header_name=header, descriptor_key=f"header-{header}")))
            entries.append(ratelimit_pb2.RateLimitDescriptor.Entry(key=f"header-{header}"))
        for claim in limit.claims:
            actions += _claim_actions(claim, jwt)
            entries.append(ratelimit_pb2.RateLimitDescriptor.Entry(key=f"claim-{claim}"))
        out.rate_limits.append(rc.RateLimit(actions=actions))
        out.descriptors.append(ratelimit_pb2.LocalRateLimitDescriptor(entries=entries, token_bucket=(
            token_bucket_pb2.TokenBucket(max_tokens=limit.burst,
                                         tokens_per_fill=wrappers_pb2.UInt32Value(value=limit.requests),
                                         fill_interval=millis(limit.fill_interval_s * 1000)))))
    return out


def _claim_actions(claim: str, jwt: ir.JWTAuthentication | None) -> list[rc.RateLimit.Action]:
    """The descriptor entry of a claim of the verified token (jwt_authn's payload in the
    request's metadata). One provider: callers without a token share the bucket "-".
    Several: the entry of the provider that verified the token (the others are skipped),
    so a request without a token is not counted by this rule. No JWT on the route: one bucket."""
    key = f"claim-{claim}"
    providers = jwt.providers if jwt is not None else ()
    if not providers:
        return [rc.RateLimit.Action(generic_key=rc.RateLimit.Action.GenericKey(descriptor_key=key,
                                                                                descriptor_value="-"))]
    out = []
    for p in providers:
        path = [metadata_key_pb2.MetadataKey.PathSegment(key=k) for k in (p.name, *claim.split("."))]
        out.append(rc.RateLimit.Action(metadata=rc.RateLimit.Action.MetaData(
            descriptor_key=key, metadata_key=metadata_key_pb2.MetadataKey(key=JWT_METADATA, path=path),
            source=rc.RateLimit.Action.MetaData.DYNAMIC,
            **({"default_value": "-"} if len(providers) == 1 else {"skip_if_absent": True}))))
    return out


def _all() -> base_pb2.RuntimeFractionalPercent:
    return base_pb2.RuntimeFractionalPercent(default_value=percent_pb2.FractionalPercent(numerator=100))


def hash_policies(policies: tuple[ir.HashPolicy, ...]) -> list[rc.RouteAction.HashPolicy]:
    out = []
    for p in policies:
        if p.type == "Header":
            out.append(rc.RouteAction.HashPolicy(header=rc.RouteAction.HashPolicy.Header(header_name=p.name)))
        elif p.type == "Cookie":
            cookie = rc.RouteAction.HashPolicy.Cookie(name=p.name, path=p.path)
            if p.ttl_s is not None:
                cookie.ttl.CopyFrom(millis(p.ttl_s * 1000))
            out.append(rc.RouteAction.HashPolicy(cookie=cookie))
        elif p.type == "QueryParameter":
            out.append(rc.RouteAction.HashPolicy(
                query_parameter=rc.RouteAction.HashPolicy.QueryParameter(name=p.name)))
        else:
            out.append(rc.RouteAction.HashPolicy(
                connection_properties=rc.RouteAction.HashPolicy.ConnectionProperties(source_ip=True)))
    return out
