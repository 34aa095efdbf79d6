"""A listener whose port is taken by another process: PortUnavailable, and the
Gateway's other listeners are programmed and serve (real Envoy)."""

from __future__ import annotations

import http.client
import json
import os
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


def one_gateway(tmp_path: Path, address: str, listeners: dict[str, int]) -> Path:
    """A manifests directory with the GatewayClass and Gateway gw on `address` (HTTP listeners)."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    write_atomically(manifests / "gw.yaml", [
        {"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "portico", "addresses": [{"type": "IPAddress", "value": address}],
                  "listeners": [{"name": n, "port": p, "protocol": "HTTP"} for n, p in listeners.items()]}},
    ])
    return manifests


def test_port_taken_by_another_process(tmp_path: Path) -> None:
    address, taken, free = "127.66.0.1", free_port(), free_port()
    blocker = socket.socket()
    blocker.bind((address, taken))
    blocker.listen()
    manifests = one_gateway(tmp_path, address, {"taken": taken, "free": free})
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


def envoy_children(pid: int) -> int:
    return len(envoy_pids(pid))


def envoy_pids(pid: int) -> list[int]:
    """Envoy processes started by `portico run` (each below it, under its shell)."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                continue
        if parent != pid:
            try:
                if Path(f"/proc/{parent}/comm").read_text().strip() == "envoy":
                    out.append(parent)
            except OSError:
                pass
    return out


def programmed(admin: int, name: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    conn.request("GET", f"/api/objects?kind=Gateway&name={name}")
    items = json.loads(conn.getresponse().read())["items"]
    conn.close()
    conds = (items[0].get("status") or {}).get("conditions", []) if items else []
    return next((c["status"] for c in conds if c["type"] == "Programmed"), "")


def test_envoy_per_gateway_isolates_a_rejected_listener(tmp_path: Path) -> None:
    """`--envoy-per-gateway`: each Gateway gets its own Envoy; one Envoy's NACK (a port
    it cannot bind) makes only that Gateway's listener PortUnavailable, the other
    Gateway stays Programmed and serves; a deleted Gateway's Envoy is stopped."""
    a, b, taken, port = "127.67.0.1", "127.67.0.2", free_port(), free_port()
    blocker = socket.socket()
    blocker.bind((a, taken))
    blocker.listen()
    manifests = tmp_path / "manifests"
    manifests.mkdir()

    def gateway(name: str, address: str, ports: list[int]) -> dict[str, Any]:
        return {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": name, "namespace": "default"},
                "spec": {"gatewayClassName": "portico", "addresses": [{"type": "IPAddress", "value": address}],
                         "listeners": [{"name": f"l{p}", "port": p, "protocol": "HTTP"} for p in ports]}}

    write_atomically(manifests / "class.yaml", [
        {"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}}])
    write_atomically(manifests / "b.yaml", [gateway("gw-b", b, [port])])
    admin = free_port()
    proc = start(["run", str(manifests), "--admin-address", f"127.0.0.1:{admin}", "--envoy-per-gateway"],
                 tmp_path / "portico.log")
    try:
        wait_for("gw-b programmed", lambda: programmed(admin, "gw-b") == "True")
        write_atomically(manifests / "gw.yaml", [gateway("gw", a, [taken, port])])
        wait_for("PortUnavailable on gw's taken port", lambda: listener_reasons(gateway_status(admin)) == {
            f"l{taken}": ("False", "PortUnavailable"), f"l{port}": ("True", "Accepted")})
        wait_for("gw programmed without it", lambda: programmed(admin, "gw") == "True")
        assert programmed(admin, "gw-b") == "True"
        assert envoy_children(proc.pid) == 2
        for address in (a, b):
            conn = http.client.HTTPConnection(address, port, timeout=5)
            conn.request("GET", "/")
            assert conn.getresponse().status == 404  # each served by its own Envoy
            conn.close()
        (manifests / "b.yaml").unlink()
        wait_for("gw-b's Envoy stopped", lambda: envoy_children(proc.pid) == 1)
    finally:
        stop(proc)
        blocker.close()


def listening_tcp_ports(pid: int) -> set[int]:
    """TCP ports process `pid` listens on (its socket inodes in /proc/net/tcp, LISTEN)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_control_channels_are_private(tmp_path: Path) -> None:
    """xDS (it carries private keys) and Envoy's admin are Unix sockets only this user can
    reach: `portico run` listens on no TCP port but its admin API, Envoy on none but the
    Gateway's listeners."""
    address, port = "127.68.0.1", free_port()
    manifests = one_gateway(tmp_path, address, {"http": port})
    admin = free_port()
    proc = start(["run", str(manifests), "--admin-address", f"127.0.0.1:{admin}"], tmp_path / "portico.log")
    try:
        wait_for("the Gateway programmed", lambda: any(
            c["type"] == "Programmed" and c["status"] == "True" for c in gateway_status(admin)["conditions"]))
        assert listening_tcp_ports(proc.pid) == {admin}
        [envoy] = envoy_pids(proc.pid)
        assert listening_tcp_ports(envoy) == {port}
        args = Path(f"/proc/{envoy}/cmdline").read_bytes().decode().split("\0")
        bootstrap = json.loads(Path(next(a for a in args if a.endswith("bootstrap.json"))).read_text())
        xds = bootstrap["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        xds_socket = Path(xds["endpoint"]["address"]["pipe"]["path"])
        assert xds_socket.stat().st_mode & 0o777 == 0o600 and xds_socket.parent.stat().st_mode & 0o777 == 0o700
        assert bootstrap["admin"]["address"]["pipe"]["mode"] == 0o600
    finally:
        stop(proc)
