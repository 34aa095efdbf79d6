"""Ingress with ingress-nginx annotations, served by real Envoy: TLS with the HTTP->HTTPS
redirect, a canary by weight and by header, rewrite-target with capture groups, CORS,
limit-rps (503, as ingress-nginx), whitelist-source-range (403) and proxy-body-size (413). Then the round
trip: the same requests to the objects `portico convert` makes of these Ingresses,
served instead, answer the same way."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from support import free_port, start, stop, wait_for, write_atomically

from portico.ingress import convert

pytestmark = pytest.mark.timeout(180)
NGINX = "nginx.ingress.kubernetes.io/"


def backend(name: str, port: int) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "shop"},
         "spec": {"ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": name, "namespace": "shop", "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}],
         "ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    ]


def ingress(name: str, annotations: dict[str, str], paths: list[tuple[str, str, str]],
            host: str = "shop.example.com", tls: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"ingressClassName": "portico", "rules": [{"host": host, "http": {"paths": [
        {"path": p, "pathType": t, "backend": {"service": {"name": svc, "port": {"number": 80}}}}
        for p, t, svc in paths]}}]}
    if tls:
        spec["tls"] = [{"hosts": [host], "secretName": "shop-cert"}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "shop", "annotations": annotations}, "spec": spec}


def manifests(ca: trustme.CA, web: int, canary: int) -> list[dict[str, Any]]:
    cert = ca.issue_cert("shop.example.com")
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": "shop-cert", "namespace": "shop"},
              "data": {"tls.crt": base64.b64encode(b"".join(b.bytes() for b in cert.cert_chain_pems)).decode(),
                       "tls.key": base64.b64encode(cert.private_key_pem.bytes()).decode()}}
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "portico"},
         "spec": {"controller": "portico.dev/ingress-controller"}},
        secret, *backend("web", web), *backend("canary", canary),
        ingress("shop", {NGINX + "enable-cors": "true", NGINX + "cors-allow-origin": "https://app.example.com"},
                [("/", "Prefix", "web")], tls=True),
        ingress("shop-canary", {NGINX + "canary": "true", NGINX + "canary-by-header": "x-canary"},
                [("/", "Prefix", "canary")], tls=True),
        ingress("api", {NGINX + "rewrite-target": "/v2/$2", NGINX + "use-regex": "true", NGINX + "limit-rps": "2",
                        NGINX + "proxy-body-size": "1k"},
                [("/api(/|$)(.*)", "ImplementationSpecific", "web")], host="api.example.com"),
        ingress("beta", {}, [("/", "Prefix", "web")], host="beta.example.com"),
        ingress("beta-canary", {NGINX + "canary": "true", NGINX + "canary-weight": "100"},
                [("/", "Prefix", "canary")], host="beta.example.com"),
        ingress("office", {NGINX + "whitelist-source-range": "10.0.0.0/8"}, [("/", "Prefix", "web")],
                host="office.example.com"),
    ]


class Client:
    def __init__(self, ip: str, http_port: int, https_port: int, ca: trustme.CA) -> None:
        self.ip, self.http_port, self.https_port = ip, http_port, https_port
        self.tls = ssl.create_default_context()
        ca.configure_trust(self.tls)

    def http(self, host: str, path: str, method: str = "GET", body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
        return self._send(http.client.HTTPConnection(self.ip, self.http_port, timeout=5), host, path, method, body,
                          headers)

    def https(self, host: str, path: str, headers: dict[str, str] | None = None
              ) -> tuple[int, dict[str, Any], dict[str, str]]:
        conn = http.client.HTTPSConnection(host, self.https_port, timeout=5, context=self.tls)
        conn.sock = self.tls.wrap_socket(socket.create_connection((self.ip, self.https_port), timeout=5),
                                         server_hostname=host)
        return self._send(conn, host, path, "GET", None, headers)

    @staticmethod
    def _send(conn: http.client.HTTPConnection, host: str, path: str, method: str, body: bytes | None,
              headers: dict[str, str] | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
            resp = conn.getresponse()
            data = resp.read()
            reply = json.loads(data) if resp.status == 200 and data.startswith(b"{") else {}
            return resp.status, reply, {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()


def answers(c: Client) -> dict[str, Any]:
    """What a user checks by traffic, in a form two runs can compare."""
    out: dict[str, Any] = {}
    status, _, headers = c.http("shop.example.com", "/cart?x=1")
    out["ssl-redirect"] = (status, headers.get("location"))
    status, reply, headers = c.https("shop.example.com", "/cart", {"Origin": "https://app.example.com"})
    out["tls"] = (status, reply.get("pod"), headers.get("access-control-allow-origin"))
    out["canary-header"] = c.https("shop.example.com", "/cart", {"x-canary": "always"})[1].get("pod")
    out["canary-weight"] = sorted({c.http("beta.example.com", "/")[1].get("pod") for _ in range(5)})
    status, reply, _ = c.http("api.example.com", "/api/items/7?full=1")
    out["rewrite"] = (status, reply.get("path"))
    out["body-size"] = c.http("api.example.com", "/api/upload", "POST", b"x" * 4096)[0]
    out["rate-limit"] = sorted({c.http("api.example.com", "/api/x")[0] for _ in range(30)})
    out["source-range"] = c.http("office.example.com", "/")[0]
    return out


def https_up(client: Any) -> bool:
    try:
        client.https("shop.example.com", "/")
    except OSError:
        return False
    return True


def serve(tmp_path: Path, name: str, docs: list[dict[str, Any]], admin: int, offset: int, kind: str) -> Any:
    (tmp_path / name).mkdir()
    write_atomically(tmp_path / name / "all.yaml", docs)
    proc = start(["run", str(tmp_path / name), "--admin-address", f"127.0.0.1:{admin}", "--port-offset",
                  str(offset), "--state-dir", str(tmp_path / f"state-{name}")], tmp_path / f"{name}.log")

    def address() -> str | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/objects?kind={kind}", timeout=2) as r:
            items = json.load(r)["items"]
        for item in items:
            status = item.get("status") or {}
            found = status.get("loadBalancer", {}).get("ingress") or status.get("addresses")
            if found:
                return str(found[0].get("ip") or found[0].get("value"))
        return None

    return proc, wait_for(f"the {kind}'s address", address, 30)


def test_annotations_served_and_converted_answer_alike(tmp_path: Path) -> None:
    ca = trustme.CA()
    web_port, canary_port, admin, offset = free_port(), free_port(), free_port(), free_port() - 80
    echoes = [start(["echo", "--port", str(p), "--name", n, "--namespace", "shop"], tmp_path / f"{n}.log")
              for p, n in ((web_port, "web-1"), (canary_port, "canary-1"))]
    docs = manifests(ca, web_port, canary_port)
    try:
        proc, ip = serve(tmp_path, "served", docs, admin, offset, "Ingress")
        client = Client(ip, 80 + offset, 443 + offset, ca)
        wait_for("the Ingress served", lambda: client.http("beta.example.com", "/")[0] == 200, 30)
        wait_for("the HTTPS listener (its certificate comes over SDS)", lambda: https_up(client), 30)
        served = answers(client)
        stop(proc)
        assert served == {
            "ssl-redirect": (308, "https://shop.example.com/cart?x=1"),
            "tls": (200, "web-1", "https://app.example.com"),
            "canary-header": "canary-1",
            "canary-weight": ["canary-1"],
            "rewrite": (200, "/v2/items/7?full=1"),
            "body-size": 413,
            "rate-limit": [200, 503],  # ingress-nginx: limit-req-status-code 503
            "source-range": 403,
        }
        converted = convert(docs)
        (tmp_path / "converted.yaml").write_text(yaml.safe_dump_all(converted.objects))
        others = [d for d in docs if d["kind"] in ("Service", "EndpointSlice", "Secret")]
        proc, ip = serve(tmp_path, "converted", converted.objects + others, admin, offset, "Gateway")
        client = Client(ip, 80 + offset, 443 + offset, ca)
        wait_for("the routes served", lambda: client.http("beta.example.com", "/")[0] == 200, 30)
        wait_for("the HTTPS listener (its certificate comes over SDS)", lambda: https_up(client), 30)
        assert answers(client) == served
        stop(proc)
    finally:
        for echo in echoes:
            stop(echo)
