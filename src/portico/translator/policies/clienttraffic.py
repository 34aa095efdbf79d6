"""ClientTrafficPolicy (gateway.portico.dev): how Envoy treats client connections.

Targets: Gateways (sectionName: a listener); a policy for a listener wins over one for
its Gateway.
- HTTP listeners on one port are one filter chain (one connection manager): it takes
  the first policy for one of its listeners by name (most specific hostname first), else
  the Gateway's; a listener's own policy that loses is Conflicted (`Attachment.for_chain`).
  HTTPS and TLS listeners are a chain each.
- proxyProtocol is read before any chain is chosen: it applies to the whole port, from
  the first of its listeners that asks for it (`on_port`).
- http3 (HTTPS listeners): the chains also on a QUIC socket of the port (`build.http3_listener`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from portico import ir
from portico.models import ClientTrafficPolicy, ClientTrafficPolicySpec
from portico.objects import ObjectKey
from portico.translator.durations import parse_duration_ms
from portico.translator.gateway import ListenerState
from portico.translator.policies.kind import PolicyKind
from portico.translator.quantities import quantity_bytes

# HTTP/2 window sizes Envoy accepts (RFC 9113: at least 65535, at most 2^31-1)
_WINDOW = (65_535, 2**31 - 1)
# Envoy's default format, with the client address as Portico determined it
DEFAULT_ACCESS_LOG = ('[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
                      '%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
                      '"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" "%REQ(USER-AGENT)%" "%UPSTREAM_HOST%"\n')


class ClientTrafficPolicies(PolicyKind):
    kind = "ClientTrafficPolicy"
    model = ClientTrafficPolicy

    @staticmethod
    def problem(policy: ClientTrafficPolicy) -> str:
        spec = policy.spec
        for name, field in (("idle", "idle"), ("requestReceived", "request_received")):
            value = getattr(spec.timeout, field) if spec.timeout else None
            if value is not None and parse_duration_ms(value) is None:
                return f"timeout.{name} {value!r} is not a duration"
        tls = spec.tls
        if tls is not None and tls.min_version and tls.max_version and tls.min_version > tls.max_version:
            return f"tls.minVersion {tls.min_version} is above maxVersion {tls.max_version}"
        h2 = spec.http2
        for name, field in (("initialStreamWindowSize", "initial_stream_window_size"),
                            ("initialConnectionWindowSize", "initial_connection_window_size")):
            value = getattr(h2, field) if h2 else None
            size = quantity_bytes(value) if value is not None else None
            if value is not None and (size is None or not _WINDOW[0] <= size <= _WINDOW[1]):
                return f"http2.{name} {value!r} must be from 65535 bytes to 2Gi-1"
        return ""

    def on_chain(self, chain: ir.FilterChain, gateway: ObjectKey, group: list[ListenerState]) -> ir.FilterChain:
        """`chain` (serving `group`, most specific first) with its listeners' policy."""
        policy = self.attachment.for_chain(self.kind, gateway, group)
        if not isinstance(policy, ClientTrafficPolicy):
            return chain
        spec = policy.spec
        out = replace(chain, client=settings(chain.client, spec),
                      connection_limit=spec.connection.connection_limit if spec.connection else None)
        if spec.tls is not None and out.tls is not None:
            t = spec.tls
            tls = replace(out.tls, min_version=cast("ir.TLSVersion | None", t.min_version),
                          max_version=cast("ir.TLSVersion | None", t.max_version), ciphers=tuple(t.ciphers))
            if t.alpn_protocols is not None:
                tls = replace(tls, alpn=tuple(t.alpn_protocols))
            out = replace(out, tls=tls)
        return out

    def on_port(self, listener: ir.Listener, gateway: ObjectKey, group: list[ListenerState]) -> ir.Listener:
        """The port's PROXY protocol: from the first of its listeners whose policy asks for it."""
        found = next((s.proxy_protocol for s in (self.spec(gateway, ls) for ls in group)
                      if s is not None and s.proxy_protocol), None)
        if found is None:
            return listener
        return replace(listener, proxy_protocol="optional" if found.optional else "required")

    def spec(self, gateway: ObjectKey, ls: ListenerState) -> ClientTrafficPolicySpec | None:
        found = self.attachment.for_listener(self.kind, gateway, ls.qualified_name)
        return found.spec if isinstance(found, ClientTrafficPolicy) else None


def settings(out: ir.ClientSettings, spec: ClientTrafficPolicySpec) -> ir.ClientSettings:
    """`out` with what the policy sets on the connection manager."""
    ip = spec.client_ip_detection
    if ip is not None and ip.x_forwarded_for is not None:
        out = replace(out, xff_trusted_hops=ip.x_forwarded_for.num_trusted_hops)
    if ip is not None and ip.custom_header is not None:
        out = replace(out, client_ip_header=ip.custom_header.name.lower(),
                      client_ip_header_fail_closed=ip.custom_header.fail_closed)
    if spec.http2 is not None:
        h2 = spec.http2
        out = replace(out, http2_max_concurrent_streams=h2.max_concurrent_streams,
                      http2_initial_stream_window=_bytes(h2.initial_stream_window_size),
                      http2_initial_connection_window=_bytes(h2.initial_connection_window_size))
    if spec.http3 is not None:
        out = replace(out, http3=True)
    if spec.headers is not None:
        out = replace(out, max_request_headers_kb=spec.headers.max_request_headers_kb,
                      max_headers_count=spec.headers.max_headers_count)
    if spec.path is not None:
        out = replace(out, escaped_slashes=cast(Any, spec.path.escaped_slashes_action),
                      merge_slashes=spec.path.merge_slashes)
    if spec.timeout is not None:
        t = spec.timeout
        out = replace(out, idle_timeout_ms=parse_duration_ms(t.idle) if t.idle else None,
                      request_timeout_ms=parse_duration_ms(t.request_received) if t.request_received else None)
    if spec.access_log is not None:
        log = spec.access_log
        out = replace(out, access_log_format=log.format,
                      access_log_json=tuple(sorted((log.json_format or {}).items())))
        if log.format is None and not log.json_format:
            out = replace(out, access_log_format=DEFAULT_ACCESS_LOG)
    return out


def _bytes(value: int | str | None) -> int | None:
    return quantity_bytes(value) if value is not None else None
