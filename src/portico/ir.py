"""The intermediate representation: what the data plane must do, nothing of how.

The translator produces an `IR`; the xds package turns it into Envoy resources.
Every type is a frozen dataclass of tuples, so two IRs compare with `==` and a
change can be diffed per listener, per route configuration and per cluster
(the unit of incremental pushes).

Naming: an `IR.listeners` entry is one socket (address, port, transport); a
Gateway listener (spec) becomes one `FilterChain` inside it, because several
Gateway listeners share a port and are told apart by SNI or Host.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

# ---------------------------------------------------------------- clusters

AppProtocol = Literal["http1", "h2c", "h2", "ws", "tcp", "udp"]


UNIX_PREFIX = "unix:"


@dataclass(frozen=True)
class Endpoint:
    address: str  # an IP, a DNS name when Cluster.dns is true, or "unix:<path>" (port 0)
    port: int
    weight: int = 1  # load-balancing weight among the cluster's endpoints (>= 1)


@dataclass(frozen=True)
class UpstreamTLS:
    """TLS origination towards a backend (BackendTLSPolicy, Gateway spec.tls.backend)."""

    sni: str
    # PEM bundle of trusted CAs; empty with system_ca=True uses the system store.
    ca_pem: str = ""
    system_ca: bool = False
    # Names the backend certificate must present (SAN); defaults to sni when empty.
    subject_alt_names: tuple[SubjectAltName, ...] = ()
    # Client certificate presented to the backend (Gateway spec.tls.backend.clientCertificateRef).
    client_cert_secret: str | None = None
    alpn: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubjectAltName:
    type: Literal["Hostname", "URI"]
    value: str


LBPolicy = Literal["round_robin", "least_request", "random", "ring_hash", "maglev"]


@dataclass(frozen=True)
class HealthCheck:
    """Active health checking of a cluster's endpoints (BackendTrafficPolicy healthCheck.active)."""

    type: Literal["HTTP", "TCP", "GRPC"]
    interval_ms: int = 3000
    timeout_ms: int = 1000
    unhealthy_threshold: int = 3
    healthy_threshold: int = 1
    path: str = "/"  # HTTP
    method: str = "GET"  # HTTP
    expected_statuses: tuple[int, ...] = (200,)  # HTTP
    grpc_service: str = ""  # GRPC


@dataclass(frozen=True)
class OutlierDetection:
    """Passive health checking: endpoints that fail real requests are ejected for a while."""

    consecutive_5xx: int = 5
    consecutive_gateway_errors: int = 0  # 0: not enforced
    consecutive_local_origin_failures: int = 5  # counted apart only with split_local_origin
    split_local_origin: bool = False
    interval_ms: int = 3000
    base_ejection_ms: int = 30_000
    max_ejection_percent: int = 10


# Envoy's default circuit breakers (1024 connections/requests) throttle a busy gateway;
# Portico raises them so the proxy, not the breaker, is the limit.
BREAKER_LIMIT = 100_000


@dataclass(frozen=True)
class CircuitBreaker:
    max_connections: int = BREAKER_LIMIT
    max_pending_requests: int = BREAKER_LIMIT
    max_requests: int = BREAKER_LIMIT
    max_retries: int | None = None  # None: Envoy's default (3)
    retry_budget_percent: int | None = None  # retries at most this % of active requests
    min_retry_concurrency: int | None = None


@dataclass(frozen=True)
class TCPKeepalive:
    probes: int | None = None
    idle_s: int | None = None
    interval_s: int | None = None


