"""Typed views of the Kubernetes and Gateway API objects Portico reads.

Field names follow the API (camelCase on the wire, snake_case here). Every model
keeps unknown fields (`extra="allow"`), so an object round-trips unchanged and a
newer API version's fields are not silently dropped.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from portico.kinds import KINDS
from portico.objects import CLUSTER_SCOPED, GATEWAY_GROUP, ObjectKey, group_of
from portico.objects import PORTICO_GROUP as PORTICO_GROUP  # where models' readers have found it


class Model(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        frozen=False,
    )

    def model_post_init(self, context: Any, /) -> None:
        # The names of the fields a document set (what `dump` writes back) as one shared
        # set per distinct set: a set per model instance was 216 bytes, 40 % of an
        # HTTPRoute's models (issue 30 item 6). Models are views, replaced and never edited
        # (assigning a field fails here: the shared set refuses to change).
        given = frozenset(self.__pydantic_fields_set__)
        shared = _FIELDS_SETS.get(given)
        if shared is None:
            shared = _FIELDS_SETS[given] = _SharedFieldsSet(given)
        object.__setattr__(self, "__pydantic_fields_set__", shared)
        # No unknown fields (almost always): no empty dict of them either (64 bytes per
        # instance, 85,000 instances at 5000 routes); pydantic reads None as "none".
        if not self.__pydantic_extra__:
            object.__setattr__(self, "__pydantic_extra__", None)


class _SharedFieldsSet(set[str]):
    """A set of field names shared by every model instance that set the same fields: a
    `set` (pydantic's serializer requires one), which refuses to change."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("models are read-only views: build a new one instead of assigning to a field")

    add = discard = remove = pop = clear = update = _refuse  # type: ignore[assignment]
    difference_update = intersection_update = symmetric_difference_update = _refuse
    __ior__ = __iand__ = __isub__ = __ixor__ = _refuse  # type: ignore[assignment]

    def __copy__(self) -> set[str]:
        return set(self)  # a copy (`model_copy`) is the copy's own, to edit

    def __deepcopy__(self, memo: dict[int, Any]) -> set[str]:
        return set(self)


_FIELDS_SETS: dict[frozenset[str], _SharedFieldsSet] = {}


# ------------------------------------------------------------------ metadata


class ObjectMeta(Model):
    name: str
    namespace: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int = 1
    creation_timestamp: str = ""
    uid: str = ""
    resource_version: str = ""


class Condition(Model):
    type: str
    status: str
    reason: str = ""
    message: str = ""
    observed_generation: int | None = None
    last_transition_time: str = ""


class Resource(Model):
    api_version: str
    kind: str
    metadata: ObjectMeta
    # the original document: models are views; status is owned by the store
    status: dict[str, Any] | None = None

    # Cached: identity never changes after parsing (objects are replaced, not edited), and
    # the translator asks for it thousands of times per translation.
    @functools.cached_property
    def key(self) -> ObjectKey:
        """`key_of` the object, without building its document."""
        return ObjectKey(group_of(self.api_version), self.kind, self.namespace, self.metadata.name)

    @functools.cached_property
    def namespace(self) -> str:
        """As in `key_of`: "" for cluster-scoped kinds, "default" when unset."""
        return "" if self.kind in CLUSTER_SCOPED else (self.metadata.namespace or "default")

    @property
    def name(self) -> str:
        return self.metadata.name


# ------------------------------------------------------------------ references


class LocalObjectReference(Model):
    group: str = ""
    kind: str
    name: str


class SecretObjectReference(Model):
    group: str = ""
    kind: str = "Secret"
    name: str
    namespace: str | None = None


class ParentReference(Model):
    group: str = GATEWAY_GROUP
    kind: str = "Gateway"
    namespace: str | None = None
    name: str
    section_name: str | None = None
    port: int | None = None


class BackendObjectReference(Model):
    group: str = ""
    kind: str = "Service"
    name: str
    namespace: str | None = None
    port: int | None = None


# ------------------------------------------------------------------ GatewayClass


class GatewayClassSpec(Model):
    controller_name: str
    parameters_ref: dict[str, Any] | None = None
    description: str | None = None


class GatewayClass(Resource):
    spec: GatewayClassSpec


# ------------------------------------------------------------------ Gateway


class LabelSelectorRequirement(Model):
    key: str
    operator: str
    values: list[str] = Field(default_factory=list)


class LabelSelector(Model):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class RouteNamespaces(Model):
    from_: str = Field(default="Same", validation_alias="from", serialization_alias="from")
    selector: LabelSelector | None = None


class RouteGroupKind(Model):
    group: str = GATEWAY_GROUP
    kind: str


class AllowedRoutes(Model):
    namespaces: RouteNamespaces = Field(default_factory=RouteNamespaces)
    kinds: list[RouteGroupKind] | None = None


class GatewayTLSConfig(Model):
    mode: str = "Terminate"
    certificate_refs: list[SecretObjectReference] = Field(default_factory=list)
    options: dict[str, str] = Field(default_factory=dict)
    frontend_validation: dict[str, Any] | None = None


class Listener(Model):
    name: str
    hostname: str | None = None
    port: int
    protocol: str
    tls: GatewayTLSConfig | None = None
    allowed_routes: AllowedRoutes = Field(default_factory=AllowedRoutes)


class GatewayAddress(Model):
    type: str = "IPAddress"
    # GatewaySpecAddress.value: "When a value is unspecified, an implementation
    # SHOULD automatically assign an address matching the requested type".
    value: str = ""


class GatewayInfrastructure(Model):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    parameters_ref: LocalObjectReference | None = None


class ObjectReference(Model):
    group: str = ""
    kind: str
    name: str
    namespace: str | None = None


class FrontendTLSValidation(Model):
    ca_certificate_refs: list[ObjectReference] = Field(default_factory=list)
    mode: str = "AllowValidOnly"


class TLSConfig(Model):
    validation: FrontendTLSValidation | None = None


class TLSPortConfig(Model):
    port: int
    tls: TLSConfig = Field(default_factory=TLSConfig)


class FrontendTLSConfig(Model):
    default: TLSConfig = Field(default_factory=TLSConfig)
    per_port: list[TLSPortConfig] = Field(default_factory=list)


class GatewayBackendTLS(Model):
    client_certificate_ref: SecretObjectReference | None = None


class GatewaySpecTLS(Model):
    """Gateway spec.tls: client certificate validation (frontend) and the
    client certificate presented to backends (backend)."""

    frontend: FrontendTLSConfig | None = None
    backend: GatewayBackendTLS | None = None


class ListenerNamespaces(Model):
    """Gateway spec.allowedListeners.namespaces: `from` defaults to None (no ListenerSets)."""

    from_: str = Field(default="None", validation_alias="from", serialization_alias="from")
    selector: LabelSelector | None = None


class AllowedListeners(Model):
    namespaces: ListenerNamespaces = Field(default_factory=ListenerNamespaces)


class GatewaySpec(Model):
    gateway_class_name: str
    listeners: list[Listener] = Field(default_factory=list)
    addresses: list[GatewayAddress] = Field(default_factory=list)
    infrastructure: GatewayInfrastructure | None = None
    tls: GatewaySpecTLS | None = None
    allowed_listeners: AllowedListeners | None = None
    default_scope: str | None = None  # GEP-3793: "All" makes this a default Gateway


class Gateway(Resource):
    spec: GatewaySpec


class ListenerSetSpec(Model):
    parent_ref: ParentReference
    listeners: list[Listener] = Field(default_factory=list)


class ListenerSet(Resource):
    spec: ListenerSetSpec


# ------------------------------------------------------------------ routes


class HTTPPathMatch(Model):
    type: str = "PathPrefix"
    value: str = "/"


class HTTPHeaderMatch(Model):
    type: str = "Exact"
    name: str
    value: str


class HTTPQueryParamMatch(Model):
    type: str = "Exact"
    name: str
    value: str


class HTTPRouteMatch(Model):
    path: HTTPPathMatch | None = None
    headers: list[HTTPHeaderMatch] = Field(default_factory=list)
    query_params: list[HTTPQueryParamMatch] = Field(default_factory=list)
    method: str | None = None


class HTTPHeader(Model):
    name: str
    value: str


class HTTPHeaderFilter(Model):
    set: list[HTTPHeader] = Field(default_factory=list)
    add: list[HTTPHeader] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class HTTPPathModifier(Model):
    type: str
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None


class HTTPRequestRedirectFilter(Model):
    scheme: str | None = None
    hostname: str | None = None
    path: HTTPPathModifier | None = None
    port: int | None = None
    status_code: int = 302


class HTTPURLRewriteFilter(Model):
    hostname: str | None = None
    path: HTTPPathModifier | None = None


class Fraction(Model):
    numerator: int
    denominator: int = 100


class HTTPRequestMirrorFilter(Model):
    backend_ref: BackendObjectReference
    percent: int | None = None
    fraction: Fraction | None = None


class HTTPCORSFilter(Model):
    allow_origins: list[str] = Field(default_factory=list)
    allow_credentials: bool | None = None
    allow_methods: list[str] = Field(default_factory=list)
    allow_headers: list[str] = Field(default_factory=list)
    expose_headers: list[str] = Field(default_factory=list)
    max_age: int | None = None


class GRPCAuthConfig(Model):
    allowed_headers: list[str] = Field(default_factory=list)


class HTTPAuthConfig(Model):
    path: str = ""
    allowed_headers: list[str] = Field(default_factory=list)
    allowed_response_headers: list[str] = Field(default_factory=list)


class ForwardBodyConfig(Model):
    max_size: int = 0


class HTTPExternalAuthFilter(Model):
    protocol: str
    backend_ref: BackendObjectReference
    grpc: GRPCAuthConfig | None = None
    http: HTTPAuthConfig | None = None
    forward_body: ForwardBodyConfig | None = None


class HTTPRouteFilter(Model):
    type: str
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    request_redirect: HTTPRequestRedirectFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = None
    cors: HTTPCORSFilter | None = None
    external_auth: HTTPExternalAuthFilter | None = None
    extension_ref: LocalObjectReference | None = None


class HTTPBackendRef(BackendObjectReference):
    weight: int = 1
    filters: list[HTTPRouteFilter] = Field(default_factory=list)


class HTTPRouteTimeouts(Model):
    request: str | None = None
    backend_request: str | None = None


class HTTPRouteRetry(Model):
    codes: list[int] = Field(default_factory=list)
    attempts: int | None = None
    backoff: str | None = None


class SessionCookieConfig(Model):
    name: str | None = None
    path: str = "/"
    lifetime_type: str = "Session"


class SessionHeaderConfig(Model):
    name: str


class SessionPersistenceConfig(Model):
    absolute_timeout: str | None = None
    type: str = "Cookie"
    cookie: SessionCookieConfig | None = None
    header: SessionHeaderConfig | None = None


class HTTPRouteRule(Model):
    name: str | None = None
    matches: list[HTTPRouteMatch] = Field(default_factory=lambda: [HTTPRouteMatch()])
    filters: list[HTTPRouteFilter] = Field(default_factory=list)
    backend_refs: list[HTTPBackendRef] = Field(default_factory=list)
    timeouts: HTTPRouteTimeouts | None = None
    retry: HTTPRouteRetry | None = None
    session_persistence: SessionPersistenceConfig | None = None


class CommonRouteSpec(Model):
    """The fields every route kind shares (CommonRouteSpec in the Gateway API)."""

    parent_refs: list[ParentReference] = Field(default_factory=list)
    use_default_gateways: str | None = None  # GEP-3793: "All" attaches to default Gateways


class HTTPRouteSpec(CommonRouteSpec):
    hostnames: list[str] = Field(default_factory=list)
    rules: list[HTTPRouteRule] = Field(default_factory=lambda: [HTTPRouteRule()])


class HTTPRoute(Resource):
    spec: HTTPRouteSpec


class GRPCMethodMatch(Model):
    type: str = "Exact"
    service: str | None = None
    method: str | None = None


class GRPCHeaderMatch(Model):
    type: str = "Exact"
    name: str
    value: str


class GRPCRouteMatch(Model):
    method: GRPCMethodMatch | None = None
    headers: list[GRPCHeaderMatch] = Field(default_factory=list)


class GRPCRouteFilter(Model):
    type: str
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    extension_ref: LocalObjectReference | None = None


class GRPCBackendRef(BackendObjectReference):
    weight: int = 1
    filters: list[GRPCRouteFilter] = Field(default_factory=list)


class GRPCRouteRule(Model):
    name: str | None = None
    matches: list[GRPCRouteMatch] = Field(default_factory=list)
    filters: list[GRPCRouteFilter] = Field(default_factory=list)
    backend_refs: list[GRPCBackendRef] = Field(default_factory=list)
    session_persistence: SessionPersistenceConfig | None = None


class GRPCRouteSpec(CommonRouteSpec):
    hostnames: list[str] = Field(default_factory=list)
    rules: list[GRPCRouteRule] = Field(default_factory=lambda: [GRPCRouteRule()])


class GRPCRoute(Resource):
    spec: GRPCRouteSpec


class L4BackendRef(BackendObjectReference):
    weight: int = 1


class L4RouteRule(Model):
    name: str | None = None
    backend_refs: list[L4BackendRef] = Field(default_factory=list)


class L4RouteSpec(CommonRouteSpec):
    hostnames: list[str] = Field(default_factory=list)  # TLSRoute only
    rules: list[L4RouteRule] = Field(default_factory=list)


class TLSRoute(Resource):
    spec: L4RouteSpec


class TCPRoute(Resource):
    spec: L4RouteSpec


class UDPRoute(Resource):
    spec: L4RouteSpec


# ------------------------------------------------------------------ policies and grants


class ReferenceGrantFrom(Model):
    group: str
    kind: str
    namespace: str


class ReferenceGrantTo(Model):
    group: str
    kind: str
    name: str | None = None


class ReferenceGrantSpec(Model):
    from_: list[ReferenceGrantFrom] = Field(validation_alias="from", serialization_alias="from")
    to: list[ReferenceGrantTo]


class ReferenceGrant(Resource):
    spec: ReferenceGrantSpec


class LocalPolicyTargetReference(Model):
    group: str = ""
    kind: str
    name: str
    section_name: str | None = None


class SubjectAltName(Model):
    type: str
    hostname: str | None = None
    uri: str | None = None


class BackendTLSValidation(Model):
    ca_certificate_refs: list[LocalObjectReference] = Field(default_factory=list)
    # the wire name capitalizes "CA" (to_camel would give wellKnownCaCertificates)
    well_known_ca_certificates: str | None = Field(default=None, validation_alias="wellKnownCACertificates",
                                                   serialization_alias="wellKnownCACertificates")
    hostname: str
    subject_alt_names: list[SubjectAltName] = Field(default_factory=list)


class BackendTLSPolicySpec(Model):
    target_refs: list[LocalPolicyTargetReference] = Field(default_factory=list)
    validation: BackendTLSValidation
    options: dict[str, str] = Field(default_factory=dict)


class BackendTLSPolicy(Resource):
    spec: BackendTLSPolicySpec


# ------------------------------------------------------------------ core kinds


class ServicePort(Model):
    name: str = ""
    protocol: str = "TCP"
    port: int
    target_port: int | str | None = None
    app_protocol: str | None = None


class ServiceSpec(Model):
    type: str = "ClusterIP"
    ports: list[ServicePort] = Field(default_factory=list)
    selector: dict[str, str] = Field(default_factory=dict)
    external_name: str | None = None
    cluster_ip: str | None = Field(default=None, validation_alias="clusterIP", serialization_alias="clusterIP")


class Service(Resource):
    spec: ServiceSpec = Field(default_factory=ServiceSpec)


class EndpointConditions(Model):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class EndpointSliceEndpoint(Model):
    addresses: list[str] = Field(default_factory=list)
    conditions: EndpointConditions = Field(default_factory=EndpointConditions)
    hostname: str | None = None


class EndpointPort(Model):
    name: str | None = None
    port: int | None = None
    protocol: str = "TCP"
    app_protocol: str | None = None


class EndpointSlice(Resource):
    address_type: str = "IPv4"
    endpoints: list[EndpointSliceEndpoint] = Field(default_factory=list)
    ports: list[EndpointPort] | None = None


class Namespace(Resource):
    pass


class Secret(Resource):
    type: str = "Opaque"
    data: dict[str, str] = Field(default_factory=dict)
    string_data: dict[str, str] = Field(default_factory=dict)


class ConfigMap(Resource):
    data: dict[str, str] = Field(default_factory=dict)


class PorticoProxy(Resource):
    """Portico's parameters of a Gateway's data plane (Kubernetes mode), referenced by
    GatewayClass or Gateway parametersRef; the CRD's schema validates the fields, the
    Kubernetes infrastructure reads them (`portico.infra.kubernetes.ProxyParameters`)."""

    spec: dict[str, Any] = Field(default_factory=dict)


class LocalBackendNamespaces(Model):
    """Which namespaces a localBackends rule is for: All, or those a selector matches
    (the shape of a listener's allowedRoutes.namespaces)."""

    from_: str = Field(default="Selector", validation_alias="from", serialization_alias="from")
    selector: LabelSelector | None = None


class LocalBackendRule(Model):
    """One entry of a PorticoProxy's spec.localBackends: the local endpoints (loopback and
    link-local CIDRs, Unix sockets or directories of them) that the Backends and XBackends
    of the selected namespaces may name (`portico.translator.localaccess`)."""

    namespaces: LocalBackendNamespaces
    cidrs: list[str] = Field(default_factory=list)
    unix_sockets: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------ Portico policies (GEP-713)


class HashOn(Model):
    header: dict[str, str] | None = None
    cookie: dict[str, str] | None = None
    query_parameter: dict[str, str] | None = None
    source_ip: dict[str, Any] | None = Field(default=None, validation_alias="sourceIP",
                                             serialization_alias="sourceIP")


class SlowStart(Model):
    window: str


class LoadBalancer(Model):
    type: str = "RoundRobin"
    hash_on: HashOn | None = None
    slow_start: SlowStart | None = None


class TrafficTimeout(Model):
    connect: str | None = None
    idle: str | None = None


class RequestBuffer(Model):
    limit: int | str


class HTTPHealthCheck(Model):
    path: str
    method: str | None = None
    expected_statuses: list[int] = Field(default_factory=list)


class GRPCHealthCheck(Model):
    service: str = ""


class ActiveHealthCheck(Model):
    type: str
    interval: str | None = None
    timeout: str | None = None
    unhealthy_threshold: int | None = None
    healthy_threshold: int | None = None
    http: HTTPHealthCheck | None = None
    grpc: GRPCHealthCheck | None = None


class PassiveHealthCheck(Model):
    consecutive_5xx_errors: int | None = Field(default=None, validation_alias="consecutive5XxErrors",
                                               serialization_alias="consecutive5XxErrors")
    consecutive_gateway_errors: int | None = None
    consecutive_local_origin_failures: int | None = None
    split_external_local_origin_errors: bool | None = None
    interval: str | None = None
    base_ejection_time: str | None = None
    max_ejection_percent: int | None = None


class HealthCheck(Model):
    active: ActiveHealthCheck | None = None
    passive: PassiveHealthCheck | None = None


class CircuitBreaker(Model):
    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_parallel_requests: int | None = None
    max_parallel_retries: int | None = None


class TCPKeepalive(Model):
    probes: int | None = None
    idle_time: str | None = None
    interval: str | None = None


class ProxyProtocol(Model):
    version: str


class RetryOn(Model):
    triggers: list[str] = Field(default_factory=list)
    http_status_codes: list[int] = Field(default_factory=list)


class BackOff(Model):
    base_interval: str
    max_interval: str | None = None


class PerRetry(Model):
    timeout: str | None = None
    back_off: BackOff | None = None


class RetryBudget(Model):
    percent: int | None = None
    min_retry_concurrency: int | None = None


class TrafficRetry(Model):
    num_retries: int | None = None
    retry_on: RetryOn | None = None
    per_retry: PerRetry | None = None
    budget: RetryBudget | None = None


class PolicySpec(Model):
    """What every Portico policy has: the routes (or rules) it applies to."""

    target_refs: list[LocalPolicyTargetReference] = Field(default_factory=list)


class TrafficFallback(Model):
    """A Service of the policy's namespace that gets a rule's requests while none of its
    backends has a healthy endpoint (ingress-nginx's default-backend annotation)."""

    name: str
    port: int | None = None  # None: the Service's first port, as ingress-nginx takes it


class BackendTrafficPolicySpec(PolicySpec):
    load_balancer: LoadBalancer | None = None
    timeout: TrafficTimeout | None = None
    request_buffer: RequestBuffer | None = None
    upstream_http2: bool | None = Field(default=None, validation_alias="upstreamHTTP2",
                                        serialization_alias="upstreamHTTP2")
    health_check: HealthCheck | None = None
    circuit_breaker: CircuitBreaker | None = None
    tcp_keepalive: TCPKeepalive | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry: TrafficRetry | None = None
    fallback: TrafficFallback | None = None


class BackendTrafficPolicy(Resource):
    spec: BackendTrafficPolicySpec


class JWTClaim(Model):
    """A claim the token must carry: `name` (nested claims dot-separated), one of `values`."""

    name: str
    value_type: str = "String"  # String | StringArray
    values: list[str] = Field(default_factory=list)


class JWTPrincipal(Model):
    provider: str
    claims: list[JWTClaim] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)


