"""Portico HTTPRouteFilter clientCertificateHeaders → request headers Envoy formats from the
downstream TLS connection (ingress-nginx's ssl-client-cert, -subject-dn, -issuer-dn).

Envoy's %DOWNSTREAM_PEER_CERT% is the URL-encoded PEM, as nginx's $ssl_client_escaped_cert;
subject and issuer are RFC 2253 strings, as $ssl_client_s_dn/$ssl_client_i_dn. Without a
client certificate the value is empty and Envoy sends no header.

HTTPRouteFilter requireClientCertificate → a route before the rule's own, with the same
match and a TLS context match (no valid certificate; with `optional`, one presented and not
valid), answering 400 or a 302 to the error page: nginx's 496/495 (answered 400) and
`error_page 495 496 = <auth-tls-error-page>`. The listener accepts such clients (frontend
validation AllowInsecureFallback: Envoy's ACCEPT_UNTRUSTED), so the route decides.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from google.protobuf import wrappers_pb2

from portico import ir

FORMATS = {"Certificate": "%DOWNSTREAM_PEER_CERT%", "Subject": "%DOWNSTREAM_PEER_SUBJECT%",
           "Issuer": "%DOWNSTREAM_PEER_ISSUER%"}


def client_cert_headers(headers: tuple[tuple[str, str], ...]) -> list[base_pb2.HeaderValueOption]:
    return [base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name.lower(), value=FORMATS[value]),
                                       append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
            for name, value in headers]


def certificate_check_route(route: ir.Route, match: rc.RouteMatch) -> rc.Route | None:
    """The route refusing `route`'s requests without the client certificate it needs."""
    check = route.action.client_cert_check
    if check is None:
        return None
    tls = rc.RouteMatch.TlsContextMatchOptions(validated=wrappers_pb2.BoolValue(value=False))
    if check.optional:
        tls.presented.value = True
    out = rc.Route(name=f"{route.name}/client-certificate", match=match)
    out.match.tls_context.CopyFrom(tls)
    if check.redirect is None:
        out.direct_response.status = 400
    else:
        out.direct_response.status = 302
        out.response_headers_to_add.append(base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key="location", value=check.redirect.replace("%", "%%")),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD))
    return out
