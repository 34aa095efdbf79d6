"""Portico's traffic policies, by real traffic through real Envoy (`portico run`):
consistent hashing, least request, active health checks, failover with outlier
detection and retries, circuit breakers, a Gateway's shared rate limit, the client
address from X-Forwarded-For feeding a rate limit, the TLS minimum version, and an
XBackend reached by hostname. One gateway serves them all; each test writes its own
manifests and waits for the behaviour it checks."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent
from support import free_port, gateway_address, start, stop, wait_for, write_atomically

pytestmark = pytest.mark.timeout(240)
NS = "shop"
POLICY_API = "gateway.portico.dev/v1alpha1"


@dataclass
class Gateway:
    dir: Path
    ip: str
    http_port: int
    https_port: int
    ca: trustme.CA

    def apply(self, docs: list[dict[str, Any]]) -> None:
        write_atomically(self.dir / "test.yaml", docs)

    def get(self, path: str, host: str = "app.example.com", headers: dict[str, str] | None = None,
            timeout: float = 10) -> tuple[int, dict[str, Any], dict[str, str]]:
        conn = http.client.HTTPConnection(self.ip, self.http_port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host, **(headers or {})})
            resp = conn.getresponse()
            data = resp.read()
            body = json.loads(data) if data.startswith(b"{") else {}
            return resp.status, body, {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def pod(self, path: str = "/", **kw: Any) -> str | None:
        status, body, _ = self.get(path, **kw)
        return body.get("pod") if status == 200 else f"status {status}"


def base(gw_tls: bool = False) -> list[dict[str, Any]]:
    listeners: list[dict[str, Any]] = [{"name": "http", "port": 80, "protocol": "HTTP"}]
    if gw_tls:
        listeners.append({"name": "https", "port": 443, "protocol": "HTTPS",
                          "tls": {"certificateRefs": [{"name": "cert"}]}})
    return [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller",
                  "parametersRef": {"group": "gateway.portico.dev", "kind": "PorticoProxy", "name": "proxy",
                                    "namespace": NS}}},
        # the platform owner lets this namespace's Backends and XBackends name loopback and the
        # sockets in the temp directory (the tests' backends run there)
        {"apiVersion": POLICY_API, "kind": "PorticoProxy", "metadata": {"name": "proxy", "namespace": NS},
         "spec": {"localBackends": [{"namespaces": {"from": "Selector", "selector": {"matchLabels": {
             "kubernetes.io/metadata.name": NS}}}, "cidrs": ["127.0.0.0/8", "::1/128"],
             "unixSockets": [f"{tempfile.gettempdir()}/"]}]}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
         "spec": {"gatewayClassName": "portico", "listeners": listeners}},
    ]


def service(name: str, ports: list[int]) -> list[dict[str, Any]]:
    """A Service whose endpoints are 127.0.0.1 on `ports` (one EndpointSlice each)."""
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
                                   "spec": {"ports": [{"name": "http", "port": 80}]}}]
    for i, port in enumerate(ports):
        docs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": f"{name}-{i}", "namespace": NS,
                                  "labels": {"kubernetes.io/service-name": name}},
                     "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}],
                     "ports": [{"name": "http", "port": port, "protocol": "TCP"}]})
    return docs


def route(name: str, backend: dict[str, Any], path: str = "/", **rule: Any) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["app.example.com"],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                                "backendRefs": [backend], **rule}]}}


def to_service(name: str) -> dict[str, Any]:
    return {"name": name, "port": 80}


def policy(kind: str, name: str, target: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": POLICY_API, "kind": kind, "metadata": {"name": name, "namespace": NS},
            "spec": {"targetRefs": [target], **spec}}


SERVICE = {"group": "", "kind": "Service"}
GATEWAY = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}


class Echoes:
    """`portico echo` processes by name, which tests may kill and start again."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> int:
        """Start backend `name` (on the port it had before), unless it runs."""
        port = self.ports.setdefault(name, free_port())
        if name in self.procs and self.procs[name].poll() is None:
            return port
        self.procs[name] = start(["echo", "--port", str(port), "--name", name], self.tmp / f"echo-{name}.log")
        wait_for(f"echo {name}", lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True, 15)
        return port

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(5)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            stop(proc)