@dataclass(frozen=True)
class Cluster:
    """One per Service port (shared by every route that uses it), see ARCHITECTURE."""

    name: str  # e.g. "httproute/ns/svc/8080" — stable, unique
    endpoints: tuple[Endpoint, ...]
    protocol: AppProtocol = "http1"
    dns: bool = False  # ExternalName: resolve endpoints by DNS (STRICT_DNS)
    tls: UpstreamTLS | None = None
    lb_policy: LBPolicy = "round_robin"
    connect_timeout_ms: int = 10_000
    # BackendTrafficPolicy (translator.policies.backendtraffic)
    slow_start_ms: int | None = None
    health_check: HealthCheck | None = None
    outlier_detection: OutlierDetection | None = None
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    tcp_keepalive: TCPKeepalive | None = None
    proxy_protocol: Literal["V1", "V2"] | None = None
    # BackendTrafficPolicy fallback: the Service ("ns/name/port") whose endpoints are the
    # cluster's priority 1, reached only while priority 0 (`endpoints`) has no healthy one
    fallback: str | None = None
    fallback_endpoints: tuple[Endpoint, ...] = ()


# ---------------------------------------------------------------- HTTP routes

StringMatchType = Literal["Exact", "RegularExpression", "Prefix"]


@dataclass(frozen=True)
class HeaderMatch:
    name: str  # lower case; ":authority"/":method" style pseudo-headers allowed
    value: str
    type: StringMatchType = "Exact"
    invert: bool = False


@dataclass(frozen=True)
class QueryParamMatch:
    name: str
    value: str
    type: StringMatchType = "Exact"


@dataclass(frozen=True)
class PathMatch:
    # Prefix is segment-aware (Gateway API PathPrefix): "/v2" matches "/v2", "/v2/x", not "/v2x".
    type: Literal["Exact", "Prefix", "RegularExpression"]
    value: str


@dataclass(frozen=True)
class RouteMatch:
    path: PathMatch = PathMatch("Prefix", "/")
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    method: str | None = None
    grpc: bool = False  # only requests with content-type application/grpc*
    # only requests whose per-request random value modulo 1e6 is below this (one backend
    # share of a rule whose backendRefs carry their own redirect or rewrite)
    fraction_per_million: int | None = None


@dataclass(frozen=True)
class HeaderValue:
    name: str
    value: str


