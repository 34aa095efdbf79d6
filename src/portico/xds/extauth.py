"""HTTPRoute ExternalAuth → Envoy ext_authz.

Every HTTP connection manager carries two ext_authz filters, one per protocol,
disabled by default (so a route gaining or losing ExternalAuth never changes the
listener); a route with ExternalAuth enables the one for its protocol with a
per-route `CheckSettings` naming its authorization service. Failures fail closed
(`failure_mode_allow` false): "If there is any problem communicating with the
external service, this filter MUST fail closed".
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2, http_uri_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2 as ea
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import any_pb2

from portico import ir
from portico.xds._common import INVALID_CLUSTER, millis, pack

GRPC_FILTER = "envoy.filters.http.ext_authz/grpc"
HTTP_FILTER = "envoy.filters.http.ext_authz/http"
# SecurityPolicy extAuth: filters of their own (a route may have both checks), one per
# protocol and failure mode (failOpen is Envoy's failure_mode_allow, a filter setting)
POLICY_FILTERS = {(protocol, fail_open): f"portico.security.ext_authz/{protocol.lower()}"
                  + ("-fail-open" if fail_open else "") for protocol in ("GRPC", "HTTP") for fail_open in (False, True)}
CHECK_TIMEOUT_MS = 10_000
# Answer headers never copied into the forwarded request when "all" are asked for:
# Host ("all headers from the authorization server except Authority or Host"), and
# the framing headers of the authorization answer itself. Pseudo-headers are excluded too.
NOT_COPIED = ("host", "content-length", "transfer-encoding", "connection")


def ext_authz_filters() -> list[hcm.HttpFilter]:
    """The two ext_authz filters of every HTTP connection manager, off until a route enables one."""
    return [_filter(GRPC_FILTER, "GRPC", False), _filter(HTTP_FILTER, "HTTP", False)]


def policy_ext_authz_filters() -> list[hcm.HttpFilter]:
    """The SecurityPolicy extAuth filters, off until a route's policy enables one."""
    return [_filter(name, protocol, fail_open) for (protocol, fail_open), name in POLICY_FILTERS.items()]


def _filter(name: str, protocol: str, fail_open: bool) -> hcm.HttpFilter:
    if protocol == "GRPC":
        config = ea.ExtAuthz(grpc_service=_grpc_service(INVALID_CLUSTER), failure_mode_allow=fail_open,
                             transport_api_version=config_source_pb2.ApiVersion.V3)
    else:
        placeholder = http_uri_pb2.HttpUri(uri=f"http://{INVALID_CLUSTER}", cluster=INVALID_CLUSTER,
                                           timeout=millis(CHECK_TIMEOUT_MS))
        config = ea.ExtAuthz(http_service=ea.HttpService(server_uri=placeholder), failure_mode_allow=fail_open,
                             transport_api_version=config_source_pb2.ApiVersion.V3)
    return hcm.HttpFilter(name=name, typed_config=pack(config), disabled=True)


def ext_authz_per_route(a: ir.ExternalAuth, policy: bool = False) -> tuple[str, any_pb2.Any]:
    """(filter name, per-route config) enabling the route's authorization check: the
    ExternalAuth filter's, or (`policy`) its SecurityPolicy's extAuth."""
    settings = ea.CheckSettings()
    if a.protocol == "GRPC":
        settings.grpc_service.CopyFrom(_grpc_service(a.cluster))
    else:
        settings.http_service.CopyFrom(_http_service(a))
    if a.forward_body_bytes > 0:
        # ForwardBody.maxSize: a larger body is sent truncated to maxSize.
        settings.with_request_body.CopyFrom(ea.BufferSettings(max_request_bytes=a.forward_body_bytes,
                                                              allow_partial_message=True))
    per_route = ea.ExtAuthzPerRoute(check_settings=settings)
    name = GRPC_FILTER if a.protocol == "GRPC" else HTTP_FILTER
    if policy:
        name = POLICY_FILTERS[(a.protocol, a.fail_open)]
    return name, pack(rc.FilterConfig(config=pack(per_route)))


def _grpc_service(cluster: str) -> grpc_service_pb2.GrpcService:
    return grpc_service_pb2.GrpcService(envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster),
                                        timeout=millis(CHECK_TIMEOUT_MS))


def _http_service(a: ir.ExternalAuth) -> ea.HttpService:
    """HTTPAuthConfig: path prefix; allowedHeaders are sent besides Envoy's defaults (Host,
    Method, Path, Content-Length, Authorization); allowedResponseHeaders are copied into the
    forwarded request, all but Host (and framing headers) when empty."""
    out = ea.HttpService(
        server_uri=http_uri_pb2.HttpUri(uri=f"http://{a.cluster}", cluster=a.cluster,
                                        timeout=millis(CHECK_TIMEOUT_MS)),
        path_prefix=a.path_prefix,
    )
    # Per route, Envoy takes headers to add (with formatters), not a header allow-list: each
    # allowed header is copied from the request; an absent one yields an empty value, not sent.
    out.authorization_request.headers_to_add.extend(
        base_pb2.HeaderValue(key=n.lower(), value=f"%REQ({n.lower()})%") for n in a.allowed_headers)
    upstream = out.authorization_response.allowed_upstream_headers.patterns
    if a.allowed_response_headers:
        upstream.extend(_names(a.allowed_response_headers))
    elif a.copy_all_response_headers:
        # one pattern per alternative (any matching one copies the header): Envoy compiles a
        # route's patterns per request, and one RE2 program of them all exceeds its size
        # limit (100), an exception there that aborted Envoy on the first such request
        upstream.extend(string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=f"(?i){alternative}"))
                        for alternative in _none_of(NOT_COPIED))
    return out


def _names(names: tuple[str, ...]) -> list[string_pb2.StringMatcher]:
    return [string_pb2.StringMatcher(exact=n.lower(), ignore_case=True) for n in names]


def _none_of(words: tuple[str, ...]) -> list[str]:
    """RE2 expressions (no lookahead) that together match the header names that are
    neither one of `words` (distinct lengths, lower case) nor pseudo-headers (":...")."""
    lengths = sorted(len(w) for w in words)
    alternatives = []
    start = 1
    for n in lengths + [0]:
        end = n - 1 if n else None
        if end is None:
            alternatives.append(f"[^:].{{{start - 1},}}")
        elif end >= start:
            alternatives.append(f"[^:].{{{start - 1},{end - 1}}}")
        start = n + 1
    for w in words:
        for i, c in enumerate(w):
            first = "" if i == 0 else w[:i]
            excluded = ":" + c if i == 0 else c
            alternatives.append(f"{_escape(first)}[^{_escape(excluded)}].{{{len(w) - i - 1}}}")
    return alternatives


def _escape(text: str) -> str:
    return "".join("\\" + c if not c.isalnum() else c for c in text)