@pytest.fixture(scope="module")
def echoes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Echoes]:
    out = Echoes(tmp_path_factory.mktemp("echoes"))
    for name in ("a", "b", "c"):
        out.start(name)
    yield out
    out.stop_all()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("gateway")
    manifests = tmp / "manifests"
    manifests.mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert("app.example.com")
    (manifests / "cert.yaml").write_text(json.dumps({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "cert", "namespace": NS},
        "stringData": {"tls.crt": "".join(b.bytes().decode() for b in cert.cert_chain_pems),
                       "tls.key": cert.private_key_pem.bytes().decode()}}))
    write_atomically(manifests / "test.yaml", base(gw_tls=True))
    admin, offset = free_port(), free_port() - 80
    proc = start(["run", str(manifests), "--admin-address", f"127.0.0.1:{admin}", "--port-offset", str(offset),
                  "--state-dir", str(tmp / "state")], tmp / "portico.log")

    try:
        ip = gateway_address(admin)
        yield Gateway(manifests, ip, 80 + offset, 443 + offset, ca)
    finally:
        stop(proc)


def spread(gw: Gateway, n: int, path: str = "/", **kw: Any) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for _ in range(n):
        pod = gw.pod(path, **kw)
        out[pod] = out.get(pod, 0) + 1
    return out


# ---------------------------------------------------------------- load balancing


def test_consistent_hash_keeps_a_key_on_one_backend_and_moves_few(gateway: Gateway, echoes: Echoes) -> None:
    ports = [echoes.ports[n] for n in ("a", "b", "c")]
    hashing = policy("BackendTrafficPolicy", "hash", {**SERVICE, "name": "web"},
                     loadBalancer={"type": "RingHash", "hashOn": {"header": {"name": "x-user"}}})
    gateway.apply(base() + service("web", ports) + [route("web", to_service("web")), hashing])
    users = [f"user-{i}" for i in range(200)]

    def placement() -> dict[str, str | None]:
        return {u: gateway.pod("/", headers={"x-user": u}) for u in users}

    wait_for("the hashed route", lambda: len(set(placement().values())) == 3, 30)
    first = placement()
    assert placement() == first  # every key stays where it is
    gateway.apply(base() + service("web", ports[:2]) + [route("web", to_service("web")), hashing])
    wait_for("c removed", lambda: "c" not in placement().values(), 30)
    after = placement()
    kept = [u for u in users if first[u] != "c"]
    moved = [u for u in kept if after[u] != first[u]]
    # Envoy's ring keeps its size (1024 points): the survivors' new points take ~17% of each
    # other's keys, against ~50% for hashing modulo the backend count
    assert len(moved) < len(kept) // 3, f"{len(moved)} of {len(kept)} keys moved off a backend still there"