@dataclass(frozen=True)
class HeaderModifier:
    """RequestHeaderModifier / ResponseHeaderModifier (set replaces, add appends)."""

    set: tuple[HeaderValue, ...] = ()
    add: tuple[HeaderValue, ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


@dataclass(frozen=True)
class Redirect:
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None  # None: keep (or drop when the scheme's default); see translator
    strip_port: bool = False
    path_full: str | None = None  # ReplaceFullPath
    path_prefix: str | None = None  # ReplacePrefixMatch (with the matched prefix)
    status_code: int = 302


@dataclass(frozen=True)
class URLRewrite:
    hostname: str | None = None
    path_full: str | None = None
    path_prefix: str | None = None  # ReplacePrefixMatch
    regex: tuple[str, str] | None = None  # (RE2 pattern, substitution with \\1 groups): HTTPRouteFilter


@dataclass(frozen=True)
class Mirror:
    cluster: str
    # fraction of requests mirrored, as numerator/denominator (percent p -> p/100)
    numerator: int = 100
    denominator: int = 100


@dataclass(frozen=True)
class Retry:
    attempts: int
    codes: tuple[int, ...] = ()
    backoff_ms: int | None = None
    on_connect_failure: bool = True
    # BackendTrafficPolicy retry: Envoy retry_on conditions instead of the codes-derived ones
    triggers: tuple[str, ...] = ()
    max_backoff_ms: int | None = None
    per_try_timeout_ms: int | None = None


@dataclass(frozen=True)
class CORS:
    allow_origins: tuple[str, ...] = ()  # exact or "*" wildcards as in the spec
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age_s: int | None = None


@dataclass(frozen=True)
class ExternalAuth:
    """HTTPRoute ExternalAuth: ask an authorization service before forwarding
    (Envoy ext_authz protocol over gRPC, or plain HTTP where 200 allows)."""

    protocol: Literal["GRPC", "HTTP"]
    cluster: str
    path_prefix: str = ""  # HTTP: prepended to the request path sent to the service
    # GRPC: the client headers sent (all when empty); HTTP: sent besides Host, Method,
    # Path, Content-Length and Authorization
    allowed_headers: tuple[str, ...] = ()
    # HTTP: service answer headers copied into the forwarded request (all but Host when empty)
    allowed_response_headers: tuple[str, ...] = ()
    forward_body_bytes: int = 0  # request body bytes sent along (truncated); 0: none
    # HTTP, no allowed_response_headers: copy every answer header (the filter's rule) or none
    # (SecurityPolicy extAuth headersToBackend, Envoy Gateway's)
    copy_all_response_headers: bool = True
    fail_open: bool = False  # the service unreachable or failing: let the request through
    policy: str = ""  # "<namespace>/<name>" of the SecurityPolicy (extAuth), "" for the filter


@dataclass(frozen=True)
class ErrorPages:
    """Answers of `codes` replaced (Portico HTTPRouteFilter errorPages): by a GET of `/` to
    `cluster` (its answer returned as it is) with `headers` set besides ingress-nginx's
    X-Code, X-Format, X-Original-URI and X-Request-ID; without a cluster, by `status` and
    `body`. `key` names the rule's error page route in the virtual host."""

    codes: tuple[int, ...]
    key: str
    cluster: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    status: int = 404
    body: str = ""


@dataclass(frozen=True)
class ClientCertificateCheck:
    """A route's requests need a client certificate the listener's validation found valid
    (`optional`: or none at all); others get 400, or a 302 to `redirect` (Portico
    HTTPRouteFilter requireClientCertificate)."""

    optional: bool = False
    redirect: str | None = None


@dataclass(frozen=True)
class WeightedBackend:
    """One backendRef's share of a rule. cluster None: the ref is invalid and its
    share answers 500 (HTTPRoute spec, BackendRef 'If a backendRef is invalid')."""

    cluster: str | None
    weight: int
    request_headers: HeaderModifier = HeaderModifier()
    response_headers: HeaderModifier = HeaderModifier()


@dataclass(frozen=True)
class SessionPersistence:
    type: Literal["Cookie", "Header"]
    name: str
    ttl_s: int | None = None  # Cookie: Max-Age; None for a session cookie
    path: str = "/"  # Cookie: the Path attribute


@dataclass(frozen=True)
class HashPolicy:
    """What a consistent hash (RingHash, Maglev) is computed from (BackendTrafficPolicy)."""

    type: Literal["Header", "Cookie", "QueryParameter", "SourceIP"]
    name: str = ""
    ttl_s: int | None = None  # Cookie: generated with this lifetime when absent
    path: str = "/"


@dataclass(frozen=True)
class AuthorizationRule:
    """One SecurityPolicy authorization rule: it matches a request meeting every condition
    it has (within one condition, any of its values); no condition: every request."""

    allow: bool
    name: str = ""
    cidrs: tuple[str, ...] = ()  # the client address
    methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()  # exact, "/prefix/*" or "*suffix"
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, values: any; none: present)
    # JWT (the payload jwt_authn verified): (claim path, values: any of); scopes: all of
    claims: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()
    scopes: tuple[str, ...] = ()
    jwt_provider: str = ""  # a JWT condition: a token this provider (JWTProvider.name) verified
    # a client-certificate condition: a verified one; if names, its principal name (URI SAN,
    # else DNS SAN, else subject) is one of them: (Exact | Prefix | Suffix | RegularExpression, value)
    client_certificate: bool = False
    certificate_names: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ClientAuthorization:
    """SecurityPolicy authorization: the first rule matching a request decides, else the
    default action."""

    default_allow: bool
    rules: tuple[AuthorizationRule, ...]
    policy: str = ""  # "<namespace>/<name>" of the SecurityPolicy (`portico explain`)


