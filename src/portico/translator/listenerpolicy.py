"""What ClientTrafficPolicy and a Gateway's RateLimitPolicy change on the listeners
(`policies` decides which apply where).

Rules (the Portico CRDs):
- A policy for a listener wins over one for its Gateway (`RoutePolicies.for_listener`).
- HTTP listeners on one port are one filter chain (one connection manager): it takes
  the first policy for one of its listeners by name (most specific hostname first), else
  the Gateway's; a listener's own policy that loses is Conflicted. HTTPS and TLS listeners
  are a chain each.
- proxyProtocol is read before any chain is chosen: it applies to the whole port, from
  the first of its listeners that asks for it.
- RateLimitPolicy on a Gateway or listener: budgets shared by every route of the chain,
  checked besides the routes' own.
- http3 (HTTPS listeners): the chains also on a QUIC socket of the port (`build.http3_listener`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, cast

from portico import ir
from portico.models import ClientTrafficPolicy, ClientTrafficPolicySpec, RateLimitPolicy, Resource
from portico.translator.durations import parse_duration_ms
from portico.translator.traffic import quantity_bytes, rate_limits

if TYPE_CHECKING:
    from portico.translator.gateway import GatewayState, ListenerState
    from portico.translator.policies import RoutePolicies

# HTTP/2 window sizes Envoy accepts (RFC 9113: at least 65535, at most 2^31-1)
_WINDOW = (65_535, 2**31 - 1)


def client_traffic_problem(policy: Resource) -> str:
    """Why Portico cannot program a ClientTrafficPolicy ("" when it can)."""
    if not isinstance(policy, ClientTrafficPolicy):
        return ""
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


def settings(spec: ClientTrafficPolicySpec | None, limits: RateLimitPolicy | None) -> ir.ClientSettings:
    out = ir.ClientSettings(rate_limits=rate_limits(limits) if limits else ())
    if spec is None:
        return out
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


# Envoy's default format, with the client address as Portico determined it
DEFAULT_ACCESS_LOG = ('[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
                      '%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
                      '"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" "%REQ(USER-AGENT)%" "%UPSTREAM_HOST%"\n')


def _bytes(value: int | str | None) -> int | None:
    return quantity_bytes(value) if value is not None else None


class ListenerPolicies:
    """The ClientTrafficPolicy and RateLimitPolicy in effect on each listener of a Gateway."""

    def __init__(self, policies: RoutePolicies, gw: GatewayState) -> None:
        self.policies = policies
        self.key = gw.key

    def ctp(self, ls: ListenerState) -> ClientTrafficPolicy | None:
        found = self.policies.for_listener("ClientTrafficPolicy", self.key, ls.qualified_name)
        return found if isinstance(found, ClientTrafficPolicy) else None

    def spec(self, ls: ListenerState) -> ClientTrafficPolicySpec | None:
        found = self.ctp(ls)
        return found.spec if found is not None else None

    def limits(self, ls: ListenerState) -> RateLimitPolicy | None:
        found = self.policies.for_listener("RateLimitPolicy", self.key, ls.qualified_name)
        return found if isinstance(found, RateLimitPolicy) else None

    def first_own(self, kind: str, group: list[ListenerState]) -> Resource | None:
        """The first policy of `kind` that targets one of `group`'s listeners by name."""
        return next((p for ls in group if (p := self.policies.first((kind, self.key, ls.qualified_name)))), None)

    def shared(self, group: list[ListenerState], winner: Resource | None, kind: str) -> None:
        """Listeners sharing one connection manager (HTTP on one port) get its settings from
        the first policy found: a listener's own policy that loses is Conflicted, saying why."""
        if winner is None or len(group) < 2:
            return
        for ls in group:
            own = self.policies.first((kind, self.key, ls.qualified_name))
            if own is not None and own is not winner:
                self.policies.overridden(own, self.key, (
                    f"listener {ls.name} shares port {ls.spec.port}'s connection manager with listener "
                    f"{group[0].name}: {kind} {winner.namespace}/{winner.name} applies to them all"))

    def chain(self, chain: ir.FilterChain, group: list[ListenerState]) -> ir.FilterChain:
        """`chain` (serving `group`, most specific first) with its listeners' policies."""
        if not self.policies.index:
            return chain
        own_policy, own_limits = self.first_own("ClientTrafficPolicy", group), self.first_own("RateLimitPolicy", group)
        policy = own_policy if isinstance(own_policy, ClientTrafficPolicy) else self.ctp(group[0])
        limits = own_limits if isinstance(own_limits, RateLimitPolicy) else self.limits(group[0])
        self.shared(group, policy, "ClientTrafficPolicy")
        self.shared(group, limits, "RateLimitPolicy")
        if policy is None and limits is None:
            return chain
        spec = policy.spec if policy is not None else None
        out = replace(chain, client=settings(spec, limits),
                      connection_limit=spec.connection.connection_limit if spec and spec.connection else None)
        if spec is not None and spec.tls is not None and out.tls is not None:
            t = spec.tls
            tls = replace(out.tls, min_version=cast("ir.TLSVersion | None", t.min_version),
                          max_version=cast("ir.TLSVersion | None", t.max_version), ciphers=tuple(t.ciphers))
            if t.alpn_protocols is not None:
                tls = replace(tls, alpn=tuple(t.alpn_protocols))
            out = replace(out, tls=tls)
        return out

    def proxy_protocol(self, group: list[ListenerState]) -> Literal["required", "optional"] | None:
        """The port's PROXY protocol: from the first of its listeners whose policy asks for it."""
        if not self.policies.index:
            return None
        found = next((s.proxy_protocol for s in map(self.spec, group) if s is not None and s.proxy_protocol), None)
        if found is None:
            return None
        return "optional" if found.optional else "required"
