"""IR listeners -> Envoy LDS `Listener` resources.

One Envoy listener per IR Listener (socket); one filter chain per IR FilterChain,
told apart by SNI (`server_names`). HTTP chains use an HttpConnectionManager whose
routes come over RDS; TCP chains a tcp_proxy; UDP listeners a udp_proxy.
"""

from __future__ import annotations

from dataclasses import replace

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, extension_pb2, substitution_format_string_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2, quic_config_pb2, udp_listener_config_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.http.stateful_session.v3 import stateful_session_pb2
from envoy.extensions.filters.listener.proxy_protocol.v3 import proxy_protocol_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.connection_limit.v3 import connection_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.filters.udp.udp_proxy.v3 import route_pb2 as udp_route_pb2
from envoy.extensions.filters.udp.udp_proxy.v3 import udp_proxy_pb2
from envoy.extensions.http.original_ip_detection.custom_header.v3 import custom_header_pb2
from envoy.extensions.transport_sockets.quic.v3 import quic_transport_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import http_status_pb2, percent_pb2
from google.protobuf import struct_pb2, wrappers_pb2
from xds.core.v3 import extension_pb2 as xds_extension_pb2

from portico import ir
from portico.xds import policies
from portico.xds._common import (
    INVALID_BACKEND_HEADER,
    INVALID_CLUSTER,
    ads_source,
    millis,
    pack,
    set_wrapped,
    stat_name,
)
from portico.xds.errorpages import error_page_filters
from portico.xds.extauth import ext_authz_filters, policy_ext_authz_filters
from portico.xds.jwt import jwt_filter
from portico.xds.oidc import oidc_filter
from portico.xds.routes import CORS_FILTER, SESSION_FILTER
from portico.xds.scopes import scope_filter, scope_key_mutation, scoped, scoped_routes
from portico.xds.secrets import sds_config
from portico.xds.signin import signin_filters

_HCM = hcm.HttpConnectionManager
_NO_CLIENT_SETTINGS = ir.ClientSettings()


def build_listener(listener: ir.Listener) -> listener_pb2.Listener | None:
    """The LDS resource for `listener`, or None when it has nothing to serve."""
    if listener.quic:
        return _quic_listener(listener)
    if listener.transport == "udp":
        return _udp_listener(listener) if listener.udp_backends else None
    if not listener.filter_chains:
        return None
    out = listener_pb2.Listener(name=listener.name, address=_address(listener, address_pb2.SocketAddress.TCP))
    inspect_tls = any(c.server_names or c.tls is not None for c in listener.filter_chains)
    out.filter_chains.extend(_filter_chain(listener, c, inspect_tls) for c in listener.filter_chains)
    if listener.proxy_protocol is not None:
        # first: the PROXY header precedes the TLS ClientHello (ClientTrafficPolicy proxyProtocol)
        out.listener_filters.append(listener_components_pb2.ListenerFilter(
            name="envoy.filters.listener.proxy_protocol", typed_config=pack(proxy_protocol_pb2.ProxyProtocol(
                allow_requests_without_proxy_protocol=listener.proxy_protocol == "optional"))))
    if inspect_tls:
        # SNI-based filter chain selection needs the TLS ClientHello parsed first.
        out.listener_filters.append(
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.tls_inspector",
                typed_config=pack(tls_inspector_pb2.TlsInspector()),
            )
        )
    return out


def _address(listener: ir.Listener, protocol: int) -> address_pb2.Address:
    sock = address_pb2.SocketAddress(address=listener.address, port_value=listener.port, protocol=protocol)
    return address_pb2.Address(socket_address=sock)


