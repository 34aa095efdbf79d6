"""End to end, real Envoy: TLS everywhere and the L4 routes.

`portico run` serves a Gateway whose listeners cover HTTPS by SNI (and 421 for
a misdirected request), live certificate rotation, frontend mTLS (accepted and
rejected), TLS passthrough to a backend that reports the SNI it received,
BackendTLSPolicy origination (a backend certificate verified, another
refused), TCP echo and UDP datagrams. Certificates are made here with trustme.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import free_port, start, stop, wait_for, write_atomically

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.timeout(180)
NS = "default"
PORT_OFFSET = 20000  # listeners bind port + offset (no root needed)


# ---------------------------------------------------------------- process helpers


def get(host: str, port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body) if resp.status == 200 and body else {}
    finally:
        conn.close()


# ---------------------------------------------------------------- backends


class EchoHandler(BaseHTTPRequestHandler):
    """Answers with JSON: the backend's name, the Host, and the TLS facts it saw."""

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        conn = self.connection
        body = json.dumps({
            "backend": self.server.name,  # type: ignore[attr-defined]
            "host": self.headers.get("Host", ""),
            "sni": getattr(conn, "portico_sni", None),
            "tls": isinstance(conn, ssl.SSLSocket),
            "client_cert": bool(conn.getpeercert()) if isinstance(conn, ssl.SSLSocket) else False,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def record_sni(sock: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
    sock.portico_sni = name


def http_backend(name: str, tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server.name = name  # type: ignore[attr-defined]
    if tls is not None:
        tls.sni_callback = record_sni
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def tcp_echo() -> socket.socket:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(b"echo:" + data)

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener


def udp_echo() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            data, peer = sock.recvfrom(4096)
            sock.sendto(b"echo:" + data, peer)

    threading.Thread(target=serve, daemon=True).start()
    return sock


# ---------------------------------------------------------------- manifests


def pem_secret(name: str, cert: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": NS},
            "stringData": {"tls.crt": cert.cert_chain_pems[0].bytes().decode(),
                           "tls.key": cert.private_key_pem.bytes().decode()}}


def ca_configmap(name: str, ca: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS},
            "data": {"ca.crt": ca.cert_pem.bytes().decode()}}


def service(name: str, port: int, target: int, protocol: str = "TCP") -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
         "spec": {"ports": [{"name": "p", "port": port, "protocol": protocol}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": name, "namespace": NS, "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}],
         "ports": [{"name": "p", "port": target, "protocol": protocol}]},
    ]


def route(kind: str, name: str, parent: str, backend: str, port: int, **spec: Any) -> dict[str, Any]:
    version = "v1" if kind in ("HTTPRoute", "TLSRoute") else "v1alpha2"
    return {"apiVersion": f"gateway.networking.k8s.io/{version}", "kind": kind,
            "metadata": {"name": name, "namespace": NS},
            "spec": {"parentRefs": [{"name": "gw", "sectionName": parent}], **spec,
                     "rules": [{"backendRefs": [{"name": backend, "port": port}]}]}}


def backend_tls_policy(name: str, service_name: str, ca_configmap_name: str, hostname: str,
                       sans: tuple[str, ...] = ()) -> dict[str, Any]:
    validation: dict[str, Any] = {"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": ca_configmap_name}],
                                  "hostname": hostname}
    if sans:
        validation["subjectAltNames"] = [{"type": "Hostname", "hostname": san} for san in sans]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "BackendTLSPolicy",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": service_name}],
                     "validation": validation}}


