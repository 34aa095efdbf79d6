"""auth-tls-secret / auth-tls-verify-client: client certificates verified against the
Secret's ca.crt, served by real Envoy from the Ingress, then converted and served again
alike: a client with a certificate of that CA is answered, one without (or with
another CA's) is refused; the backend gets the certificate (auth-tls-pass-certificate-to-upstream)
and its subject and issuer as ingress-nginx's ssl-client-* headers, never the client's own."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from cryptography import x509
from support import free_port, start, stop, wait_for
from test_ingress_annotations import NGINX, backend, ingress, serve

from portico.ingress import convert

pytestmark = pytest.mark.timeout(180)
HOST = "mtls.example.com"


def tls_docs(server_ca: trustme.CA, client_ca: trustme.CA, hosts: list[str], web: int) -> list[dict[str, Any]]:
    """What every client-certificate Ingress here stands on: the IngressClass, the server certificate
    for `hosts`, the client CA's Secret and the `web` backend."""
    cert = server_ca.issue_cert(*hosts)
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
    ]


def served_and_converted(tmp_path: Path, docs: list[dict[str, Any]], admin: int,
                         offset: int) -> Iterator[tuple[str, str]]:
    """Serve `docs` as Ingress objects, then converted to Gateway API objects: (run, address) each,
    Portico stopped when the caller asks for the next."""
    for run in ("served", "converted"):
        if run == "served":
            proc, ip = serve(tmp_path, run, docs, admin, offset, "Ingress")
        else:
            converted = convert(docs)
            (tmp_path / "converted.yaml").write_text(yaml.safe_dump_all(converted.objects))
            others = [d for d in docs if d["kind"] in ("Service", "EndpointSlice", "Secret")]
            proc, ip = serve(tmp_path, run, converted.objects + others, admin, offset, "Gateway")
        try:
            yield run, ip
        finally:
            stop(proc)


def manifests(server_ca: trustme.CA, client_ca: trustme.CA, web: int) -> list[dict[str, Any]]:
    return [
        *tls_docs(server_ca, client_ca, [HOST], web),
        ingress("mtls", {NGINX + "auth-tls-secret": "shop/client-ca", NGINX + "auth-tls-verify-client": "on",
                         NGINX + "auth-tls-pass-certificate-to-upstream": "true"},
                [("/", "Prefix", "web")], host=HOST, tls=True),
    ]


def request(ip: str, port: int, server_ca: trustme.CA, client: trustme.LeafCert | None,
            headers: dict[str, str] | None = None) -> Any:
    """(status, the echo's reply), or "refused" when the TLS handshake (or the answer) fails."""
    ctx = ssl.create_default_context()
    server_ca.configure_trust(ctx)
    if client is not None:
        client.configure_cert(ctx)
    try:
        with socket.create_connection((ip, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=HOST) as s:
            conn = http.client.HTTPConnection(HOST)
            conn.sock = s
            conn.request("GET", "/", headers={"Host": HOST, **(headers or {})})
            resp = conn.getresponse()
            return resp.status, (json.loads(resp.read()) if resp.status == 200 else {})
    except (ssl.SSLError, ConnectionError, http.client.HTTPException):
        return "refused"


def get(ip: str, port: int, server_ca: trustme.CA, client: trustme.LeafCert | None) -> Any:
    """The pod that answered, or its status, or "refused"."""
    answer = request(ip, port, server_ca, client)
    return answer if answer == "refused" else answer[1]["pod"] if answer[0] == 200 else answer[0]


def client_headers(ip: str, port: int, server_ca: trustme.CA, client: trustme.LeafCert) -> dict[str, Any]:
    """What the backend gets of the client's certificate (ingress-nginx's ssl-client-* headers),
    the client's own forged ones sent too."""
    forged = {"ssl-client-cert": "forged", "ssl-client-verify": "SUCCESS", "ssl-client-subject-dn": "CN=admin"}
    _, reply = request(ip, port, server_ca, client, forged)
    seen = {k.lower(): v for k, v in reply["headers"].items()}
    return {name: seen.get(name) for name in ("ssl-client-cert", "ssl-client-verify", "ssl-client-subject-dn",
                                              "ssl-client-issuer-dn")}


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
        runs = served_and_converted(tmp_path, docs, admin, offset)
        for run, ip in runs:
            wait_for("the HTTPS listener", lambda a=ip: get(a, 443 + offset, server_ca, good) == "web-1", 30)
            assert answers(ip, 443 + offset, server_ca, good, bad) == {
                "with": "web-1", "without": "refused", "other-ca": "refused"}, run
            seen = client_headers(ip, 443 + offset, server_ca, good)
            # the URL-encoded PEM ($ssl_client_escaped_cert), the client's forged headers replaced
            assert urllib.parse.unquote(seen.pop("ssl-client-cert")[0]) == good.cert_chain_pems[0].bytes().decode()
            subject = x509.load_pem_x509_certificate(good.cert_chain_pems[0].bytes()).subject.rfc4514_string()
            issuer = x509.load_pem_x509_certificate(client_ca.cert_pem.bytes()).subject.rfc4514_string()
            assert seen == {"ssl-client-verify": ["SUCCESS"], "ssl-client-subject-dn": [subject],
                            "ssl-client-issuer-dn": [issuer]}, run
    finally:
        runs.close()  # Portico stopped even when an assertion failed in the loop
        stop(echo)