def _filter_chain(
    listener: ir.Listener, chain: ir.FilterChain, inspect_tls: bool
) -> listener_components_pb2.FilterChain:
    out = listener_components_pb2.FilterChain(name=chain.name)
    if chain.server_names:
        out.filter_chain_match.server_names.extend(chain.server_names)
    if inspect_tls and (chain.server_names or chain.tls is not None):
        out.filter_chain_match.transport_protocol = "tls"
    if chain.tls is not None:
        out.transport_socket.CopyFrom(_downstream_tls(chain.tls))
    prefix = stat_name(f"{listener.name}/{chain.name}")
    if chain.connection_limit is not None:
        limit = connection_limit_pb2.ConnectionLimit(
            stat_prefix=prefix, max_connections=wrappers_pb2.UInt64Value(value=chain.connection_limit))
        out.filters.append(_network_filter("envoy.filters.network.connection_limit", limit))
    if chain.http is not None:
        out.filters.append(_network_filter("envoy.filters.network.http_connection_manager",
                                           http_manager(chain.http, prefix, chain.client)))
    elif chain.tcp is not None:
        out.filters.append(_network_filter("envoy.filters.network.tcp_proxy", _tcp_proxy(chain.tcp, prefix)))
    return out


def _network_filter(name: str, config: object) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(name=name, typed_config=pack(config))


# ---------------------------------------------------------------- HTTP


def http_manager(http: ir.HTTPConfig, prefix: str, client: ir.ClientSettings = _NO_CLIENT_SETTINGS,
                 quic: bool = False) -> hcm.HttpConnectionManager:
    """HttpConnectionManager with the ClientTrafficPolicy's settings, its routes over RDS and
    VHDS, or scoped by Host over ADS when they are all under exact hostnames (`xds.scopes`)."""
    out = _HCM(
        stat_prefix=prefix,
        # HTTP/1.1 and HTTP/2 (h2c prior knowledge on plaintext); HTTP/3 on a QUIC listener
        codec_type=_HCM.HTTP3 if quic else _HCM.AUTO,
        use_remote_address=wrappers_pb2.BoolValue(value=True),
        # Path and Host as a security-sensitive gateway must see them before matching (README,
        # "Path and Host handling"): RFC 3986 normalization (dot segments, also when
        # percent-encoded), encoded slashes decoded with a redirect to the decoded path,
        # a trailing dot in Host ignored.
        normalize_path=wrappers_pb2.BoolValue(value=True),
        merge_slashes=False,
        path_with_escaped_slashes_action=_HCM.UNESCAPE_AND_REDIRECT,
        strip_trailing_host_dot=True,
        generate_request_id=wrappers_pb2.BoolValue(value=False),
        server_header_transformation=_HCM.PASS_THROUGH,
        local_reply_config=_local_reply_config(),
    )
    by_host = scoped(http)
    if by_host:
        out.scoped_routes.CopyFrom(scoped_routes(http.route_config_name))
        out.early_header_mutation_extensions.append(scope_key_mutation(http.route_config_name))
    else:
        out.rds.CopyFrom(hcm.Rds(config_source=ads_source(), route_config_name=http.route_config_name))
    # WebSocket upgrades are off by default; routes with action.websocket enable them.
    out.upgrade_configs.append(
        _HCM.UpgradeConfig(upgrade_type="websocket", enabled=wrappers_pb2.BoolValue(value=False))
    )
    if client != _NO_CLIENT_SETTINGS:
        _client_settings(out, client)
    out.http_filters.extend(_http_filters(client.rate_limits, scope_filter(http) if by_host else None))
    return out


def _client_settings(out: hcm.HttpConnectionManager, c: ir.ClientSettings) -> None:
    """ClientTrafficPolicy on the connection manager (translator.policies.clienttraffic)."""
    out.xff_num_trusted_hops = c.xff_trusted_hops
    if c.client_ip_header is not None:
        header = custom_header_pb2.CustomHeaderConfig(header_name=c.client_ip_header,
                                                      allow_extension_to_set_address_as_trusted=True)
        if c.client_ip_header_fail_closed:
            header.reject_with_status.code = http_status_pb2.Forbidden
        out.ClearField("use_remote_address")  # Envoy: the two may not be mixed
        out.original_ip_detection_extensions.append(extension_pb2.TypedExtensionConfig(
            name="envoy.http.original_ip_detection.custom_header", typed_config=pack(header)))
    set_wrapped(out.http2_protocol_options, max_concurrent_streams=c.http2_max_concurrent_streams,
                initial_stream_window_size=c.http2_initial_stream_window,
                initial_connection_window_size=c.http2_initial_connection_window)
    set_wrapped(out, max_request_headers_kb=c.max_request_headers_kb)
    common = out.common_http_protocol_options
    set_wrapped(common, max_headers_count=c.max_headers_count)
    if c.idle_timeout_ms is not None:
        common.idle_timeout.CopyFrom(millis(c.idle_timeout_ms))
    if c.request_timeout_ms is not None:
        out.request_timeout.CopyFrom(millis(c.request_timeout_ms))
    if c.escaped_slashes is not None:
        out.path_with_escaped_slashes_action = _ESCAPED_SLASHES[c.escaped_slashes]
    if c.merge_slashes is not None:
        out.merge_slashes = c.merge_slashes
    if c.access_log_format is not None or c.access_log_json:
        out.access_log.append(_access_log(c))