class AuthorizationHeaderMatch(Model):
    name: str
    values: list[str] = Field(default_factory=list)


class CertificateName(Model):
    """A client certificate's principal name: its URI SANs, else its DNS SANs, else its
    subject (RFC 2253), as Envoy's RBAC `authenticated.principal_name` reads it."""

    type: str = "Exact"  # Exact | Prefix | Suffix | RegularExpression
    value: str


class ClientCertificatePrincipal(Model):
    """The caller presented a client certificate the listener verified (mTLS: Gateway
    spec.tls.frontend), and, if `names` is set, its principal name is one of them."""

    names: list[CertificateName] = Field(default_factory=list)


class Principal(Model):
    client_cidrs: list[str] = Field(default_factory=list, validation_alias="clientCIDRs",
                                    serialization_alias="clientCIDRs")
    jwt: JWTPrincipal | None = None
    headers: list[AuthorizationHeaderMatch] = Field(default_factory=list)
    client_certificate: ClientCertificatePrincipal | None = None


class Operation(Model):
    methods: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)  # exact, "/prefix/*" or "*suffix"


class AuthorizationRule(Model):
    name: str | None = None
    action: str
    operation: Operation | None = None
    principal: Principal = Field(default_factory=Principal)


class Authorization(Model):
    default_action: str = "Deny"
    rules: list[AuthorizationRule] = Field(default_factory=list)


