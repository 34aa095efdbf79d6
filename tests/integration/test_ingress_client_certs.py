"""auth-tls-secret / auth-tls-verify-client: client certificates verified against the
Secret's ca.crt, served by real Envoy from the Ingress, then converted and served again
alike: a client with a certificate of that CA is answered, one without (or with
another CA's) is refused."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from support import free_port, start, stop, wait_for
from test_ingress_annotations import NGINX, backend, ingress, serve

from portico.ingress import convert

pytestmark = pytest.mark.timeout(180)
HOST = "mtls.example.com"


def manifests(server_ca: trustme.CA, client_ca: trustme.CA, web: int) -> list[dict[str, Any]]:
    cert = server_ca.issue_cert(HOST)
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "portico"},
         "spec": {"controller": "portico.dev/ingress-controller"}},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": "shop-cert", "namespace": "shop"},
         "data": {"tls.crt": base64.b64encode(b"".join(b.bytes() for b in cert.cert_chain_pems)).decode(),
                  "tls.key": base64.b64encode(cert.private_key_pem.bytes()).decode()}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "client-ca", "namespace": "shop"},
         "data": {"ca.crt": base64.b64encode(client_ca.cert_pem.bytes()).decode()}},
        *backend("web", web),
        ingress("mtls", {NGINX + "auth-tls-secret": "shop/client-ca", NGINX + "auth-tls-verify-client": "on"},
                [("/", "Prefix", "web")], host=HOST, tls=True),
    ]


def get(ip: str, port: int, server_ca: trustme.CA, client: trustme.LeafCert | None) -> Any:
    """The pod that answered, or "refused" when the TLS handshake (or the answer) fails."""
    ctx = ssl.create_default_context()
    server_ca.configure_trust(ctx)
    if client is not None:
        client.configure_cert(ctx)
    try:
        with socket.create_connection((ip, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=HOST) as s:
            conn = http.client.HTTPConnection(HOST)
            conn.sock = s
            conn.request("GET", "/", headers={"Host": HOST})
            resp = conn.getresponse()
            return json.loads(resp.read())["pod"] if resp.status == 200 else resp.status
    except (ssl.SSLError, ConnectionError, http.client.HTTPException):
        return "refused"


def answers(ip: str, port: int, server_ca: trustme.CA, good: trustme.LeafCert, bad: trustme.LeafCert) -> Any:
    return {"with": get(ip, port, server_ca, good), "without": get(ip, port, server_ca, None),
            "other-ca": get(ip, port, server_ca, bad)}


def test_client_certificates_served_and_converted(tmp_path: Path) -> None:
    server_ca, client_ca, other_ca = trustme.CA(), trustme.CA(), trustme.CA()
    good, bad = client_ca.issue_cert("alice@example.com"), other_ca.issue_cert("mallory@example.com")
    web_port, admin, offset = free_port(), free_port(), free_port() - 80
    echo = start(["echo", "--port", str(web_port), "--name", "web-1", "--namespace", "shop"], tmp_path / "web.log")
    docs = manifests(server_ca, client_ca, web_port)
    try:
        for run in ("served", "converted"):
            if run == "served":
                proc, ip = serve(tmp_path, run, docs, admin, offset, "Ingress")
            else:
                converted = convert(docs)
                (tmp_path / "converted.yaml").write_text(yaml.safe_dump_all(converted.objects))
                others = [d for d in docs if d["kind"] in ("Service", "EndpointSlice", "Secret")]
                proc, ip = serve(tmp_path, run, converted.objects + others, admin, offset, "Gateway")
            wait_for("the HTTPS listener", lambda a=ip: get(a, 443 + offset, server_ca, good) == "web-1", 30)
            assert answers(ip, 443 + offset, server_ca, good, bad) == {
                "with": "web-1", "without": "refused", "other-ca": "refused"}, run
            stop(proc)
    finally:
        stop(echo)
