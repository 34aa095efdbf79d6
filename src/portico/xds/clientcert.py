"""Portico HTTPRouteFilter clientCertificateHeaders → request headers Envoy formats from the
downstream TLS connection (ingress-nginx's ssl-client-cert, -subject-dn, -issuer-dn).

Envoy's %DOWNSTREAM_PEER_CERT% is the URL-encoded PEM, as nginx's $ssl_client_escaped_cert;
subject and issuer are RFC 2253 strings, as $ssl_client_s_dn/$ssl_client_i_dn. Without a
client certificate the value is empty and Envoy sends no header.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2

FORMATS = {"Certificate": "%DOWNSTREAM_PEER_CERT%", "Subject": "%DOWNSTREAM_PEER_SUBJECT%",
           "Issuer": "%DOWNSTREAM_PEER_ISSUER%"}


def client_cert_headers(headers: tuple[tuple[str, str], ...]) -> list[base_pb2.HeaderValueOption]:
    return [base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name.lower(), value=FORMATS[value]),
                                       append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
            for name, value in headers]