class RemoteJWKS(Model):
    uri: str
    backend_refs: list[BackendObjectReference] = Field(default_factory=list)
    cache_duration: str | None = None


class LocalJWKS(Model):
    """Keys inline, or from a ConfigMap's / Secret's `jwks` key (Envoy Gateway's valueRef)."""

    type: str = "Inline"  # Inline | ValueRef
    inline: str | None = None
    value_ref: LocalObjectReference | None = None


class ClaimToHeader(Model):
    header: str
    claim: str


class JWTHeaderExtractor(Model):
    name: str
    value_prefix: str | None = None


class JWTExtractor(Model):
    headers: list[JWTHeaderExtractor] = Field(default_factory=list)
    cookies: list[str] = Field(default_factory=list)
    params: list[str] = Field(default_factory=list)


class JWTProvider(Model):
    name: str
    issuer: str | None = None
    audiences: list[str] = Field(default_factory=list)
    remote_jwks: RemoteJWKS | None = Field(default=None, validation_alias="remoteJWKS",
                                           serialization_alias="remoteJWKS")
    local_jwks: LocalJWKS | None = Field(default=None, validation_alias="localJWKS",
                                         serialization_alias="localJWKS")
    claim_to_headers: list[ClaimToHeader] = Field(default_factory=list)
    extract_from: JWTExtractor | None = None
    forward_original_token: bool = False
    clock_skew_seconds: int | None = None