class Slow(ThreadingHTTPServer):
    """A backend that takes `delay` seconds per request; `healthy` sets what /healthz answers."""

    daemon_threads = True

    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.name, self.delay, self.healthy = name, delay, True
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.startswith("/healthz"):
                    status, body = (200 if outer.healthy else 503), b"{}"
                else:
                    time.sleep(outer.delay)
                    status, body = 200, json.dumps({"pod": outer.name}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def slow_share(gw: Gateway, seconds: float = 2.0, workers: int = 6) -> float:
    """The share of requests the slow backend got under a closed-loop load."""
    deadline = time.monotonic() + seconds

    def worker() -> list[str | None]:
        seen = []
        while time.monotonic() < deadline:
            seen.append(gw.pod("/lb"))
        return seen

    with ThreadPoolExecutor(workers) as pool:
        picks = [p for f in [pool.submit(worker) for _ in range(workers)] for p in f.result()]
    return picks.count("slow") / len(picks)


def test_least_request_prefers_the_idle_backend(gateway: Gateway, echoes: Echoes) -> None:
    slow = Slow("slow", delay=0.3)
    try:
        docs = base() + service("lb", [slow.port, echoes.ports["a"]]) + [route("lb", to_service("lb"), "/lb")]
        shares = {}
        for algorithm in ("RoundRobin", "LeastRequest"):
            lb = policy("BackendTrafficPolicy", "lb", {**SERVICE, "name": "lb"}, loadBalancer={"type": algorithm})
            gateway.apply(docs + [lb])
            # converged: the cluster's algorithm shows in Envoy's answer pattern only under load,
            # so wait for the route, then for Envoy to hold the new cluster (a short settle)
            wait_for("the lb route", lambda: gateway.pod("/lb") in ("slow", "a"), 30)
            time.sleep(1.0)
            shares[algorithm] = slow_share(gateway)
        assert shares["RoundRobin"] > 0.35, shares
        assert shares["LeastRequest"] < shares["RoundRobin"] - 0.1, shares
    finally:
        slow.shutdown()


# ---------------------------------------------------------------- health


def test_active_health_check_takes_a_failing_backend_out(gateway: Gateway, echoes: Echoes) -> None:
    sick = Slow("sick")
    sick.healthy = False
    try:
        check = policy("BackendTrafficPolicy", "health", {**SERVICE, "name": "health"},
                       healthCheck={"active": {"type": "HTTP", "interval": "500ms", "unhealthyThreshold": 1,
                                               "healthyThreshold": 1, "http": {"path": "/healthz"}}})
        gateway.apply(base() + service("health", [sick.port, echoes.ports["b"]])
                      + [route("health", to_service("health"), "/health"), check])
        wait_for("the health route", lambda: gateway.pod("/health") == "b", 30)
        assert set(spread(gateway, 30, "/health")) == {"b"}  # the failing backend gets nothing
        sick.healthy = True
        wait_for("the recovered backend back", lambda: "sick" in spread(gateway, 10, "/health"), 20)
    finally:
        sick.shutdown()


def failures_under_load(gw: Gateway, echoes: Echoes, path: str, seconds: float = 3.0) -> tuple[int, int]:
    """(failed, total) requests of a steady load during which backend `c` is killed."""
    deadline = time.monotonic() + seconds
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while time.monotonic() < deadline:
            try:
                status = gw.get(path, timeout=5)[0]
            except OSError:
                status = 0
            with lock:
                results.append(status)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(seconds / 3)
    echoes.kill("c")
    for t in threads:
        t.join()
    return sum(1 for s in results if s != 200), len(results)


def test_failover_one_of_three_killed_under_load(gateway: Gateway, echoes: Echoes) -> None:
    """The benchmark's failover test: one of three backends killed under steady load. With
    outlier detection and retries to another endpoint, (near) no request fails; without
    them, the dead endpoint's share does."""
    figures = {}
    for name, resilient in (("plain", False), ("resilient", True)):
        echoes.start("c")
        ports = [echoes.ports[n] for n in ("a", "b", "c")]
        docs = base() + service(name, ports) + [route(name, to_service(name), f"/{name}")]
        if resilient:
            docs.append(policy("BackendTrafficPolicy", name, {**SERVICE, "name": name},
                               healthCheck={"passive": {"consecutive5XxErrors": 1, "interval": "1s",
                                                        "baseEjectionTime": "30s", "maxEjectionPercent": 50}},
                               retry={"numRetries": 2,
                                      "retryOn": {"triggers": ["connect-failure", "reset", "gateway-error"]}}))
        gateway.apply(docs)
        path = f"/{name}"
        wait_for(f"{name} on all three", lambda: set(spread(gateway, 12, path)) == {"a", "b", "c"}, 30)  # noqa: B023
        figures[name] = failures_under_load(gateway, echoes, f"/{name}")
    print(f"failover figures (failed, total): {figures}")
    failed, total = figures["resilient"]
    assert total > 100 and failed <= total // 1000, figures
    assert figures["plain"][0] > 10 * max(failed, 1), figures  # the policy is what saves them


def test_circuit_breaker_overflow_answers_503(gateway: Gateway, echoes: Echoes) -> None:
    breaker = policy("BackendTrafficPolicy", "breaker", {**SERVICE, "name": "breaker"},
                     circuitBreaker={"maxParallelRequests": 1, "maxPendingRequests": 1})
    gateway.apply(base() + service("breaker", [echoes.ports["a"]])
                  + [route("breaker", to_service("breaker"), "/breaker"), breaker])
    wait_for("the breaker route", lambda: gateway.pod("/breaker") == "a", 30)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: gateway.get("/breaker?delay=1s"), range(8)))
    statuses = sorted(a[0] for a in answers)
    assert 200 in statuses and 503 in statuses, statuses
    assert all(a[2].get("x-envoy-overloaded") == "true" for a in answers if a[0] == 503)


