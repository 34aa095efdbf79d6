"""ingress-nginx's semantics where they are easy to get wrong, served by real Envoy and
then converted (`portico convert`) and served again: the same requests, the same answers.

- proxy-ssl-secret/-verify/-name: an HTTPS backend with a private CA, verified
  against the Secret's ca.crt for proxy-ssl-name (200, not 503);
- ssl-passthrough: TLS on 443 reaches the backend undecrypted (its certificate);
- x-forwarded-prefix: the header, beside rewrite-target;
- from-to-www-redirect: www.<host> -> <host> and <host> -> www.<host>, 308;
- use-regex per host: another Ingress's Exact `/hoSTn` of that host matches
  `/hostname` (case-insensitive, prefix-anchored), not on another host;
- rewrite-target without groups makes its host's paths regular expressions.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from support import free_port, start, stop, wait_for
from test_ingress_annotations import NGINX, Client, backend, ingress, serve

from portico.ingress import convert

pytestmark = pytest.mark.timeout(180)


class TLSEcho(BaseHTTPRequestHandler):
    """Answers JSON: the backend's name, the SNI it was asked for, the path."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps({"pod": self.server.name, "sni": getattr(self.connection, "sni", None),  # type: ignore
                           "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def tls_backend(name: str, ca: trustme.CA, *names: str) -> ThreadingHTTPServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)

    def record(sock: Any, sni: str | None, _ctx: ssl.SSLContext) -> None:
        sock.sni = sni

    ctx.sni_callback = record
    server = ThreadingHTTPServer(("127.0.0.1", 0), TLSEcho)
    server.name = name  # type: ignore[attr-defined]
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def manifests(frontend: trustme.CA, backends: trustme.CA, web: int, secure: int, vault: int) -> list[dict[str, Any]]:
    cert = frontend.issue_cert("vault.example.com", "term.example.com")
    pem = b"".join(b.bytes() for b in cert.cert_chain_pems)
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "portico"},
         "spec": {"controller": "portico.dev/ingress-controller"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "backend-ca", "namespace": "shop"},
         "data": {"ca.crt": base64.b64encode(backends.cert_pem.bytes()).decode()}},
        # the certificate ingress-nginx would serve for the host if it terminated: it must not be seen
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": "shop-cert", "namespace": "shop"},
         "data": {"tls.crt": base64.b64encode(pem).decode(),
                  "tls.key": base64.b64encode(cert.private_key_pem.bytes()).decode()}},
        *backend("web", web), *backend("secure", secure), *backend("vault", vault),
        ingress("verified", {NGINX + "backend-protocol": "HTTPS", NGINX + "proxy-ssl-secret": "shop/backend-ca",
                             NGINX + "proxy-ssl-verify": "on", NGINX + "proxy-ssl-name": "secure.internal"},
                [("/", "Prefix", "secure")], host="secure.example.com"),
        ingress("vault", {NGINX + "ssl-passthrough": "true"}, [("/", "Prefix", "vault")], host="vault.example.com",
                tls=True),
        # TLS terminated for another host on the same port: chosen by SNI beside the passthrough
        ingress("term", {}, [("/", "Prefix", "web")], host="term.example.com", tls=True),
        ingress("www", {NGINX + "from-to-www-redirect": "true"}, [("/", "Prefix", "web")], host="store.example.com"),
        ingress("blog", {NGINX + "from-to-www-redirect": "true"}, [("/", "Prefix", "web")],
                host="www.blog.example.com"),
        ingress("regex", {NGINX + "use-regex": "true"}, [("/v[0-9]+/users", "ImplementationSpecific", "web")]),
        ingress("plain", {}, [("/hoSTn", "Exact", "web")]),
        ingress("plain-elsewhere", {}, [("/hoSTn", "Exact", "web")], host="other.example.com"),
        ingress("rewritten", {NGINX + "rewrite-target": "/", NGINX + "x-forwarded-prefix": "/app"},
                [("/app", "Prefix", "web")], host="app.example.com"),
    ]