@dataclass(frozen=True)
class JWTProvider:
    """A JWT issuer whose tokens jwt_authn verifies (SecurityPolicy jwt.providers)."""

    name: str  # unique in the data plane: "<namespace>/<policy>/<provider>"
    issuer: str = ""
    audiences: tuple[str, ...] = ()
    jwks_uri: str = ""  # remote JWKS: fetched by Envoy through `jwks_cluster`
    jwks_cluster: str = ""
    jwks_cache_s: int = 300
    local_jwks: str = ""  # inline JWKS (public keys)
    claim_to_headers: tuple[tuple[str, str], ...] = ()  # (header, claim)
    # where the token is: (header, value prefix); cookies; query parameters (none: Authorization Bearer)
    from_headers: tuple[tuple[str, str], ...] = ()
    from_cookies: tuple[str, ...] = ()
    from_params: tuple[str, ...] = ()
    forward: bool = False  # keep the token in the forwarded request
    clock_skew_s: int | None = None


@dataclass(frozen=True)
class BasicAuth:
    """SecurityPolicy basicAuth: users of an htpasswd file ("{SHA}" hashes; secret)."""

    htpasswd: str
    policy: str = ""


@dataclass(frozen=True)
class APIKeyAuth:
    """SecurityPolicy apiKeyAuth: the keys of its clients (secret) and where a key is read."""

    credentials: tuple[tuple[str, str], ...]  # (client, key)
    headers: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    cookies: tuple[str, ...] = ()
    forward_client_header: str = ""
    hide_credentials: bool = False
    policy: str = ""


@dataclass(frozen=True)
class OIDC:
    """SecurityPolicy oidc: browser login by Envoy's oauth2 filter (authorization code
    flow with PKCE). The client and HMAC secrets go to Envoy over SDS only, named by
    `secret_names`; the token endpoint is reached through `token_cluster`."""

    name: str  # "<namespace>/<policy>": unique in the data plane
    client_id: str
    client_secret: str  # secret
    hmac_secret: str  # secret: signs (and encrypts) the session cookies
    authorization_endpoint: str
    token_endpoint: str
    token_cluster: str
    end_session_endpoint: str = ""
    scopes: tuple[str, ...] = ("openid",)
    resources: tuple[str, ...] = ()
    redirect_uri: str = ""  # an Envoy format string
    redirect_path: str = "/oauth2/callback"  # the callback Envoy answers (the path of redirect_uri)
    logout_path: str = "/logout"
    forward_access_token: bool = False
    default_token_ttl_s: int | None = None
    refresh_token: bool = True
    # cookie names: (access token, ID token); the rest take a suffix of the policy's own
    access_token_cookie: str = ""
    id_token_cookie: str = ""
    cookie_suffix: str = ""
    cookie_domain: str = ""

    def secret_names(self) -> tuple[str, str]:
        """SDS names of the client secret and the HMAC secret."""
        return f"oidc/{self.name}/client-secret", f"oidc/{self.name}/hmac"


@dataclass(frozen=True)
class JWTAuthentication:
    """A route's JWT requirement: a token of one of `providers`; when `optional`, a request
    without any token passes (an invalid one is still refused, 401)."""

    providers: tuple[JWTProvider, ...]
    optional: bool = False


@dataclass(frozen=True)
class RateLimit:
    """One local rate-limit budget (RateLimitPolicy rule); a bucket per distinct client
    key when `source_ip` or `headers` tell clients apart, one for all otherwise."""

    requests: int
    fill_interval_s: int
    burst: int
    source_ip: bool = False
    headers: tuple[str, ...] = ()
    # claims of the route's verified JWT (SecurityPolicy jwt): a bucket per caller
    claims: tuple[str, ...] = ()
    status: int = 429  # the answer over the budget (RateLimitPolicy local.responseStatusCode)


