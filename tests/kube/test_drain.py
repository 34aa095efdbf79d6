"""A rolling replacement without a failed request: two Envoy replicas of one Gateway,
each started as its pod would be (the generated Deployment's arguments, bootstrap
ConfigMap and xDS Secret; its own network namespace, so both bind the listener's
port on 0.0.0.0 as two pods do), fed by the controller's mutual-TLS xDS; a client
round-robins keep-alive requests over the replicas the Service's endpoints list.
One replica is terminated as the kubelet does: both containers' preStop hooks
(the shutdown manager's `portico shutdown-manager drain` exec, Envoy's httpGet on
`/shutdown/ready`), SIGTERM once Envoy's hook returned, within the grace period;
the endpoint leaves the client's list a moment after the deletion, as kube-proxy
learns of it late. No request fails, and Envoy's readiness fails while it drains.

The pod's network is modelled with Envoy's own static listeners, added to the
bootstrap here: one on a Unix socket (the client's way in: the pod IP) that
forwards to the listener's port inside the namespace, one on the backend's
address inside the namespace forwarding to the echo server outside. Filesystem
sockets cross network namespaces; the xDS server is reached the same way."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kube.support import CLASS, SERVICE, data_plane_options, free_port, obj, route, running, until
from kube.volume import pod_volumes
from portico.controller import serve_controller
from portico.echo import EchoServer, Identity
from portico.infra.drain import admin_request
from portico.infra.envoy import find_envoy
from portico.infra.kubernetes import ADMIN_DIR, BOOTSTRAP_MOUNT, XDS_MOUNT

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("ip") is None,
                                 reason="needs unshare(1) and ip(8) for a network namespace per pod")]
G = "gateway.networking.k8s.io"
LISTENER_PORT = 8080  # inside each pod's own network namespace
BACKEND_PORT = 9090
PORTICO = str(Path(sys.executable).parent / "portico")


def netns_works() -> bool:
    done = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True, check=False)
    return done.returncode == 0


@contextlib.asynccontextmanager
async def relay(path: str, port: int) -> AsyncIterator[None]:
    """A Unix socket at `path` forwarding to 127.0.0.1:`port` (a pod reaching a Service)."""
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_unix_server(handle, path)
    try:
        yield
    finally:
        server.close()


def tcp_proxy(name: str, address: dict[str, Any], cluster: str) -> dict[str, Any]:
    return {"name": name, "address": address, "stat_prefix": name, "filter_chains": [{"filters": [{
        "name": "envoy.filters.network.tcp_proxy", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": name, "cluster": cluster}}]}]}


def pipe_cluster(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
        "cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": path}}}}]}]}}


async def serving(pod: Pod) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=pod.entry)) as http:
        for _ in range(300):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get("http://gw.example/") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{pod.name} does not serve the route")


class Pod:
    """One Envoy replica as its pod runs it (see the module docstring)."""

    def __init__(self, name: str, root: Path, deployment: dict[str, Any], config: dict[str, Any],
                 secret: dict[str, Any], xds_relay: str, backend_relay: str) -> None:
        self.name = name
        self.dir = root / name
        self.admin_dir = self.dir / "admin"
        self.admin_dir.mkdir(parents=True)
        config_volume, _ = pod_volumes(config, secret, {BOOTSTRAP_MOUNT: self.dir / "config",
                                                        XDS_MOUNT: self.dir / "xds", ADMIN_DIR: self.admin_dir})
        spec = deployment["spec"]["template"]["spec"]
        self.grace = int(spec["terminationGracePeriodSeconds"])
        self.envoy, self.manager = spec["containers"]
        self.admin_socket = str(self.admin_dir / "admin.sock")
        boot = json.loads((config_volume.path / "bootstrap.json").read_text())
        xds = boot["static_resources"]["clusters"][0]
        xds["type"] = "STATIC"
        xds.pop("dns_lookup_family", None)
        xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] = {"pipe": {
            "path": xds_relay}}
        self.entry = str(self.dir / "pod-ip.sock")  # the pod's address as the client reaches it
        boot["static_resources"]["clusters"] += [
            pipe_cluster("pod-backend", backend_relay),
            {**pipe_cluster("pod-listener", ""), "load_assignment": {"cluster_name": "pod-listener", "endpoints": [{
                "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": LISTENER_PORT}}}}]}]}}]
        boot["static_resources"]["listeners"] += [
            tcp_proxy("pod-network", {"pipe": {"path": self.entry}}, "pod-listener"),
            tcp_proxy("pod-backend", {"socket_address": {"address": "127.0.0.1", "port_value": BACKEND_PORT}},
                      "pod-backend")]
        (self.dir / "bootstrap.json").write_text(json.dumps(boot))
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        args = [a.replace("/etc/envoy/bootstrap.json", str(self.dir / "bootstrap.json"))
                .replace("$(POD_NAME)", self.name) for a in self.envoy["args"]]
        self.process = await asyncio.create_subprocess_exec(
            "unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', find_envoy(), *args,
            "--base-id", str(free_port()), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    def ready(self) -> int:
        """What the readiness probe sees: admin /ready, as the probe listener routes it."""
        try:
            return admin_request(self.admin_socket, "GET", "/ready", timeout=2)[0]
        except OSError:
            return 0

    async def terminate(self, drain: bool, on_ready_during_drain: list[int]) -> float:
        """The kubelet's termination: both preStop hooks at once, SIGTERM to Envoy once its
        own hook returned, SIGKILL at the end of the grace period. Returns the seconds taken."""
        assert self.process is not None
        start = time.monotonic()
        if drain:
            exec_hook = self.manager["lifecycle"]["preStop"]["exec"]["command"]
            assert exec_hook[0] == "portico"
            command = [PORTICO, *[a.replace("/var/run/portico-admin", str(self.admin_dir)) for a in exec_hook[1:]]]
            manager_hook = await asyncio.create_subprocess_exec(*command)
            port = free_port()
            serve_args = [a.replace("/var/run/portico-admin", str(self.admin_dir)) for a in self.manager["args"]]
            serve_args[serve_args.index("--port") + 1] = str(port)
            manager = await asyncio.create_subprocess_exec(PORTICO, *serve_args)
            hook = self.envoy["lifecycle"]["preStop"]["httpGet"]
            async with aiohttp.ClientSession() as http:
                for _ in range(200):  # the manager container was running before the deletion
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                            if resp.status == 200:
                                break
                    await asyncio.sleep(0.05)
                # the exec hook (a `portico` process starting) fails the health check soon, not
                # at a set time: readiness is read until it fails or the hook has ended
                seen = self.ready()
                while seen != 503 and manager_hook.returncode is None and time.monotonic() - start < self.grace:
                    await asyncio.sleep(0.05)
                    seen = self.ready()
                on_ready_during_drain.append(seen)
                async with http.get(f"http://127.0.0.1:{port}{hook['path']}",
                                    timeout=aiohttp.ClientTimeout(total=self.grace)) as resp:
                    assert resp.status == 200
            await manager_hook.wait()
            assert manager_hook.returncode == 0
            manager.send_signal(signal.SIGTERM)
            await manager.wait()
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout=max(self.grace - (time.monotonic() - start), 1))
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        return time.monotonic() - start

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


class Service:
    """The Gateway's Service as kube-proxy runs it: a virtual address (a Unix socket here)
    whose every new connection goes to the next endpoint, round-robin; a connection
    stays with its pod for its life. Counts the responses each pod sent."""

    def __init__(self, path: str, pods: list[Pod]) -> None:
        self.path = path
        self.endpoints = list(pods)
        self.responses: dict[str, int] = {p.name: 0 for p in pods}
        self.connections: dict[str, int] = {p.name: 0 for p in pods}
        self._next = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pod = self.endpoints[self._next % len(self.endpoints)]
        self._next += 1
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(pod.entry)
        except OSError:
            writer.close()
            return
        self.connections[pod.name] += 1

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            try:
                while data := await src.read(65536):
                    if count:
                        self.responses[pod.name] += data.count(b"HTTP/1.1 ")
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        server = await asyncio.start_unix_server(self._handle, self.path)
        try:
            yield
        finally:
            server.close()


class Client:
    """Continuous keep-alive traffic to the Service: `workers` requests at a time."""

    def __init__(self, service: Service, workers: int = 6) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=service.path, limit=workers))
        self.sent = self.failed = 0
        self.errors: list[str] = []
        self.workers = workers
        self._stop = asyncio.Event()

    async def worker(self) -> None:
        while not self._stop.is_set():
            self.sent += 1
            try:
                async with self.session.get("http://gw.example/", timeout=aiohttp.ClientTimeout(5)) as r:
                    await r.read()
                    if r.status != 200:
                        raise AssertionError(f"HTTP {r.status}")
            except (aiohttp.ClientError, AssertionError, TimeoutError) as e:
                self.failed += 1
                self.errors.append(f"{type(e).__name__}: {e}")

    async def run(self) -> None:
        await asyncio.gather(*(self.worker() for _ in range(self.workers)))

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        await self.session.close()


async def rolling_replacement(tmp_path: Path, drain: bool) -> dict[str, Any]:
    """Two replicas, traffic, one terminated: the client's counts."""
    echo = EchoServer(Identity(pod="web-1", namespace="apps", service="web"))
    echo_port = await echo.start()
    async with running() as (api, client):
        gateway = obj(f"{G}/v1", "Gateway", "gw", "apps", spec={
            "gatewayClassName": "portico",
            "infrastructure": {"parametersRef": {"group": "gateway.portico.dev", "kind": "PorticoProxy",
                                                 "name": "drain"}},
            "listeners": [{"name": "http", "port": LISTENER_PORT, "protocol": "HTTP"}]})
        slice_ = obj("discovery.k8s.io/v1", "EndpointSlice", "web-1", "apps", addressType="IPv4",
                     endpoints=[{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                     ports=[{"name": "http", "port": BACKEND_PORT, "protocol": "TCP"}])
        slice_["metadata"]["labels"] = {"kubernetes.io/service-name": "web"}  # type: ignore[index]
        proxy = obj("gateway.portico.dev/v1alpha1", "PorticoProxy", "drain", "apps", spec={
            "replicas": 2, "shutdown": {"drainSeconds": 8, "minDrainSeconds": 2,
                                        "terminationGracePeriodSeconds": 20}})
        for o in (CLASS, proxy, gateway, SERVICE, slice_, route("web")):
            api.put(o)
        xds_port = free_port()
        stop = asyncio.Event()
        opts = data_plane_options(tmp_path, xds_port)
        controller = asyncio.create_task(serve_controller(opts, stop, client))
        pods: list[Pod] = []
        traffic: Client | None = None
        try:
            await until(lambda: api.get("", "services", "apps", "portico-gw") is not None, timeout=20,
                        what="the data plane's objects")
            deployment = api.get("apps", "deployments", "apps", "portico-gw")
            config = api.get("", "configmaps", "apps", "portico-gw")
            secret = api.get("", "secrets", "apps", "portico-gw-xds")
            assert deployment and config and secret
            async with relay(str(tmp_path / "xds.sock"), xds_port), \
                    relay(str(tmp_path / "backend.sock"), echo_port):
                pods = [Pod(f"portico-gw-{i}", tmp_path, deployment, config, secret,
                            str(tmp_path / "xds.sock"), str(tmp_path / "backend.sock")) for i in range(2)]
                for pod in pods:
                    await pod.start()
                await until(lambda: all(p.ready() == 200 for p in pods) and all(
                    os.path.exists(p.entry) for p in pods), timeout=30, what="both replicas ready")
                for pod in pods:  # both serve the route (its listener comes over xDS after the bootstrap's)
                    await serving(pod)
                service = Service(str(tmp_path / "service.sock"), pods)
                async with service.serving():
                    traffic = Client(service)
                    running_traffic = asyncio.create_task(traffic.run())
                    await asyncio.sleep(2)
                    before = dict(service.responses)

                    async def endpoints_update() -> None:  # the endpoint controller, then kube-proxy
                        await asyncio.sleep(1.0)
                        service.endpoints = [pods[1]]

                    ready_during: list[int] = []
                    removal = asyncio.create_task(endpoints_update())
                    took = await pods[0].terminate(drain, ready_during)
                    await removal
                    await asyncio.sleep(1.5)
                    traffic.stop()
                    await running_traffic
                    return {"sent": traffic.sent, "failed": traffic.failed, "errors": traffic.errors[:5],
                            "before": before, "after": dict(service.responses), "seconds": took,
                            "connections": dict(service.connections), "ready_during_drain": ready_during}
        finally:
            if traffic is not None:
                await traffic.close()
            for pod in pods:
                await pod.stop()
            stop.set()
            await controller
            await echo.stop()


def test_a_replica_terminated_as_kubernetes_does_fails_no_request(tmp_path: Path) -> None:
    if not netns_works():
        pytest.skip("no unprivileged network namespaces here")
    result = asyncio.run(rolling_replacement(tmp_path, drain=True))
    print(f"drain: {result['sent']} requests sent, {result['failed']} failed; replica terminated in "
          f"{result['seconds']:.1f} s; responses per replica {result['after']}, connections {result['connections']}")
    assert result["failed"] == 0, result
    assert result["before"]["portico-gw-0"] > 0 and result["before"]["portico-gw-1"] > 0, result
    # it kept serving its keep-alive clients while it drained, and was not ready meanwhile
    assert result["after"]["portico-gw-0"] > result["before"]["portico-gw-0"], result
    assert result["ready_during_drain"] == [503], result
    assert result["sent"] > 100, result


def test_without_the_drain_the_same_termination_fails_requests(tmp_path: Path) -> None:
    """The harness sees failures when there are some: SIGTERM at once (no preStop hooks, as
    before the shutdown manager) resets the replica's keep-alive connections."""
    if not netns_works():
        pytest.skip("no unprivileged network namespaces here")
    result = asyncio.run(rolling_replacement(tmp_path, drain=False))
    print(f"no drain: {result['sent']} requests sent, {result['failed']} failed")
    assert result["failed"] > 0, result