class JWT(Model):
    optional: bool = False
    providers: list[JWTProvider] = Field(default_factory=list)


class BasicAuth(Model):
    """Users from an htpasswd file in a Secret's ".htpasswd" key (Envoy Gateway's)."""

    users: SecretObjectReference


class APIKeyExtractFrom(Model):
    headers: list[str] = Field(default_factory=list)
    params: list[str] = Field(default_factory=list)
    cookies: list[str] = Field(default_factory=list)


class APIKeyAuth(Model):
    """Keys from Secrets: each data key a client's name, its value the client's API key."""

    credential_refs: list[SecretObjectReference] = Field(default_factory=list)
    extract_from: list[APIKeyExtractFrom] = Field(default_factory=list)
    forward_client_id_header: str | None = Field(default=None, validation_alias="forwardClientIDHeader",
                                                 serialization_alias="forwardClientIDHeader")
    sanitize: bool = False


class OIDCProvider(Model):
    """The OpenID provider: its issuer; endpoints not given are discovered from
    `<issuer>/.well-known/openid-configuration` (Envoy Gateway's OIDCProvider)."""

    issuer: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    end_session_endpoint: str | None = None


class OIDCCookieNames(Model):
    access_token: str | None = None
    id_token: str | None = None


class OIDC(Model):
    """Browser login with the authorization code flow (PKCE), Envoy Gateway's SecurityPolicy oidc."""

    provider: OIDCProvider
    client_id: str = Field(validation_alias="clientID", serialization_alias="clientID")
    client_secret: SecretObjectReference
    scopes: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    redirect_url: str | None = Field(default=None, validation_alias="redirectURL", serialization_alias="redirectURL")
    logout_path: str | None = None
    forward_access_token: bool = False
    default_token_ttl: str | None = Field(default=None, validation_alias="defaultTokenTTL",
                                          serialization_alias="defaultTokenTTL")
    refresh_token: bool = True
    cookie_names: OIDCCookieNames | None = None
    cookie_domain: str | None = None