_ESCAPED_SLASHES = {
    "KeepUnchanged": _HCM.KEEP_UNCHANGED, "RejectRequest": _HCM.REJECT_REQUEST,
    "UnescapeAndRedirect": _HCM.UNESCAPE_AND_REDIRECT, "UnescapeAndForward": _HCM.UNESCAPE_AND_FORWARD,
}


def _access_log(c: ir.ClientSettings) -> accesslog_pb2.AccessLog:
    fmt = substitution_format_string_pb2.SubstitutionFormatString()
    if c.access_log_json:
        fmt.json_format.CopyFrom(struct_pb2.Struct(fields={
            k: struct_pb2.Value(string_value=v) for k, v in c.access_log_json}))
    else:
        text = c.access_log_format or ""
        fmt.text_format_source.inline_string = text if text.endswith("\n") else text + "\n"
    return accesslog_pb2.AccessLog(name="envoy.access_loggers.stdout",
                                   typed_config=pack(stream_pb2.StdoutAccessLog(log_format=fmt)))


def _listener_rate_limit(limits: tuple[ir.RateLimit, ...]) -> list[hcm.HttpFilter]:
    """A Gateway's or listener's RateLimitPolicy: enabled for every request of the chain,
    its buckets shared by all routes (the routes' own come after, per route)."""
    if not limits:
        return []
    config = policies.local_rate_limit(limits, stat_prefix="portico_listener_rate_limit")
    return [hcm.HttpFilter(name=LISTENER_RATE_LIMIT_FILTER, typed_config=pack(config))]


LISTENER_RATE_LIMIT_FILTER = "portico.listener.local_ratelimit"


def _http_filters(listener_limits: tuple[ir.RateLimit, ...] = (), scope: hcm.HttpFilter | None = None
                  ) -> list[hcm.HttpFilter]:
    """CORS and stateful session are always present so a route gaining one does not change
    the listener and drain its connections, but disabled: only routes whose FilterConfig
    enables them run them (enabled everywhere they cost 7-20% of Envoy's CPU per request,
    bench/traffic.py ablation); router last."""
    return [
        bad_authority_filter(),
        *([scope] if scope is not None else []),  # a Host no scope is keyed on (`xds.scopes`)
        *_listener_rate_limit(listener_limits),
        oidc_filter(),  # SecurityPolicy oidc: a browser without a session is sent to log in first
        jwt_filter(),  # SecurityPolicy JWT, its providers by ECDS: before RBAC reads claims
        *policy_ext_authz_filters(),  # SecurityPolicy extAuth (after jwt_authn), disabled too
        *policies.first_filters(),  # RBAC and local rate limits (route policies)
        hcm.HttpFilter(name=CORS_FILTER, typed_config=pack(cors_pb2.Cors()), disabled=True),
        hcm.HttpFilter(name=SESSION_FILTER, typed_config=pack(stateful_session_pb2.StatefulSession()),
                       disabled=True),
        *signin_filters(),  # before ext_authz, whose 401 they turn into a sign-in redirect; disabled too
        *ext_authz_filters(),  # disabled until a route with ExternalAuth enables one
        # after authorization: error pages replace the backend's answers and the router's own
        *error_page_filters(),
        *policies.last_filters(),  # request body limits (route policies)
        hcm.HttpFilter(name="envoy.filters.http.router", typed_config=pack(router_pb2.Router())),
    ]


