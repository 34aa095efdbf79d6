"""A listener whose port is taken by another process: PortUnavailable, and the
Gateway's other listeners are programmed and serve (real Envoy)."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from support import free_port, start, stop, wait_for, write_atomically

pytestmark = pytest.mark.timeout(120)
GW = "gateway.networking.k8s.io/v1"


def gateway_status(admin: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    conn.request("GET", "/api/objects?kind=Gateway&name=gw")
    [item] = json.loads(conn.getresponse().read())["items"]
    conn.close()
    return dict(item.get("status") or {})


def listener_reasons(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {ls["name"]: next((c["status"], c["reason"]) for c in ls["conditions"] if c["type"] == "Accepted")
            for ls in status.get("listeners", [])}


def test_port_taken_by_another_process(tmp_path: Path) -> None:
    address, taken, free = "127.66.0.1", free_port(), free_port()
    blocker = socket.socket()
    blocker.bind((address, taken))
    blocker.listen()
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    write_atomically(manifests / "gw.yaml", [
        {"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "portico", "addresses": [{"type": "IPAddress", "value": address}],
                  "listeners": [{"name": "taken", "port": taken, "protocol": "HTTP"},
                                {"name": "free", "port": free, "protocol": "HTTP"}]}},
    ])
    admin = free_port()
    proc = start(["run", str(manifests), "--admin-address", f"127.0.0.1:{admin}"], tmp_path / "portico.log")
    try:
        wait_for("PortUnavailable on the taken port", lambda: listener_reasons(gateway_status(admin)) == {
            "taken": ("False", "PortUnavailable"), "free": ("True", "Accepted")})
        wait_for("the Gateway programmed", lambda: any(
            c["type"] == "Programmed" and c["status"] == "True" for c in gateway_status(admin)["conditions"]))
        conn = http.client.HTTPConnection(address, free, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().status == 404  # served by Envoy: no route attached
        conn.close()
    finally:
        stop(proc)
        blocker.close()
        print((tmp_path / "portico.log").read_text()[-3000:])
