"""IR clusters -> Envoy CDS `Cluster` and EDS `ClusterLoadAssignment` resources.

One Envoy cluster per IR Cluster (one per Service port, see ARCHITECTURE), endpoints
served over EDS so an endpoint change pushes only that assignment; ExternalName
backends (`dns=True`) are STRICT_DNS clusters with their hostnames inline.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from portico import ir
from portico.xds._common import INVALID_CLUSTER, ads_source, millis, pack
from portico.xds.secrets import sds_config

SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

_LB = {
    "round_robin": cluster_pb2.Cluster.ROUND_ROBIN,
    "least_request": cluster_pb2.Cluster.LEAST_REQUEST,
    "random": cluster_pb2.Cluster.RANDOM,
    "ring_hash": cluster_pb2.Cluster.RING_HASH,
    "maglev": cluster_pb2.Cluster.MAGLEV,
}
# Envoy's default circuit breakers (1024 connections/requests) throttle a busy gateway;
# raise them so the proxy, not the breaker, is the limit.
_BREAKER_LIMIT = 100_000


def build_cluster(c: ir.Cluster) -> cluster_pb2.Cluster:
    """The CDS resource for `c` (EDS-backed unless `c.dns`)."""
    out = cluster_pb2.Cluster(
        name=c.name,
        connect_timeout=millis(c.connect_timeout_ms),
        lb_policy=_LB[c.lb_policy],
        circuit_breakers=_breakers(),
    )
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
    return out


def build_load_assignment(c: ir.Cluster) -> endpoint_pb2.ClusterLoadAssignment:
    """The EDS resource for `c`; zero endpoints is valid (Envoy answers 503 no healthy upstream)."""
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=c.name)
    if not c.endpoints:
        return out
    locality = out.endpoints.add()
    for ep in c.endpoints:
        locality.lb_endpoints.append(_lb_endpoint(ep))
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
    addr = address_pb2.Address(socket_address=address_pb2.SocketAddress(address=ep.address, port_value=ep.port))
    out = endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(address=addr))
    if ep.weight != 1:
        out.load_balancing_weight.value = ep.weight
    return out


def _breakers() -> circuit_breaker_pb2.CircuitBreakers:
    limit = wrappers_pb2.UInt32Value(value=_BREAKER_LIMIT)
    return circuit_breaker_pb2.CircuitBreakers(
        thresholds=[
            circuit_breaker_pb2.CircuitBreakers.Thresholds(
                max_connections=limit, max_pending_requests=limit, max_requests=limit
            )
        ]
    )


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