BAD_AUTHORITY_FILTER = "portico.bad_authority"


def bad_authority_filter() -> hcm.HttpFilter:
    """400 for a Host with userinfo ("user@host": RFC 9110 4.2.4, recipients treat it as an
    error, it hides the authority for phishing) or several Hosts (Envoy joins repeated Host
    headers with ","; RFC 9112 3.2: a request with more than one Host is answered 400),
    before any other filter and any virtual host. Matching ignores the Host's port by
    cutting it at its last ':' whatever follows, so `internal.example:80@public.example`
    and `internal.example:1,public.example` would both match `internal.example` (no
    header validator is built into the Envoy release that would refuse them earlier).
    Envoy's fault filter aborting every request whose Host matches: one check per
    connection manager, where two routes in every virtual host made Envoy's rebuild of
    the route table on each VHDS update twice as long (bench/vhds_cost.py)."""
    abort = fault_pb2.FaultAbort(http_status=400, percentage=percent_pb2.FractionalPercent(numerator=100))
    bad = rc.HeaderMatcher(name=":authority", string_match=string_pb2.StringMatcher(
        safe_regex=regex_pb2.RegexMatcher(regex=".*[,@].*")))
    return hcm.HttpFilter(name=BAD_AUTHORITY_FILTER, typed_config=pack(fault_pb2.HTTPFault(
        abort=abort, headers=[bad], disable_downstream_cluster_stats=True)))


def _local_reply_config() -> hcm.LocalReplyConfig:
    """Requests sent to the invalid-backend cluster (marker header, no healthy upstream) answer
    500, or 503 when the marker says so (GRPCRoute: UNAVAILABLE); the first matching mapper wins.
    The bad-authority filter's 400 (a fault abort: Portico injects no other fault) says why."""
    fault = accesslog_pb2.AccessLogFilter(response_flag_filter=accesslog_pb2.ResponseFlagFilter(flags=["FI"]))
    bad_authority = hcm.ResponseMapper(filter=fault, body=base_pb2.DataSource(inline_string="invalid Host\n"))
    return hcm.LocalReplyConfig(mappers=[_invalid_backend_mapper(503, "503"), _invalid_backend_mapper(500, None),
                                         bad_authority])


def _invalid_backend_mapper(status: int, marker: str | None) -> hcm.ResponseMapper:
    no_healthy = accesslog_pb2.AccessLogFilter(response_flag_filter=accesslog_pb2.ResponseFlagFilter(flags=["UH"]))
    header = rc.HeaderMatcher(name=INVALID_BACKEND_HEADER, present_match=True)
    if marker is not None:
        header = rc.HeaderMatcher(name=INVALID_BACKEND_HEADER, string_match=string_pb2.StringMatcher(exact=marker))
    marked = accesslog_pb2.AccessLogFilter(header_filter=accesslog_pb2.HeaderFilter(header=header))
    return hcm.ResponseMapper(
        filter=accesslog_pb2.AccessLogFilter(and_filter=accesslog_pb2.AndFilter(filters=[no_healthy, marked])),
        status_code=wrappers_pb2.UInt32Value(value=status),
    )


# ---------------------------------------------------------------- TLS


_TLS_VERSIONS = {"1.0": common_pb2.TlsParameters.TLSv1_0, "1.1": common_pb2.TlsParameters.TLSv1_1,
                 "1.2": common_pb2.TlsParameters.TLSv1_2, "1.3": common_pb2.TlsParameters.TLSv1_3}


def _downstream_tls(t: ir.DownstreamTLS) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name="envoy.transport_sockets.tls", typed_config=pack(_tls_context(t)))


