"""Secret audit (issue 29 item 7): the SecurityPolicy fixtures (basic auth users, API keys,
a JWKS with a symmetric key, in Secrets; a policy whose htpasswd Envoy cannot check and one
whose clients share a key, so that statuses have something to say) served by real Envoy
under `portico run --log-level debug`, and translated in this process with every logger
at DEBUG: no secret value (as written, or base64 as a Secret's data holds it) appears in
the process's output, the admin API's objects, statuses, errors, config dumps (IR, xDS,
Envoy's own), describe and explain, nor in this process's log records."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support import free_port, start, stop, wait_for, write_atomically

from portico.standalone import offline

pytestmark = pytest.mark.timeout(180)
NS = "vault"
HOST = "audit.example.com"
PASSWORD = "pw-Zq8vX1-audit"
HASH = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
BCRYPT = "$2y$05$AuditAuditAuditAuditAuR8mVkq5kFxQ2lYbEo4Yd7bq1F0Wm8i"
API_KEYS = {"billing": "k-audit-billing-7Q2f", "reports": "k-audit-reports-P9x1"}
SHARED_KEY = "k-audit-shared-Lm3c"
HMAC = base64.urlsafe_b64encode(b"hmac-secret-audit-W4rT9s").decode().rstrip("=")
SECRETS = [HASH, BCRYPT, *API_KEYS.values(), SHARED_KEY, HMAC, PASSWORD]


def encodings(value: str) -> list[str]:
    return [value, base64.b64encode(value.encode()).decode()]


def leaks(text: str) -> list[str]:
    return [v for s in SECRETS for v in encodings(s) if v in text]


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def route(name: str) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [HOST],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": f"/{name}"}}],
                                "backendRefs": [{"name": "web", "port": 80}]}]}}


def policy(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "gateway.portico.dev/v1alpha1", "kind": "SecurityPolicy",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": name}],
                     **spec}}


def manifests(echo_port: int) -> list[dict[str, Any]]:
    jwks = json.dumps({"keys": [{"kty": "oct", "k": HMAC, "kid": "h1", "alg": "HS256"}]})
    return [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {
            "name": "gw", "namespace": NS, "annotations": {"gateway.portico.dev/public": "true"}},  # (/api/exposure)
         "spec": {"gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
         "spec": {"ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web", "namespace": NS, "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}],
         "ports": [{"name": "http", "port": echo_port, "protocol": "TCP"}]},
        secret("users", {".htpasswd": f"alice:{{SHA}}{HASH}\n"}),
        secret("bcrypt-users", {".htpasswd": f"bob:{BCRYPT}\n"}),
        secret("keys", API_KEYS),
        secret("shared-keys", {"one": SHARED_KEY, "two": SHARED_KEY}),
        secret("jwks", {"jwks": jwks}),
        route("basic"), policy("basic", basicAuth={"users": {"name": "users"}}),
        route("bcrypt"), policy("bcrypt", basicAuth={"users": {"name": "bcrypt-users"}}),
        route("keys"), policy("keys", apiKeyAuth={"credentialRefs": [{"name": "keys"}]}),
        route("shared"), policy("shared", apiKeyAuth={"credentialRefs": [{"name": "shared-keys"}]}),
        route("jwt"), policy("jwt", jwt={"providers": [{"name": "hs", "issuer": "https://audit.example",
                                                         "localJWKS": {"type": "ValueRef", "valueRef": {
                                                             "kind": "Secret", "name": "jwks"}}}]}),
    ]


def status(ip: str, port: int, path: str, headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection(ip, port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": HOST, **(headers or {})})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_no_secret_in_logs_api_dumps_or_statuses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    echo_port, admin, offset = free_port(), free_port(), free_port() - 80
    docs = manifests(echo_port)
    (tmp_path / "m").mkdir()
    write_atomically(tmp_path / "m" / "all.yaml", docs)
    echo = start(["echo", "--port", str(echo_port), "--name", "web"], tmp_path / "echo.log")
    proc = start(["run", str(tmp_path / "m"), "--log-level", "debug", "--admin-address", f"127.0.0.1:{admin}",
                  "--port-offset", str(offset), "--state-dir", str(tmp_path / "state")], tmp_path / "portico.log")
    base = f"http://127.0.0.1:{admin}"

    def get(path: str) -> str:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return str(r.read().decode())

    def address() -> str | None:
        for item in json.loads(get("/api/objects?kind=Gateway"))["items"]:
            found = (item.get("status") or {}).get("addresses")
            if found:
                return str(found[0]["value"])
        return None

    try:
        wait_for("echo", lambda: socket.create_connection(("127.0.0.1", echo_port), 1).close() or True, 15)
        ip = wait_for("the Gateway's address", address, 30)
        auth = {"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}
        wait_for("basic auth served", lambda: status(ip, 80 + offset, "/basic", auth) == 200, 30)
        # the secrets are in use: Envoy has them
        assert status(ip, 80 + offset, "/keys", {"x-api-key": API_KEYS["billing"]}) == 200
        assert status(ip, 80 + offset, "/keys", {"x-api-key": "wrong"}) == 401
        assert status(ip, 80 + offset, "/bcrypt", auth) == 500  # a hash Envoy cannot check: fail closed
        assert status(ip, 80 + offset, "/shared", {"x-api-key": SHARED_KEY}) == 500
        assert status(ip, 80 + offset, "/jwt") == 401
        objects = get("/api/objects")
        policies = {i["metadata"]["name"]: i for i in json.loads(get("/api/objects?kind=SecurityPolicy"))["items"]}
        messages = json.dumps([p.get("status") for p in policies.values()])
        assert "bcrypt" in messages and "share a key" in messages  # the statuses do say what is wrong
        seen = {
            "objects": objects, "errors": get("/api/errors"), "ir": get("/api/config_dump?format=ir"),
            "xds": get("/api/config_dump?format=xds"), "envoy": get("/api/config_dump?format=envoy"),
            "topology": get("/api/topology"), "exposure": get("/api/exposure"),
            "describe": "".join(get("/api/describe?" + urllib.parse.urlencode(
                {"kind": kind, "namespace": NS, "name": name})) for kind, name in (
                ("SecurityPolicy", "keys"), ("SecurityPolicy", "basic"), ("SecurityPolicy", "jwt"),
                ("HTTPRoute", "keys"), ("Secret", "keys"))),
            "explain": get("/api/explain?" + urllib.parse.urlencode({"port": 80 + offset, "host": HOST,
                                                                     "path": "/keys"})),
        }
        assert "<redacted>" in seen["xds"] and "<redacted>" in seen["envoy"]
    finally:
        stop(proc)
        stop(echo)
    seen["process output"] = (tmp_path / "portico.log").read_text()
    assert "DEBUG" in seen["process output"] or "debug" in seen["process output"]
    # this process: translation and the xDS build with every logger at DEBUG
    with caplog.at_level(logging.DEBUG):
        dumped = offline([str(tmp_path / "m")]).diagnostics
        seen["offline dumps"] = json.dumps([dumped.config_dump(fmt="ir"), dumped.config_dump(fmt="xds")])
    seen["log records"] = caplog.text + "".join(str(r.args) for r in caplog.records)
    found = {where: leaks(text) for where, text in seen.items() if leaks(text)}
    assert found == {}