class ExtAuthGRPC(Model):
    """An authorization service speaking Envoy's ext_authz gRPC protocol."""

    backend_refs: list[BackendObjectReference] = Field(default_factory=list)


class ExtAuthHTTP(Model):
    """A plain HTTP authorization service: a 2xx answer allows the request."""

    backend_refs: list[BackendObjectReference] = Field(default_factory=list)
    path: str = ""  # a prefix of the path of the check request (then the request's own path)
    headers_to_backend: list[str] = Field(default_factory=list)  # answer headers copied to the request


class ExtAuthBody(Model):
    max_request_bytes: int


class ExtAuth(Model):
    """Envoy Gateway's SecurityPolicy extAuth: ask an authorization service (grpc or http)."""

    grpc: ExtAuthGRPC | None = None
    http: ExtAuthHTTP | None = None
    headers_to_ext_auth: list[str] = Field(default_factory=list)
    body_to_ext_auth: ExtAuthBody | None = None
    fail_open: bool = False


class SecurityPolicySpec(PolicySpec):
    authorization: Authorization | None = None
    jwt: JWT | None = None
    basic_auth: BasicAuth | None = None
    api_key_auth: APIKeyAuth | None = None
    oidc: OIDC | None = None
    ext_auth: ExtAuth | None = None