@dataclass(frozen=True)
class RouteAction:
    backends: tuple[WeightedBackend, ...] = ()
    # direct answer (e.g. 500 when no backend is usable); wins over backends
    direct_status: int | None = None
    redirect: Redirect | None = None
    rewrite: URLRewrite | None = None
    request_headers: HeaderModifier = HeaderModifier()
    response_headers: HeaderModifier = HeaderModifier()
    mirrors: tuple[Mirror, ...] = ()
    timeout_ms: int | None = None  # HTTPRoute timeouts.request (0 = none)
    backend_timeout_ms: int | None = None  # timeouts.backendRequest (per try)
    retry: Retry | None = None
    cors: CORS | None = None
    external_auth: ExternalAuth | None = None
    # a 401 of the route's ExternalAuth becomes a 302 to this Location (an Envoy format
    # string): Portico HTTPRouteFilter authSignin
    signin: str | None = None
    # answers of listed codes replaced by an error page (Portico HTTPRouteFilter errorPages)
    error_pages: ErrorPages | None = None
    client_cert_check: ClientCertificateCheck | None = None
    # (header, Certificate | Subject | Issuer): the client certificate's, set on the request
    # (Portico HTTPRouteFilter clientCertificateHeaders)
    client_cert_headers: tuple[tuple[str, str], ...] = ()
    session_persistence: SessionPersistence | None = None
    websocket: bool = False  # allow Upgrade: websocket on this route
    # Portico policies (translator.policies)
    hash_policies: tuple[HashPolicy, ...] = ()
    idle_timeout_ms: int | None = None
    request_body_limit: int | None = None  # bytes; larger bodies answered 413
    authorization: ClientAuthorization | None = None
    jwt: JWTAuthentication | None = None
    basic_auth: BasicAuth | None = None
    api_key_auth: APIKeyAuth | None = None
    oidc: OIDC | None = None
    # SecurityPolicy extAuth: checked besides (before) the route's own ExternalAuth filter
    policy_external_auth: ExternalAuth | None = None
    rate_limits: tuple[RateLimit, ...] = ()
    # the answer for the share of requests of invalid backends: 500 (HTTPRoute), or
    # 503 for GRPCRoute, which gRPC clients see as UNAVAILABLE
    invalid_backend_status: int = 500


@dataclass(frozen=True)
class Route:
    name: str  # "<kind>/<ns>/<name>/rule/<i>/match/<j>" — for logs and stats
    match: RouteMatch
    action: RouteAction


@dataclass(frozen=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]  # "*" for any
    routes: tuple[Route, ...]  # in match order: first match wins (precedence applied)


# ---------------------------------------------------------------- listeners

@dataclass(frozen=True)
class TLSCertificate:
    name: str  # secret name for SDS, e.g. "ns/secret"
    cert_pem: str
    key_pem: str


@dataclass(frozen=True)
class ClientValidation:
    """Frontend client-certificate validation (Gateway spec.tls.frontend)."""

    ca_pem: str
    optional: bool = False  # AllowInsecureFallback: accept clients without a valid cert


TLSVersion = Literal["1.0", "1.1", "1.2", "1.3"]


