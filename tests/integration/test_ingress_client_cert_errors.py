"""auth-tls-error-page, and auth-tls-verify-client's answers, over real TLS: served by real
Envoy from the Ingress objects, then converted and served again, the same answers.

As ingress-nginx: with verify-client `on`, a client without a certificate (nginx's 496) or
with one of another CA (495) is sent (302) to auth-tls-error-page; with `optional`, a client
without a certificate is served and one with a failed certificate sent there, or answered
400 without an error page. A client with a valid certificate is served.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from support import free_port, start, stop, wait_for
from test_ingress_annotations import NGINX, ingress
from test_ingress_client_certs import served_and_converted, tls_docs

pytestmark = pytest.mark.timeout(180)
PAGE = "https://errors.example.com/client-certificate?from=shop"
HOSTS = {"required.example.com": "on", "optional.example.com": "optional", "plain-optional.example.com": "optional"}


def manifests(server_ca: trustme.CA, client_ca: trustme.CA, web: int) -> list[dict[str, Any]]:
    docs = tls_docs(server_ca, client_ca, list(HOSTS), web)
    for host, verify in HOSTS.items():
        annotations = {NGINX + "auth-tls-secret": "shop/client-ca", NGINX + "auth-tls-verify-client": verify}
        if not host.startswith("plain-"):
            annotations[NGINX + "auth-tls-error-page"] = PAGE
        docs.append(ingress(host.split(".")[0], annotations, [("/", "Prefix", "web")], host=host, tls=True))
    return docs


def get(ip: str, port: int, host: str, server_ca: trustme.CA, client: trustme.LeafCert | None) -> Any:
    """(status, the pod that answered or the Location), or "refused" when the handshake fails."""
    ctx = ssl.create_default_context()
    server_ca.configure_trust(ctx)
    if client is not None:
        client.configure_cert(ctx)
    try:
        with socket.create_connection((ip, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
            conn = http.client.HTTPConnection(host)
            conn.sock = s
            conn.request("GET", "/account?x=1", headers={"Host": host})
            resp = conn.getresponse()
            body = resp.read()
            if resp.status == 200:
                reply = json.loads(body)
                verify = {k.lower(): v for k, v in reply["headers"].items()}.get("ssl-client-verify")
                return 200, reply["pod"], verify
            return resp.status, resp.getheader("location")
    except (ssl.SSLError, ConnectionError, http.client.HTTPException):
        return "refused"


def answers(ip: str, port: int, server_ca: trustme.CA, good: trustme.LeafCert, bad: trustme.LeafCert) -> Any:
    return {host: {"valid": get(ip, port, host, server_ca, good), "none": get(ip, port, host, server_ca, None),
                   "other-ca": get(ip, port, host, server_ca, bad)} for host in HOSTS}


def test_client_certificate_errors_served_and_converted(tmp_path: Path) -> None:
    server_ca, client_ca, other_ca = trustme.CA(), trustme.CA(), trustme.CA()
    good, bad = client_ca.issue_cert("alice@example.com"), other_ca.issue_cert("mallory@example.com")
    web_port, admin, offset = free_port(), free_port(), free_port() - 80
    echo = start(["echo", "--port", str(web_port), "--name", "web-1", "--namespace", "shop"], tmp_path / "web.log")
    docs = manifests(server_ca, client_ca, web_port)
    try:
        runs = served_and_converted(tmp_path, docs, admin, offset)
        for run, ip in runs:
            wait_for("the HTTPS listener",
                     lambda a=ip: get(a, 443 + offset, "optional.example.com", server_ca, good)[0] == 200, 30)
            assert answers(ip, 443 + offset, server_ca, good, bad) == {
                "required.example.com": {"valid": (200, "web-1", ["SUCCESS"]), "none": (302, PAGE),
                                         "other-ca": (302, PAGE)},
                "optional.example.com": {"valid": (200, "web-1", None), "none": (200, "web-1", None),
                                         "other-ca": (302, PAGE)},
                "plain-optional.example.com": {"valid": (200, "web-1", None), "none": (200, "web-1", None),
                                               "other-ca": (400, None)},
            }, run
    finally:
        runs.close()  # Portico stopped even when an assertion failed in the loop
        stop(echo)