# ---------------------------------------------------------------- clients


def test_a_gateways_rate_limit_is_shared_by_its_routes(gateway: Gateway, echoes: Echoes) -> None:
    limit = policy("RateLimitPolicy", "gw", GATEWAY, local={"rules": [{"limit": {"requests": 4, "unit": "Minute"}}]})
    gateway.apply(base() + service("web", [echoes.ports["a"]])
                  + [route("one", to_service("web"), "/one"), route("two", to_service("web"), "/two"), limit])
    wait_for("the Gateway's budget", lambda: gateway.get("/one")[0] == 429, 30)
    status, _, headers = gateway.get("/two")
    assert status == 429 and headers.get("x-ratelimit-limit") == "4"  # the other route shares the budget


def test_client_address_from_x_forwarded_for_feeds_the_rate_limit(gateway: Gateway, echoes: Echoes) -> None:
    per_client = policy("RateLimitPolicy", "per-client", {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                                          "name": "web"},
                        local={"rules": [{"clientSelectors": [{"sourceIP": {}}],
                                          "limit": {"requests": 2, "unit": "Minute"}}]})
    trust = policy("ClientTrafficPolicy", "xff", GATEWAY, clientIPDetection={"xForwardedFor": {"numTrustedHops": 1}})
    gateway.apply(base() + service("web", [echoes.ports["a"]]) + [route("web", to_service("web"), "/xff"),
                                                                   per_client, trust])

    def status(client: str) -> int:
        return gateway.get("/xff", headers={"X-Forwarded-For": client})[0]

    wait_for("the per-client budget", lambda: status("10.0.0.9") == 200, 30)
    assert [status("10.0.0.1") for _ in range(3)] == [200, 200, 429]
    # another client behind the same proxy has its own budget
    assert [status("10.0.0.2") for _ in range(3)] == [200, 200, 429]