def gateway_doc() -> dict[str, Any]:
    def https(name: str, port: int, hostname: str | None, secret: str) -> dict[str, Any]:
        listener: dict[str, Any] = {"name": name, "port": port, "protocol": "HTTPS",
                                    "tls": {"certificateRefs": [{"name": secret}]}}
        if hostname:
            listener["hostname"] = hostname
        return listener

    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": NS},
            "spec": {"gatewayClassName": "portico",
                     "tls": {"frontend": {"default": {}, "perPort": [
                         {"port": 8443, "tls": {"validation": {
                             "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "client-ca"}]}}},
                         {"port": 9443, "tls": {"validation": {
                             "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "client-ca"}],
                             "mode": "AllowInsecureFallback"}}}]}},
                     "listeners": [
                         https("https-a", 443, "a.example.com", "cert-a"),
                         https("https-b", 443, "b.example.com", "cert-b"),
                         {"name": "pass", "port": 443, "protocol": "TLS", "hostname": "pass.example.com",
                          "tls": {"mode": "Passthrough"}},
                         https("mtls", 8443, None, "cert-a"),
                         https("fallback", 9443, None, "cert-a"),
                         {"name": "http", "port": 80, "protocol": "HTTP"},
                         {"name": "tcp", "port": 9000, "protocol": "TCP"},
                         {"name": "udp", "port": 5300, "protocol": "UDP"},
                     ]}}


# ---------------------------------------------------------------- fixture


class Setup:
    def __init__(self, root: Path) -> None:
        self.dir = root / "manifests"
        self.dir.mkdir()
        self.admin_port = free_port()
        self.address = ""
        self.gateway_ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.backend_ca = trustme.CA()
        self.other_ca = trustme.CA()

    def status(self, kind: str, name: str) -> dict[str, Any]:
        code, data = get("127.0.0.1", self.admin_port, f"/api/objects?kind={kind}&name={name}")
        assert code == 200
        return dict(data["items"][0].get("status") or {})

    def programmed(self) -> bool:
        conds = self.status("Gateway", "gw").get("conditions") or []
        return any(c["type"] == "Programmed" and c["status"] == "True" for c in conds)

    def client_context(self, cert: Any = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.gateway_ca.configure_trust(ctx)
        self.backend_ca.configure_trust(ctx)
        if cert is not None:
            cert.configure_cert(ctx)
        return ctx

    def https_get(self, port: int, sni: str, host: str, cert: Any = None) -> tuple[int, dict[str, Any]]:
        """GET / over TLS with this SNI (and certificate check) and this Host header."""
        conn = http.client.HTTPConnection(self.address, port + PORT_OFFSET, timeout=5)
        try:
            raw = socket.create_connection((self.address, port + PORT_OFFSET), timeout=5)
            conn.sock = self.client_context(cert).wrap_socket(raw, server_hostname=sni)
            conn.request("GET", "/", headers={"Host": host})
            resp = conn.getresponse()
            body = resp.read()
            return resp.status, json.loads(body) if resp.status == 200 else {}
        finally:
            conn.close()

    def served_certificate(self, port: int, sni: str) -> bytes:
        ctx = self.client_context()
        with socket.create_connection((self.address, port + PORT_OFFSET), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                return tls.getpeercert(binary_form=True) or b""


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(tmp_path)
    plain = http_backend("plain")
    backend_cert = s.backend_ca.issue_cert("backend.example.com", "pass.example.com")
    tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    backend_cert.configure_cert(tls_ctx)
    secure = http_backend("secure", tls_ctx)
    tcp, udp = tcp_echo(), udp_echo()
    docs: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        gateway_doc(),
        pem_secret("cert-b", s.gateway_ca.issue_cert("b.example.com")),
        ca_configmap("client-ca", s.client_ca),
        ca_configmap("backend-ca", s.backend_ca),
        ca_configmap("other-ca", s.other_ca),
        *service("plain", 8080, plain.server_address[1]),
        *service("secure", 443, secure.server_address[1]),
        *service("secure-refused", 443, secure.server_address[1]),
        *service("san-match", 443, secure.server_address[1]),
        *service("san-mismatch", 443, secure.server_address[1]),
        *service("tcp-echo", 3000, tcp.getsockname()[1]),
        *service("udp-echo", 53, udp.getsockname()[1], "UDP"),
        route("HTTPRoute", "a", "https-a", "plain", 8080),
        route("HTTPRoute", "b", "https-b", "plain", 8080),
        route("HTTPRoute", "mtls", "mtls", "plain", 8080),
        route("HTTPRoute", "fallback", "fallback", "plain", 8080),
        route("HTTPRoute", "verified", "http", "secure", 443, hostnames=["verified.example.com"]),
        route("HTTPRoute", "refused", "http", "secure-refused", 443, hostnames=["refused.example.com"]),
        route("HTTPRoute", "san-match", "http", "san-match", 443, hostnames=["san-match.example.com"]),
        route("HTTPRoute", "san-mismatch", "http", "san-mismatch", 443, hostnames=["san-mismatch.example.com"]),
        route("TLSRoute", "pass", "pass", "secure", 443, hostnames=["pass.example.com"]),
        route("TCPRoute", "tcp", "tcp", "tcp-echo", 3000),
        route("UDPRoute", "udp", "udp", "udp-echo", 53),
        backend_tls_policy("verified", "secure", "backend-ca", "backend.example.com"),
        backend_tls_policy("refused", "secure-refused", "other-ca", "backend.example.com"),
        # BackendTLSPolicySANValidation: with subjectAltNames the certificate must carry one of
        # them (the hostname is then only the SNI)
        backend_tls_policy("san-match", "san-match", "backend-ca", "sni-only.example.com",
                           sans=("nothing.example.com", "pass.example.com")),
        backend_tls_policy("san-mismatch", "san-mismatch", "backend-ca", "backend.example.com",
                           sans=("other.example.com",)),
    ]
    write_atomically(s.dir / "00-all.yaml", docs)
    # cert-a in a file of its own, which the rotation below rewrites (an object defined in
    # two files is a conflict, not "the later file wins")
    write_atomically(s.dir / "05-cert-a.yaml", [pem_secret("cert-a", s.gateway_ca.issue_cert("a.example.com"))])
    portico = start(["run", str(s.dir), "--admin-address", f"127.0.0.1:{s.admin_port}",
                     "--port-offset", str(PORT_OFFSET)], tmp_path / "portico.log")
    try:
        wait_for("/healthz", lambda: get("127.0.0.1", s.admin_port, "/healthz")[0] == 200)
        wait_for("Gateway programmed", s.programmed)
        s.address = s.status("Gateway", "gw")["addresses"][0]["value"]
        yield s
    finally:
        stop(portico)
        for server in (plain, secure):
            server.shutdown()
        tcp.close()
        udp.close()
        print((tmp_path / "portico.log").read_text()[-5000:])


# ---------------------------------------------------------------- the test


def test_tls_and_l4_routes(setup: Setup) -> None:
    s = setup
    # HTTPS by SNI; a Host of another listener over this SNI is misdirected (421)
    assert wait_for("https a", lambda: s.https_get(443, "a.example.com", "a.example.com")[0] == 200)
    assert s.https_get(443, "b.example.com", "b.example.com")[1]["backend"] == "plain"
    assert s.https_get(443, "a.example.com", "b.example.com")[0] == 421
    assert s.https_get(443, "a.example.com", "nobody.example.com")[0] == 404

    # passthrough: the backend terminates and reports the SNI it received
    status, body = s.https_get(443, "pass.example.com", "pass.example.com")
    assert (status, body["backend"], body["sni"], body["tls"]) == (200, "secure", "pass.example.com", True)

    # frontend mTLS on 8443: a client certificate of the trusted CA is accepted, others are not
    client = s.client_ca.issue_cert("client@example.com")
    assert s.https_get(8443, "a.example.com", "a.example.com", cert=client)[0] == 200
    for cert in (None, s.other_ca.issue_cert("intruder@example.com")):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            s.https_get(8443, "a.example.com", "a.example.com", cert=cert)

    # AllowInsecureFallback on 9443: trusted, untrusted and missing client certificates all
    # pass the handshake, and the Gateway says so (InsecureFrontendValidationMode, ConfigurationChanged)
    for cert in (client, None, s.other_ca.issue_cert("intruder@example.com")):
        assert s.https_get(9443, "a.example.com", "a.example.com", cert=cert)[0] == 200
    conds = {c["type"]: c for c in s.status("Gateway", "gw")["conditions"]}
    assert (conds["InsecureFrontendValidationMode"]["status"],
            conds["InsecureFrontendValidationMode"]["reason"]) == ("True", "ConfigurationChanged")

    # BackendTLSPolicy: the gateway verifies the backend (SNI = validation.hostname) ...
    status, body = get_host(s, "verified.example.com")
    assert (status, body.get("sni"), body.get("tls")) == (200, "backend.example.com", True)
    # ... and refuses a backend whose certificate its CA does not sign
    assert get_host(s, "refused.example.com")[0] == 503
    status, body = get_host(s, "san-match.example.com")
    assert (status, body.get("sni")) == (200, "sni-only.example.com")
    assert get_host(s, "san-mismatch.example.com")[0] == 503  # the certificate's names are not those listed

    # TCP echo and UDP datagrams through the gateway
    with socket.create_connection((s.address, 9000 + PORT_OFFSET), timeout=5) as conn:
        conn.sendall(b"ping")
        assert conn.recv(64) == b"echo:ping"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(b"datagram", (s.address, 5300 + PORT_OFFSET))
        assert sock.recvfrom(64)[0] == b"echo:datagram"

    # certificate rotation: a new Secret is served without restart
    before = s.served_certificate(443, "a.example.com")
    rotated = [pem_secret("cert-a", s.gateway_ca.issue_cert("a.example.com"))]
    write_atomically(s.dir / "05-cert-a.yaml", rotated)
    wait_for("rotated certificate", lambda: s.served_certificate(443, "a.example.com") != before, timeout=15)
    assert s.https_get(443, "a.example.com", "a.example.com")[0] == 200


def get_host(s: Setup, host: str) -> tuple[int, dict[str, Any]]:
    return get(s.address, 80 + PORT_OFFSET, "/", {"Host": host})