class SecurityPolicy(Resource):
    spec: SecurityPolicySpec


class ClientSelector(Model):
    source_ip: dict[str, Any] | None = Field(default=None, validation_alias="sourceIP",
                                             serialization_alias="sourceIP")
    header: dict[str, str] | None = None
    jwt_claim: dict[str, str] | None = Field(default=None, validation_alias="jwtClaim",
                                             serialization_alias="jwtClaim")


class RateLimitValue(Model):
    requests: int
    unit: str


class RateLimitRule(Model):
    client_selectors: list[ClientSelector] = Field(default_factory=list)
    limit: RateLimitValue
    burst: int | None = None


class LocalRateLimit(Model):
    rules: list[RateLimitRule] = Field(default_factory=list)
    response_status_code: int = 429


class RateLimitPolicySpec(PolicySpec):
    local: LocalRateLimit


class RateLimitPolicy(Resource):
    spec: RateLimitPolicySpec


class RegexRewrite(Model):
    pattern: str
    substitution: str = ""


class FilterPathModifier(Model):
    type: str = "ReplaceRegexMatch"
    replace_regex_match: RegexRewrite


class FilterURLRewrite(Model):
    path: FilterPathModifier


class AuthSignin(Model):
    """Where a client whose request the route's ExternalAuth answered 401 is sent instead
    (302), with the original URL in the `redirectParam` query parameter (ingress-nginx's
    auth-signin)."""

    url: str
    redirect_param: str = "rd"
    # what the parameter holds: URL (scheme://host and the percent-encoded request URI, as
    # ingress-nginx's default), UnescapedURL, EscapedRequestURI or RequestURI
    redirect_value: str = "URL"