def passthrough(c: Client, backends: trustme.CA) -> tuple[str | None, str | None]:
    """A TLS client of vault.example.com that trusts only the backends' CA: the backend answers."""
    ctx = ssl.create_default_context()
    backends.configure_trust(ctx)
    with socket.create_connection((c.ip, c.https_port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="vault.example.com") as tls:
        tls.sendall(b"GET /v HTTP/1.1\r\nHost: vault.example.com\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
    reply = json.loads(data.split(b"\r\n\r\n", 1)[1])
    return reply["pod"], reply["sni"]


def answers(c: Client, backends: trustme.CA) -> dict[str, Any]:
    out: dict[str, Any] = {}
    status, reply, _ = c.http("secure.example.com", "/x")
    out["proxy-ssl"] = (status, reply.get("pod"), reply.get("sni"))
    out["ssl-passthrough"] = passthrough(c, backends)
    status, reply, _ = c.https("term.example.com", "/t")
    out["terminated-beside"] = (status, reply.get("pod"))
    status, reply, _ = c.http("app.example.com", "/app/x?q=1")
    out["x-forwarded-prefix"] = (status, reply.get("path"), reply.get("headers", {}).get("X-Forwarded-Prefix"))
    status, _, headers = c.http("www.store.example.com", "/cart?x=1")
    out["to-bare"] = (status, headers.get("location"))
    status, _, headers = c.http("blog.example.com", "/post")
    out["to-www"] = (status, headers.get("location"))
    out["regex-host"] = [c.http("shop.example.com", p)[0] for p in ("/hostname", "/HOSTN", "/V2/users/7", "/x")]
    out["other-host"] = [c.http("other.example.com", p)[0] for p in ("/hostname", "/hoSTn")]
    status, reply, _ = c.http("app.example.com", "/APPLE")
    out["rewrite-regex"] = (status, reply.get("path"))
    return out


def test_ingress_nginx_semantics_served_and_converted(tmp_path: Path) -> None:
    frontend, backends = trustme.CA(), trustme.CA()
    web_port, admin, offset = free_port(), free_port(), free_port() - 80
    echo = start(["echo", "--port", str(web_port), "--name", "web-1", "--namespace", "shop"], tmp_path / "web.log")
    secure = tls_backend("secure-1", backends, "secure.internal")
    vault = tls_backend("vault-1", backends, "vault.example.com")
    docs = manifests(frontend, backends, web_port, secure.server_address[1], vault.server_address[1])
    try:
        proc, ip = serve(tmp_path, "served", docs, admin, offset, "Ingress")
        client = Client(ip, 80 + offset, 443 + offset, frontend)
        wait_for("the Ingress served", lambda: client.http("shop.example.com", "/hoSTn")[0] == 200, 30)
        wait_for("the backend TLS (its CA comes over SDS)", lambda: client.http("secure.example.com", "/")[0] == 200,
                 30)
        wait_for("the passthrough listener", lambda: _quiet(lambda: passthrough(client, backends)), 30)
        wait_for("the HTTPS listener", lambda: _quiet(lambda: client.https("term.example.com", "/")[0] == 200), 30)
        served = answers(client, backends)
        stop(proc)
        assert served == {
            "proxy-ssl": (200, "secure-1", "secure.internal"),
            "ssl-passthrough": ("vault-1", "vault.example.com"),
            "terminated-beside": (200, "web-1"),
            "x-forwarded-prefix": (200, "/?q=1", ["/app"]),
            "to-bare": (308, "http://store.example.com/cart?x=1"),
            "to-www": (308, "http://www.blog.example.com/post"),
            "regex-host": [200, 200, 200, 404],
            "other-host": [404, 200],
            "rewrite-regex": (200, "/"),
        }
        converted = convert(docs)
        (tmp_path / "converted.yaml").write_text(yaml.safe_dump_all(converted.objects))
        others = [d for d in docs if d["kind"] in ("Service", "EndpointSlice", "Secret")]
        proc, ip = serve(tmp_path, "converted", converted.objects + others, admin, offset, "Gateway")
        client = Client(ip, 80 + offset, 443 + offset, frontend)
        wait_for("the routes served", lambda: client.http("shop.example.com", "/hoSTn")[0] == 200, 30)
        wait_for("the backend TLS", lambda: client.http("secure.example.com", "/")[0] == 200, 30)
        wait_for("the passthrough listener", lambda: _quiet(lambda: passthrough(client, backends)), 30)
        wait_for("the HTTPS listener", lambda: _quiet(lambda: client.https("term.example.com", "/")[0] == 200), 30)
        assert answers(client, backends) == served
        stop(proc)
    finally:
        stop(echo)
        secure.shutdown()
        vault.shutdown()


def _quiet(check: Any) -> Any:
    try:
        return check()
    except (OSError, ValueError):
        return None