def _tls_context(t: ir.DownstreamTLS) -> tls_pb2.DownstreamTlsContext:
    """Certificates over SDS (rotation pushes only the secret); optional client validation."""
    ctx = tls_pb2.DownstreamTlsContext()
    common = ctx.common_tls_context
    common.tls_certificate_sds_secret_configs.extend(sds_config(c.name) for c in t.certificates)
    common.alpn_protocols.extend(t.alpn)
    params = common.tls_params
    if t.min_version is not None:
        params.tls_minimum_protocol_version = _TLS_VERSIONS[t.min_version]
    if t.max_version is not None:
        params.tls_maximum_protocol_version = _TLS_VERSIONS[t.max_version]
    if t.ciphers:
        params.cipher_suites.extend(t.ciphers)
    cv = t.client_validation
    if cv is not None:
        common.validation_context.trusted_ca.inline_string = cv.ca_pem
        ctx.require_client_certificate.value = not cv.optional
        if cv.optional:
            # AllowInsecureFallback: an invalid client certificate does not fail the handshake.
            common.validation_context.trust_chain_verification = (
                common_pb2.CertificateValidationContext.ACCEPT_UNTRUSTED
            )
    return ctx


# ---------------------------------------------------------------- TCP / UDP


def _quic_listener(listener: ir.Listener) -> listener_pb2.Listener:
    """HTTP/3: the HTTPS chains on a UDP socket, TLS 1.3 inside QUIC (ALPN h3), chosen by SNI."""
    out = listener_pb2.Listener(
        name=listener.name, address=_address(listener, address_pb2.SocketAddress.UDP),
        udp_listener_config=udp_listener_config_pb2.UdpListenerConfig(
            quic_options=quic_config_pb2.QuicProtocolOptions()))
    for chain in listener.filter_chains:
        assert chain.tls is not None and chain.http is not None
        fc = out.filter_chains.add(name=chain.name)
        if chain.server_names:
            fc.filter_chain_match.server_names.extend(chain.server_names)
        tls = _tls_context(replace(chain.tls, alpn=("h3",), min_version=None, max_version=None))
        fc.transport_socket.CopyFrom(base_pb2.TransportSocket(
            name="envoy.transport_sockets.quic",
            typed_config=pack(quic_transport_pb2.QuicDownstreamTransport(downstream_tls_context=tls))))
        prefix = stat_name(f"{listener.name}/{chain.name}")
        fc.filters.append(_network_filter("envoy.filters.network.http_connection_manager",
                                          http_manager(chain.http, prefix, chain.client, quic=True)))
    return out


def _tcp_proxy(tcp: ir.TCPConfig, prefix: str) -> tcp_proxy_pb2.TcpProxy:
    """tcp_proxy to the backend(s); all-invalid backends go to the empty cluster (connection closed)."""
    out = tcp_proxy_pb2.TcpProxy(stat_prefix=prefix)
    backends = [b for b in tcp.backends if b.weight > 0]
    if len(backends) <= 1:
        out.cluster = (backends[0].cluster if backends else None) or INVALID_CLUSTER
        return out
    for b in backends:
        out.weighted_clusters.clusters.add(name=b.cluster or INVALID_CLUSTER, weight=b.weight)
    return out


def _udp_listener(listener: ir.Listener) -> listener_pb2.Listener:
    out = listener_pb2.Listener(
        name=listener.name,
        address=_address(listener, address_pb2.SocketAddress.UDP),
        udp_listener_config=udp_listener_config_pb2.UdpListenerConfig(),
    )
    proxy = udp_proxy_pb2.UdpProxyConfig(stat_prefix=stat_name(listener.name))
    route = udp_route_pb2.Route(cluster=udp_cluster(listener.udp_backends))
    # The matcher is the xDS (cncf) one: its action is an xds.core TypedExtensionConfig.
    action = xds_extension_pb2.TypedExtensionConfig(name="route", typed_config=pack(route))
    proxy.matcher.on_no_match.action.CopyFrom(action)
    out.listener_filters.append(
        listener_components_pb2.ListenerFilter(name="envoy.filters.udp_listener.udp_proxy", typed_config=pack(proxy))
    )
    return out


def udp_cluster(backends: tuple[ir.WeightedBackend, ...]) -> str:
    """udp_proxy routes to one cluster only (its Route action has no weights): the
    highest-weight valid backend wins; none valid -> the empty cluster."""
    valid = [b for b in backends if b.weight > 0 and b.cluster is not None]
    if not valid:
        return INVALID_CLUSTER
    best = max(valid, key=lambda b: b.weight)
    return best.cluster or INVALID_CLUSTER
