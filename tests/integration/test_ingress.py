"""`portico run` serving an Ingress with real Envoy: an IngressClass of Portico's, host
and prefix rules, status.loadBalancer with the address that answers."""

from __future__ import annotations

import http.client
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support import free_port, start, stop, wait_for, write_atomically

pytestmark = pytest.mark.timeout(120)


def manifests(echo_port: int) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "portico"},
         "spec": {"controller": "portico.dev/ingress-controller"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
         "ports": [{"name": "http", "port": echo_port, "protocol": "TCP"}]},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "shop", "namespace": "shop"},
         "spec": {"ingressClassName": "portico", "rules": [{"host": "shop.example.com", "http": {"paths": [
             {"path": "/cart", "pathType": "Prefix",
              "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}]}},
    ]


def get(address: str, port: int, path: str, host: str) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, (json.loads(body) if resp.status == 200 else {})
    finally:
        conn.close()


def test_an_ingress_is_served(tmp_path: Path) -> None:
    echo_port, admin, offset = free_port(), free_port(), free_port() - 80
    echo = start(["echo", "--port", str(echo_port), "--name", "web-1", "--namespace", "shop"], tmp_path / "echo.log")
    (tmp_path / "m").mkdir()
    write_atomically(tmp_path / "m" / "all.yaml", manifests(echo_port))
    portico = start(["run", str(tmp_path / "m"), "--admin-address", f"127.0.0.1:{admin}", "--port-offset",
                     str(offset), "--state-dir", str(tmp_path / "state")], tmp_path / "portico.log")
    try:
        def address() -> str | None:
            url = f"http://127.0.0.1:{admin}/api/objects?kind=Ingress"
            with urllib.request.urlopen(url, timeout=2) as r:
                items = json.load(r)["items"]
            lb = (items[0].get("status") or {}).get("loadBalancer", {}).get("ingress") if items else None
            return lb[0]["ip"] if lb else None

        ip = wait_for("the Ingress's address", lambda: _quiet(address), 30)
        status, body = wait_for("the Ingress served", lambda: (lambda r: r if r[0] == 200 else None)(
            _quiet(lambda: get(ip, 80 + offset, "/cart/items", "shop.example.com")) or (0, {})), 30)
        assert body["pod"] == "web-1" and body["path"] == "/cart/items"
        assert get(ip, 80 + offset, "/cartoon", "shop.example.com")[0] == 404  # Prefix: whole path elements
        assert get(ip, 80 + offset, "/cart", "other.example.com")[0] == 404
    finally:
        stop(portico)
        stop(echo)


def _quiet(check: Any) -> Any:
    try:
        return check()
    except OSError:
        return None