class ClientCertificateHeader(Model):
    """A request header set to the client's TLS certificate (`Certificate`: URL-encoded PEM),
    its `Subject` or its `Issuer` (RFC 2253), as ingress-nginx's ssl-client-* headers."""

    name: str
    value: str


class ErrorPageResponse(Model):
    """The answer Envoy itself gives instead of an error (no error page backend)."""

    status_code: int
    body: str = ""


class ErrorPages(Model):
    """Answers of `statusCodes` replaced by the error page: a GET of `/` (the query kept) to
    `backendRef`, its answer returned as it is, with X-Code, X-Format, X-Original-URI,
    X-Request-ID and `requestHeaders` set (ingress-nginx's custom-http-errors with a
    default backend); or, without a backendRef, `response` (ingress-nginx's built-in default
    backend answers 404)."""

    status_codes: list[int]
    backend_ref: BackendObjectReference | None = None
    response: ErrorPageResponse | None = None
    request_headers: list[HTTPHeader] = Field(default_factory=list)


class RequireClientCertificate(Model):
    """The rule's requests need a client certificate the Gateway's frontend validation (mode
    AllowInsecureFallback) found valid; `optional`: a client without one passes too. Others
    are answered 400, or a 302 to `errorRedirect` (ingress-nginx's auth-tls-verify-client
    and auth-tls-error-page)."""

    optional: bool = False
    error_redirect: str | None = None


class PorticoHTTPRouteFilterSpec(Model):
    url_rewrite: FilterURLRewrite | None = None
    auth_signin: AuthSignin | None = None
    error_pages: ErrorPages | None = None
    require_client_certificate: RequireClientCertificate | None = None
    client_certificate_headers: list[ClientCertificateHeader] = Field(default_factory=list)


class PorticoHTTPRouteFilter(Resource):
    """gateway.portico.dev HTTPRouteFilter: what an HTTPRoute ExtensionRef filter can name."""

    spec: PorticoHTTPRouteFilterSpec


class XForwardedFor(Model):
    num_trusted_hops: int = 0


class CustomHeader(Model):
    name: str
    fail_closed: bool = False


class ClientIPDetection(Model):
    x_forwarded_for: XForwardedFor | None = None
    custom_header: CustomHeader | None = None


class ClientProxyProtocol(Model):
    optional: bool = False


class ClientTLS(Model):
    min_version: str | None = None
    max_version: str | None = None
    ciphers: list[str] = Field(default_factory=list)
    alpn_protocols: list[str] | None = Field(default=None, validation_alias="alpnProtocols",
                                             serialization_alias="alpnProtocols")


class ClientHTTP2(Model):
    max_concurrent_streams: int | None = None
    initial_stream_window_size: int | str | None = None
    initial_connection_window_size: int | str | None = None


class ClientHeaders(Model):
    max_request_headers_kb: int | None = Field(default=None, validation_alias="maxRequestHeadersKb",
                                               serialization_alias="maxRequestHeadersKb")
    max_headers_count: int | None = None


class ClientPath(Model):
    escaped_slashes_action: str | None = None
    merge_slashes: bool | None = None


class ClientConnection(Model):
    connection_limit: int | None = None


class ClientTimeout(Model):
    idle: str | None = None
    request_received: str | None = None