@dataclass(frozen=True)
class DownstreamTLS:
    certificates: tuple[TLSCertificate, ...]
    client_validation: ClientValidation | None = None
    alpn: tuple[str, ...] = ("h2", "http/1.1")
    # ClientTrafficPolicy tls (None / empty: Envoy's defaults, TLS 1.2 to 1.3)
    min_version: TLSVersion | None = None
    max_version: TLSVersion | None = None
    ciphers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClientSettings:
    """ClientTrafficPolicy settings of one HTTP connection manager (filter chain)."""

    xff_trusted_hops: int = 0  # X-Forwarded-For addresses from proxies trusted to set them
    client_ip_header: str | None = None  # the client address is this header's value
    client_ip_header_fail_closed: bool = False  # no valid header: 403
    http2_max_concurrent_streams: int | None = None
    http2_initial_stream_window: int | None = None
    http2_initial_connection_window: int | None = None
    max_request_headers_kb: int | None = None
    max_headers_count: int | None = None
    escaped_slashes: Literal["KeepUnchanged", "RejectRequest", "UnescapeAndRedirect",
                             "UnescapeAndForward"] | None = None
    merge_slashes: bool | None = None
    idle_timeout_ms: int | None = None  # connection without requests closed
    request_timeout_ms: int | None = None  # the whole request must be received within it
    access_log_format: str | None = None  # Envoy command operators, to stdout
    access_log_json: tuple[tuple[str, str], ...] = ()
    # RateLimitPolicy on the Gateway or listener: budgets shared by all its routes
    rate_limits: tuple[RateLimit, ...] = ()
    http3: bool = False  # HTTPS: also served over QUIC (a UDP listener on the port), advertised by Alt-Svc


@dataclass(frozen=True)
class HTTPConfig:
    route_config_name: str
    virtual_hosts: tuple[VirtualHost, ...]
    # HTTPS: answer 421 when Host does not belong to the SNI-selected listener.
    misdirected_421: bool = False
    alt_svc: str | None = None  # an Alt-Svc answer header (HTTP/3 advertised)


@dataclass(frozen=True)
class TCPConfig:
    backends: tuple[WeightedBackend, ...]  # cluster None entries: connection refused/closed


@dataclass(frozen=True)
class FilterChain:
    """One Gateway listener (or one TLSRoute hostname set) on a socket."""

    name: str  # "<ns>/<gateway>/<listener>[/...]"
    server_names: tuple[str, ...] = ()  # SNI match; empty = any
    tls: DownstreamTLS | None = None  # terminate TLS; None with server_names = passthrough
    http: HTTPConfig | None = None
    tcp: TCPConfig | None = None
    client: ClientSettings = ClientSettings()
    connection_limit: int | None = None  # ClientTrafficPolicy: more connections are closed


@dataclass(frozen=True)
class Listener:
    name: str  # "<address>:<port>/<transport>"
    address: str
    port: int
    transport: Literal["tcp", "udp"] = "tcp"
    filter_chains: tuple[FilterChain, ...] = ()
    # UDP listeners: backends of the single UDPRoute served here
    udp_backends: tuple[WeightedBackend, ...] = ()
    # ClientTrafficPolicy proxyProtocol: connections start with a PROXY header ("optional":
    # or not), whose source address is the client's
    proxy_protocol: Literal["required", "optional"] | None = None
    quic: bool = False  # transport "udp": HTTP/3 over QUIC, its chains those of the port's HTTPS listener


