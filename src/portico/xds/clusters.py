"""IR clusters -> Envoy CDS `Cluster` and EDS `ClusterLoadAssignment` resources.

One Envoy cluster per IR Cluster (one per Service port, see ARCHITECTURE), endpoints
served over EDS so an endpoint change pushes only that assignment; ExternalName
backends (`dns=True`) are STRICT_DNS clusters with their hostnames inline.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2, protocol_pb2, proxy_protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import http_pb2, percent_pb2, range_pb2
from google.protobuf import wrappers_pb2

from portico import ir
from portico.xds._common import INVALID_CLUSTER, ads_source, millis, pack, set_wrapped
from portico.xds.secrets import sds_config

SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# a priority's health is min(100, factor x healthy / all) percent: with this factor one
# healthy endpoint among up to 10,000 keeps all the load on priority 0
FALLBACK_OVERPROVISIONING = 100 * 10_000

_LB = {
    "round_robin": cluster_pb2.Cluster.ROUND_ROBIN,
    "least_request": cluster_pb2.Cluster.LEAST_REQUEST,
    "random": cluster_pb2.Cluster.RANDOM,
    "ring_hash": cluster_pb2.Cluster.RING_HASH,
    "maglev": cluster_pb2.Cluster.MAGLEV,
}


def build_cluster(c: ir.Cluster) -> cluster_pb2.Cluster:
    """The CDS resource for `c` (EDS-backed unless `c.dns`)."""
    out = cluster_pb2.Cluster(
        name=c.name,
        connect_timeout=millis(c.connect_timeout_ms),
        lb_policy=_LB[c.lb_policy],
        circuit_breakers=_breakers(c.circuit_breaker),
    )
    _traffic_settings(c, out)
    if c.dns:
        out.type = cluster_pb2.Cluster.STRICT_DNS
        out.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
        out.load_assignment.CopyFrom(build_load_assignment(c))
    else:
        out.type = cluster_pb2.Cluster.EDS
        out.eds_cluster_config.eds_config.CopyFrom(ads_source())
    if c.protocol in ("h2c", "h2"):
        # HTTP/2 upstream (GRPCRoute, appProtocol h2c): explicit http2 protocol options.
        opts = http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
            )
        )
        out.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(opts))
    if c.tls is not None:
        out.transport_socket.CopyFrom(_upstream_tls(c.tls, c.protocol))
    if c.proxy_protocol is not None:
        out.transport_socket.CopyFrom(_proxy_protocol(c.proxy_protocol, out.transport_socket))
    return out


def _traffic_settings(c: ir.Cluster, out: cluster_pb2.Cluster) -> None:
    """BackendTrafficPolicy settings: slow start, health checks, outlier detection, keepalive."""
    if c.slow_start_ms is not None and c.lb_policy in ("round_robin", "least_request"):
        slow = cluster_pb2.Cluster.SlowStartConfig(slow_start_window=millis(c.slow_start_ms))
        if c.lb_policy == "least_request":
            out.least_request_lb_config.slow_start_config.CopyFrom(slow)
        else:
            out.round_robin_lb_config.slow_start_config.CopyFrom(slow)
    if c.health_check is not None:
        out.health_checks.append(_health_check(c.health_check, c.protocol))
    if c.outlier_detection is not None:
        out.outlier_detection.CopyFrom(_outlier_detection(c.outlier_detection))
    k = c.tcp_keepalive
    if k is not None:
        set_wrapped(out.upstream_connection_options.tcp_keepalive, keepalive_probes=k.probes,
                    keepalive_time=k.idle_s, keepalive_interval=k.interval_s)


def _health_check(h: ir.HealthCheck, protocol: ir.AppProtocol) -> health_check_pb2.HealthCheck:
    out = health_check_pb2.HealthCheck(
        timeout=millis(h.timeout_ms), interval=millis(h.interval_ms),
        # without traffic Envoy would probe only every 60 s: keep the configured pace
        no_traffic_interval=millis(h.interval_ms),
        unhealthy_threshold=wrappers_pb2.UInt32Value(value=h.unhealthy_threshold),
        healthy_threshold=wrappers_pb2.UInt32Value(value=h.healthy_threshold),
    )
    if h.type == "HTTP":
        http = out.http_health_check
        http.path = h.path
        if h.method != "GET":
            http.method = base_pb2.RequestMethod.Value(h.method)
        if protocol in ("h2c", "h2"):
            http.codec_client_type = http_pb2.HTTP2  # as the backend speaks
        http.expected_statuses.extend(range_pb2.Int64Range(start=s, end=s + 1) for s in h.expected_statuses)
    elif h.type == "GRPC":
        out.grpc_health_check.service_name = h.grpc_service
    else:
        out.tcp_health_check.SetInParent()  # a connection that opens passes
    return out


def _outlier_detection(o: ir.OutlierDetection) -> outlier_detection_pb2.OutlierDetection:
    def u32(v: int) -> wrappers_pb2.UInt32Value:
        return wrappers_pb2.UInt32Value(value=v)

    out = outlier_detection_pb2.OutlierDetection(
        interval=millis(o.interval_ms), base_ejection_time=millis(o.base_ejection_ms),
        max_ejection_percent=u32(o.max_ejection_percent),
        split_external_local_origin_errors=o.split_local_origin,
    )
    if o.consecutive_5xx:
        out.consecutive_5xx.CopyFrom(u32(o.consecutive_5xx))
    else:
        out.enforcing_consecutive_5xx.CopyFrom(u32(0))
    if o.consecutive_gateway_errors:
        out.consecutive_gateway_failure.CopyFrom(u32(o.consecutive_gateway_errors))
        out.enforcing_consecutive_gateway_failure.CopyFrom(u32(100))
    if o.split_local_origin and o.consecutive_local_origin_failures:
        out.consecutive_local_origin_failure.CopyFrom(u32(o.consecutive_local_origin_failures))
        out.enforcing_consecutive_local_origin_failure.CopyFrom(u32(100))
    return out


def _proxy_protocol(version: str, inner: base_pb2.TransportSocket) -> base_pb2.TransportSocket:
    """PROXY protocol header first on each upstream connection, then TLS or plain bytes."""
    if not inner.name:
        inner = base_pb2.TransportSocket(name="envoy.transport_sockets.raw_buffer",
                                         typed_config=pack(raw_buffer_pb2.RawBuffer()))
    config = upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport(
        config=proxy_protocol_pb2.ProxyProtocolConfig(
            version=proxy_protocol_pb2.ProxyProtocolConfig.V1 if version == "V1"
            else proxy_protocol_pb2.ProxyProtocolConfig.V2),
        transport_socket=inner)
    return base_pb2.TransportSocket(name="envoy.transport_sockets.upstream_proxy_protocol", typed_config=pack(config))


def build_load_assignment(c: ir.Cluster) -> endpoint_pb2.ClusterLoadAssignment:
    """The EDS resource for `c`; zero endpoints is valid (Envoy answers 503 no healthy upstream).

    With a fallback (BackendTrafficPolicy `fallback`, as Envoy Gateway makes fallback
    backends), its endpoints are priority 1 of the same assignment. Envoy sends a share of
    the load to priority 1 only where priority 0's health, the fraction of healthy hosts
    times the overprovisioning factor, is under 100%: an empty priority 0 sends it all
    there. The factor makes any one healthy endpoint of priority 0 count as 100%, so the
    fallback is what ingress-nginx's default-backend is, a backend for a Service without
    endpoints, never a spill-over of a partly healthy one (Envoy's default 140 would send
    a share there once under 72% of the endpoints are healthy)."""
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=c.name)
    if c.endpoints or c.fallback is not None:
        locality = out.endpoints.add()  # priority 0, present even when empty
        for ep in c.endpoints:
            locality.lb_endpoints.append(_lb_endpoint(ep))
    if c.fallback is not None:
        fallback = out.endpoints.add(priority=1)
        for ep in c.fallback_endpoints:
            fallback.lb_endpoints.append(_lb_endpoint(ep))
        out.policy.overprovisioning_factor.value = FALLBACK_OVERPROVISIONING
    return out


def invalid_backend_cluster() -> cluster_pb2.Cluster:
    """Static cluster with no endpoints: requests to it fail with response flag UH (mapped to 500)."""
    return cluster_pb2.Cluster(
        name=INVALID_CLUSTER,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=millis(1000),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(cluster_name=INVALID_CLUSTER),
    )


def _lb_endpoint(ep: ir.Endpoint) -> endpoint_components_pb2.LbEndpoint:
    if ep.address.startswith(ir.UNIX_PREFIX):
        addr = address_pb2.Address(pipe=address_pb2.Pipe(path=ep.address.removeprefix(ir.UNIX_PREFIX)))
    else:
        addr = address_pb2.Address(socket_address=address_pb2.SocketAddress(address=ep.address, port_value=ep.port))
    out = endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(address=addr))
    if ep.weight != 1:
        out.load_balancing_weight.value = ep.weight
    return out


def _breakers(b: ir.CircuitBreaker) -> circuit_breaker_pb2.CircuitBreakers:
    def u32(v: int) -> wrappers_pb2.UInt32Value:
        return wrappers_pb2.UInt32Value(value=v)

    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=u32(b.max_connections), max_pending_requests=u32(b.max_pending_requests),
        max_requests=u32(b.max_requests))
    if b.max_retries is not None:
        thresholds.max_retries.CopyFrom(u32(b.max_retries))
    if b.retry_budget_percent is not None or b.min_retry_concurrency is not None:
        budget = thresholds.retry_budget
        if b.retry_budget_percent is not None:
            budget.budget_percent.CopyFrom(percent_pb2.Percent(value=float(b.retry_budget_percent)))
        if b.min_retry_concurrency is not None:
            budget.min_retry_concurrency.CopyFrom(u32(b.min_retry_concurrency))
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[thresholds])


def _upstream_tls(t: ir.UpstreamTLS, protocol: ir.AppProtocol) -> base_pb2.TransportSocket:
    """UpstreamTlsContext: SNI, CA validation (inline PEM or system store), SAN match, client cert."""
    ctx = tls_pb2.UpstreamTlsContext(sni=t.sni)
    common = ctx.common_tls_context
    alpn = list(t.alpn) or (["h2"] if protocol == "h2" else [])
    common.alpn_protocols.extend(alpn)
    validation = common.validation_context
    if t.ca_pem:
        validation.trusted_ca.inline_string = t.ca_pem
    else:
        validation.trusted_ca.filename = SYSTEM_CA_FILE
    sans = t.subject_alt_names or (ir.SubjectAltName("Hostname", t.sni),)
    validation.match_typed_subject_alt_names.extend(_san_matcher(s) for s in sans)
    if t.client_cert_secret:
        common.tls_certificate_sds_secret_configs.append(sds_config(t.client_cert_secret))
    return base_pb2.TransportSocket(name="envoy.transport_sockets.tls", typed_config=pack(ctx))


def _san_matcher(san: ir.SubjectAltName) -> common_pb2.SubjectAltNameMatcher:
    kind = common_pb2.SubjectAltNameMatcher.DNS if san.type == "Hostname" else common_pb2.SubjectAltNameMatcher.URI
    return common_pb2.SubjectAltNameMatcher(san_type=kind, matcher=string_pb2.StringMatcher(exact=san.value))