class ClientAccessLog(Model):
    format: str | None = None
    json_format: dict[str, str] | None = Field(default=None, validation_alias="json", serialization_alias="json")


class ClientTrafficPolicySpec(PolicySpec):
    client_ip_detection: ClientIPDetection | None = Field(default=None, validation_alias="clientIPDetection",
                                                          serialization_alias="clientIPDetection")
    proxy_protocol: ClientProxyProtocol | None = None
    tls: ClientTLS | None = None
    http2: ClientHTTP2 | None = None
    http3: dict[str, Any] | None = None
    headers: ClientHeaders | None = None
    path: ClientPath | None = None
    connection: ClientConnection | None = None
    timeout: ClientTimeout | None = None
    access_log: ClientAccessLog | None = None


class ClientTrafficPolicy(Resource):
    spec: ClientTrafficPolicySpec


class BackendIP(Model):
    address: str
    port: int


class BackendFQDN(Model):
    hostname: str
    port: int


class BackendUnix(Model):
    path: str


class BackendEndpoint(Model):
    ip: BackendIP | None = None
    fqdn: BackendFQDN | None = None
    unix: BackendUnix | None = None
    weight: int = 1


class PorticoBackendSpec(Model):
    endpoints: list[BackendEndpoint] = Field(default_factory=list)
    protocol: str | None = None


class PorticoBackend(Resource):
    """gateway.portico.dev Backend: static IP, DNS or Unix-socket endpoints for a backendRef."""

    spec: PorticoBackendSpec


# ------------------------------------------------------------------ XBackend (gateway.networking.x-k8s.io)


class XBackendHostname(Model):
    hostname: str


class XBackendPort(Model):
    port: int
    name: str | None = None


class XBackendTLS(Model):
    mode: str = "None"
    validation: BackendTLSValidation | None = None  # the same fields as BackendTLSPolicy's
    client_certificate_ref: dict[str, str] | None = None


class XBackendSpec(Model):
    type: str = "ExternalHostname"
    external_hostname: XBackendHostname | None = None
    port: XBackendPort
    protocol: str | None = None
    tls: XBackendTLS | None = None


class XBackend(Resource):
    spec: XBackendSpec


class XRetryConstraint(Model):
    budget: dict[str, Any] | None = None
    min_retry_rate: dict[str, Any] | None = None


class XBackendTrafficPolicySpec(Model):
    target_refs: list[LocalPolicyTargetReference] = Field(default_factory=list)
    retry_constraint: XRetryConstraint | None = None
    session_persistence: SessionPersistenceConfig | None = None


class XBackendTrafficPolicy(Resource):
    spec: XBackendTrafficPolicySpec


class Other(Resource):
    """Any other kind: stored and listed, not translated."""


def _model(name: str) -> type[Resource]:
    """The class `portico.kinds` names (a name that is no model fails at import: tested)."""
    found = globals().get(name)
    if not (isinstance(found, type) and issubclass(found, Resource)):
        raise TypeError(f"portico.kinds names {name!r}, which is not a model of portico.models")
    return found


# the model of each kind the translator reads (`portico.kinds`); any other kind is `Other`
MODELS: dict[tuple[str, str], type[Resource]] = {(k.group, k.kind): _model(k.model) for k in KINDS if k.model}


class InvalidObject(Exception):
    """A document that cannot be read as its kind; `path` names the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# Built-in groups Portico reads and their one version: a Secret is `v1` exactly, never
# `v2`, `V1`, `v1 ` or `core/v1` (the API server has no such version; the validation says so)
BUILTIN_VERSIONS = {"": "v1", "discovery.k8s.io": "v1"}


def model_for(api_version: str, kind: str) -> type[Resource]:
    group, _, version = api_version.rpartition("/")
    if BUILTIN_VERSIONS.get(group, version) != version:
        return Other
    if group == "gateway.networking.x-k8s.io" and kind == "ListenerSet":
        group = GATEWAY_GROUP  # ListenerSet graduated from the experimental group
    return MODELS.get((group, kind), Other)


def parse_object(raw: dict[str, Any]) -> Resource:
    """Parse a Kubernetes-shaped document into its model, or raise InvalidObject."""
    for required in ("apiVersion", "kind"):
        if not raw.get(required):
            raise InvalidObject(required, "required field is missing")
    if not (raw.get("metadata") or {}).get("name"):
        raise InvalidObject("metadata.name", "required field is missing")
    model = model_for(str(raw["apiVersion"]), str(raw["kind"]))
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        raise InvalidObject(_field_path(tuple(err["loc"])), err["msg"]) from None


def dump(obj: Resource) -> dict[str, Any]:
    """The object in Kubernetes shape (camelCase, unknown fields kept)."""
    return obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