@dataclass(frozen=True)
class IR:
    listeners: tuple[Listener, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    # (kind, namespace, name) of a Gateway or ListenerSet -> what Envoy must hold for it to be
    # Programmed (its ready listeners), to tell which ACK programs which object.
    gateway_listeners: tuple[tuple[tuple[str, str, str], tuple[str, ...]], ...] = field(default=())
    # Certificates referenced by name outside a DownstreamTLS (UpstreamTLS.client_cert_secret),
    # served to Envoy over SDS like the listener certificates.
    secrets: tuple[TLSCertificate, ...] = ()


# ---------------------------------------------------------------- infrastructure

@dataclass(frozen=True)
class ParametersRef:
    """A reference to parameters for the infrastructure (GatewayClass or Gateway parametersRef)."""

    group: str
    kind: str
    namespace: str  # "" for a cluster-scoped object
    name: str


@dataclass(frozen=True)
class InfraListener:
    """A listener the Gateway's data plane serves: what a Service port / container port needs."""

    name: str  # the listener's name; ListenerSet listeners: "<namespace>/<listenerset>/<name>"
    port: int  # as declared
    bind_port: int  # what Envoy binds
    protocol: str  # HTTP, HTTPS, TLS, TCP, UDP; HTTP3: an HTTPS port's QUIC (UDP) twin


@dataclass(frozen=True)
class GatewayInfra:
    """The infrastructure description of one Gateway (Envoy Gateway's InfraIR): what a
    mode's infrastructure creates to run its data plane, independent of the routes."""

    namespace: str
    name: str
    gateway_class: str
    listeners: tuple[InfraListener, ...] = ()
    # spec.addresses as (type, value)
    requested_addresses: tuple[tuple[str, str], ...] = ()
    class_parameters: ParametersRef | None = None  # GatewayClass spec.parametersRef
    parameters: ParametersRef | None = None  # Gateway spec.infrastructure.parametersRef
    # spec.infrastructure labels and annotations, for every generated resource
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------- per-Gateway IRs


def clusters_used(listeners: tuple[Listener, ...]) -> set[str]:
    """Names of the clusters the listeners' routes, mirrors, authorization services
    and TCP/UDP backends send to."""
    out: set[str] = set()
    for li in listeners:
        out.update(backend_clusters(li.udp_backends))
        for chain in li.filter_chains:
            if chain.tcp is not None:
                out.update(backend_clusters(chain.tcp.backends))
            if chain.http is None:
                continue
            for vh in chain.http.virtual_hosts:
                for route in vh.routes:
                    out.update(route_clusters(route))
    return out


def backend_clusters(items: tuple[WeightedBackend, ...]) -> list[str]:
    return [b.cluster for b in items if b.cluster is not None]


def route_clusters(route: Route) -> list[str]:
    """The clusters one route sends to: its backends, mirrors, authorization service and
    error pages."""
    action = route.action
    out = backend_clusters(action.backends) + [m.cluster for m in action.mirrors]
    if action.external_auth is not None:
        out.append(action.external_auth.cluster)
    if action.error_pages is not None and action.error_pages.cluster is not None:
        out.append(action.error_pages.cluster)
    if action.policy_external_auth is not None:
        out.append(action.policy_external_auth.cluster)
    if action.jwt is not None:
        out += [p.jwks_cluster for p in action.jwt.providers if p.jwks_cluster]
    if action.oidc is not None:
        out.append(action.oidc.token_cluster)
    return out


def scoped(listeners: tuple[Listener, ...], clusters: dict[str, Cluster], secrets: tuple[TLSCertificate, ...],
           gateway_listeners: tuple[tuple[tuple[str, str, str], tuple[str, ...]], ...]) -> IR:
    """The IR of one data plane: `listeners` with only the clusters and secrets they use
    (an Envoy never receives another Gateway's backends or keys)."""
    used = clusters_used(listeners)
    own = tuple(clusters[name] for name in sorted(used) if name in clusters)
    referenced = {c.tls.client_cert_secret for c in own if c.tls is not None}
    return IR(listeners, own, gateway_listeners, tuple(s for s in secrets if s.name in referenced))


def merge(irs: Iterable[IR]) -> IR:
    """Several data planes' IRs as one (standalone mode serves every Gateway from one Envoy)."""
    irs = list(irs)
    if len(irs) == 1 and irs[0].secrets == tuple(sorted(irs[0].secrets, key=lambda s: s.name)):
        return irs[0]  # already one (`scoped` sorts its clusters): kept as is, comparing it stays cheap
    listeners: list[Listener] = []
    clusters: dict[str, Cluster] = {}
    owners: list[tuple[tuple[str, str, str], tuple[str, ...]]] = []
    secrets: dict[str, TLSCertificate] = {}
    for one in irs:
        listeners += one.listeners
        clusters.update((c.name, c) for c in one.clusters)
        owners += one.gateway_listeners
        secrets.update((s.name, s) for s in one.secrets)
    return IR(tuple(listeners), tuple(clusters[n] for n in sorted(clusters)), tuple(owners),
              tuple(secrets[n] for n in sorted(secrets)))