def test_tls_minimum_version_rejects_an_older_client(gateway: Gateway, echoes: Echoes) -> None:
    tls13 = policy("ClientTrafficPolicy", "tls", {**GATEWAY, "sectionName": "https"}, tls={"minVersion": "1.3"})
    gateway.apply(base(gw_tls=True) + service("web", [echoes.ports["a"]])
                  + [route("web", to_service("web")), tls13])

    def handshake(max_version: ssl.TLSVersion) -> str:
        ctx = ssl.create_default_context()
        gateway.ca.configure_trust(ctx)
        ctx.maximum_version = max_version
        try:
            with socket.create_connection((gateway.ip, gateway.https_port), 5) as raw, \
                    ctx.wrap_socket(raw, server_hostname="app.example.com") as tls:
                return str(tls.version())
        except (ssl.SSLError, ConnectionResetError) as e:
            return f"refused: {e}"

    wait_for("TLS 1.2 refused", lambda: handshake(ssl.TLSVersion.TLSv1_2).startswith("refused"), 30)
    assert handshake(ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


# ---------------------------------------------------------------- backends


def test_xbackend_reached_by_hostname(gateway: Gateway, echoes: Echoes) -> None:
    external = {"apiVersion": "gateway.networking.x-k8s.io/v1alpha1", "kind": "XBackend",
                "metadata": {"name": "external", "namespace": NS},
                "spec": {"type": "ExternalHostname", "externalHostname": {"hostname": "localhost"},
                         "port": {"port": echoes.ports["b"]}, "protocol": "HTTP"}}
    ref = {"group": "gateway.networking.x-k8s.io", "kind": "XBackend", "name": "external"}
    gateway.apply(base() + [external, route("external", ref, "/external")])
    wait_for("the XBackend", lambda: gateway.pod("/external") == "b", 30)
    assert gateway.get("/external/x")[1]["host"] == "app.example.com"


class UnixEcho(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """An HTTP backend on a Unix socket (standalone mode's Backend unix endpoints)."""

    daemon_threads = True

    def __init__(self, path: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = json.dumps({"pod": "socket", "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def address_string(self) -> str:
                return "unix"

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(path, Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_backend_of_static_endpoints_and_a_unix_socket(gateway: Gateway, echoes: Echoes, tmp_path: Path) -> None:
    sock = UnixEcho(str(tmp_path / "app.sock"))
    try:
        static = {"apiVersion": POLICY_API, "kind": "Backend", "metadata": {"name": "static", "namespace": NS},
                  "spec": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": echoes.ports["a"]}},
                                         {"ip": {"address": "127.0.0.1", "port": echoes.ports["b"]}, "weight": 3}]}}
        unix = {"apiVersion": POLICY_API, "kind": "Backend", "metadata": {"name": "unix", "namespace": NS},
                "spec": {"endpoints": [{"unix": {"path": str(tmp_path / "app.sock")}}]}}
        gateway.apply(base() + [static, unix,
                                route("static", {"group": "gateway.portico.dev", "kind": "Backend", "name": "static"},
                                      "/static"),
                                route("unix", {"group": "gateway.portico.dev", "kind": "Backend", "name": "unix"},
                                      "/unix")])
        wait_for("the Unix socket backend", lambda: gateway.pod("/unix") == "socket", 30)
        assert gateway.get("/unix/x?y=1")[1]["path"] == "/unix/x?y=1"
        shares = spread(gateway, 80, "/static")
        assert set(shares) == {"a", "b"} and shares["b"] > shares["a"], shares  # weight 3 to 1
    finally:
        sock.shutdown()
        sock.server_close()


class H3Client(QuicConnectionProtocol):
    """One HTTP/3 GET over aioquic (the QUIC listener of ClientTrafficPolicy http3)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.headers: dict[bytes, bytes] = {}
        self.body = b""

    def quic_event_received(self, event: QuicEvent) -> None:
        for e in self.h3.handle_event(event):
            if isinstance(e, HeadersReceived):
                self.headers = dict(e.headers)
            elif isinstance(e, DataReceived):
                self.body += e.data
            if getattr(e, "stream_ended", False) and not self.done.done():
                self.done.set_result(None)

    async def get(self, authority: str, path: str) -> tuple[int, dict[str, Any]]:
        stream = self._quic.get_next_available_stream_id()
        self.h3.send_headers(stream, [(b":method", b"GET"), (b":scheme", b"https"),
                                      (b":authority", authority.encode()), (b":path", path.encode())],
                             end_stream=True)
        self.transmit()
        await asyncio.wait_for(self.done, 5)
        return int(self.headers[b":status"]), json.loads(self.body) if self.body.startswith(b"{") else {}


def h3_get(gw: Gateway, path: str, cafile: Path) -> tuple[int, dict[str, Any]]:
    async def run() -> tuple[int, dict[str, Any]]:
        config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="app.example.com")
        config.load_verify_locations(str(cafile))
        async with connect(gw.ip, gw.https_port, configuration=config, create_protocol=H3Client,
                           wait_connected=True) as client:
            assert isinstance(client, H3Client)
            return await client.get("app.example.com", path)
    return asyncio.run(asyncio.wait_for(run(), 10))


def test_http3_on_the_https_port(gateway: Gateway, echoes: Echoes, tmp_path: Path) -> None:
    h3 = policy("ClientTrafficPolicy", "h3", {**GATEWAY, "sectionName": "https"}, http3={})
    gateway.apply(base(gw_tls=True) + service("web", [echoes.ports["a"]]) + [route("web", to_service("web")), h3])
    ctx = ssl.create_default_context()
    gateway.ca.configure_trust(ctx)

    def alt_svc() -> str | None:
        conn = http.client.HTTPSConnection(gateway.ip, gateway.https_port, timeout=5, context=ctx)
        conn.sock = ctx.wrap_socket(socket.create_connection((gateway.ip, gateway.https_port), 5),
                                    server_hostname="app.example.com")
        try:
            conn.request("GET", "/", headers={"Host": "app.example.com"})
            resp = conn.getresponse()
            resp.read()
            return resp.getheader("alt-svc")
        finally:
            conn.close()

    advertised = wait_for("HTTP/3 advertised", alt_svc, 30)
    assert advertised == f'h3=":{gateway.https_port}"; ma=86400'
    cafile = tmp_path / "ca.pem"
    gateway.ca.cert_pem.write_to_path(str(cafile))
    status, body = wait_for("an HTTP/3 answer", lambda: h3_get(gateway, "/h3", cafile), 20,
                            retry_on=(OSError, TimeoutError, ConnectionError))
    assert status == 200 and body["pod"] == "a" and body["proto"] == "HTTP/1.1"  # to the backend: HTTP/1.1
