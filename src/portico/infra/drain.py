"""Graceful shutdown of a Gateway's Envoy pod (Kubernetes mode), the shutdown-manager
pattern of Envoy Gateway.

Kubernetes removes a terminating pod from its Service's endpoints while load
balancers and kube-proxy still send it new connections for a moment, and Envoy
exits at once on SIGTERM, resetting every connection it holds. So the pod has a
second container, the shutdown manager (the controller's image,
`portico shutdown-manager serve`), sharing the emptyDir that holds Envoy's admin
socket. When the pod terminates the kubelet runs both containers' preStop hooks:

- the shutdown manager's (exec `portico shutdown-manager drain`) fails Envoy's
  health check (`/healthcheck/fail`: admin `/ready`, the readiness probe, answers
  503 from then on) and starts a graceful drain of every listener
  (`/drain_listeners?graceful&skip_exit`: listeners keep accepting for the drain
  time, HTTP/1 responses carry `Connection: close`, HTTP/2 connections get a
  GOAWAY); it waits at least `minDrainSeconds`, then until no downstream
  connection is left or `drainSeconds` passed, and marks the drain done;
- Envoy's (httpGet `/shutdown/ready` on the shutdown manager) returns once the
  drain is done, so SIGTERM reaches Envoy only then.

Only the exec hook (run by the kubelet inside the pod) starts a drain: the HTTP
endpoint, reachable on the pod network, only waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from portico.infra.envoy import UnixHTTPConnection

log = logging.getLogger(__name__)

SHUTDOWN_PORT = 19002
DRAINED = "drained"  # the marker file the drain leaves next to the admin socket
READY_STAT_PREFIX = "ready"  # the probe listener's stats: its connections do not hold a drain


@dataclass(frozen=True)
class DrainResult:
    seconds: float
    connections_left: int


def admin_request(admin_socket: str, method: str, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """One request to Envoy's admin API on its Unix socket: (status, body)."""
    conn = UnixHTTPConnection(admin_socket, timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


# the Gateway's listeners (from xDS, which never names a listener's stats) are named by their
# address: 0.0.0.0_80, [::]_443; the bootstrap's own (the probe listener: "ready") by a prefix
_GATEWAY_LISTENER = re.compile(r"listener\.((?:\d{1,3}\.){3}\d{1,3}|\[[0-9a-fA-F:.]*\])_\d+\.downstream_cx_active")


def downstream_connections(admin_socket: str) -> int:
    """Open downstream connections on the Gateway's listeners (not the probe listener's)."""
    _, body = admin_request(admin_socket, "GET", "/stats?filter=^listener\\..*downstream_cx_active$")
    total = 0
    for line in body.splitlines():
        name, _, value = line.partition(":")
        if _GATEWAY_LISTENER.fullmatch(name.strip()):  # per-worker copies do not match
            with contextlib.suppress(ValueError):
                total += int(value.strip())
    return total


async def drain(admin_socket: str, drain_seconds: float, min_drain_seconds: float = 0.0,
                poll: float = 0.5) -> DrainResult:
    """Fail readiness, drain every listener gracefully, and return once no downstream
    connection is left (after at least `min_drain_seconds`) or `drain_seconds` passed.
    Leaves the marker `/shutdown/ready` waits for next to the admin socket."""
    start = time.monotonic()
    marker = Path(admin_socket).parent / DRAINED
    left = -1
    try:
        for path in ("/healthcheck/fail", "/drain_listeners?graceful&skip_exit"):
            status, body = await asyncio.to_thread(admin_request, admin_socket, "POST", path)
            if status != 200:
                raise RuntimeError(f"Envoy's admin {path} answered {status}: {body.strip()}")
        log.info("draining: readiness fails, listeners drain (at most %.0f s)", drain_seconds)
        while True:
            elapsed = time.monotonic() - start
            left = await asyncio.to_thread(downstream_connections, admin_socket)
            if elapsed >= drain_seconds or (left == 0 and elapsed >= min_drain_seconds):
                break
            await asyncio.sleep(poll)
    except OSError as e:  # Envoy is gone already: nothing to drain
        log.warning("draining: Envoy's admin does not answer (%s)", e)
    finally:
        marker.touch()
    result = DrainResult(time.monotonic() - start, max(left, 0))
    log.info("drained in %.1f s, %d connections left", result.seconds, result.connections_left)
    return result


async def serve(admin_dir: str, port: int = SHUTDOWN_PORT, host: str = "0.0.0.0",
                stop: asyncio.Event | None = None, timeout: float = 3600.0) -> None:
    """The shutdown manager's server: `/shutdown/ready` answers 200 once the drain is done
    (Envoy's preStop hook), `/healthz` at once. Runs until `stop` is set."""
    marker = Path(admin_dir) / DRAINED

    async def ready(_: web.Request) -> web.Response:
        deadline = time.monotonic() + timeout
        while not marker.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        return web.Response(text="drained\n" if marker.exists() else "timed out\n",
                            status=200 if marker.exists() else 504)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/shutdown/ready", ready)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
