"""EnvoyProcess: bootstrap, start/ready/stop, several instances, restart after a crash."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from portico.infra.envoy import EnvoyProcess, bootstrap, find_envoy
from portico.xds.server import XdsServer


def test_find_envoy_is_executable() -> None:
    assert os.access(find_envoy(), os.X_OK)


def test_bootstrap_points_at_delta_ads() -> None:
    boot = bootstrap("127.0.0.1", 1234)
    ads = boot["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == "DELTA_GRPC"
    assert boot["node"] == {"id": "portico", "cluster": "portico"}
    assert boot["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 0}
    private = bootstrap("", 0, xds_socket="/run/x/xds.sock", admin_socket="/run/x/admin.sock")
    assert private["admin"]["address"] == {"pipe": {"path": "/run/x/admin.sock", "mode": 0o600}}
    xds_address = private["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert xds_address["endpoint"]["address"] == {"pipe": {"path": "/run/x/xds.sock"}}
    xds = boot["static_resources"]["clusters"][0]
    assert xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 1234,
    }


async def _wait(predicate: object, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_two_instances_restart_and_stop(tmp_path: Path) -> None:
    async def scenario() -> None:
        xds = XdsServer()
        port = await xds.start("127.0.0.1")
        first = EnvoyProcess("127.0.0.1", port, concurrency=1, log_file=tmp_path / "envoy1.log")
        second = EnvoyProcess("127.0.0.1", port, concurrency=1)
        try:
            await asyncio.gather(first.start(), second.start())
            await asyncio.gather(first.wait_ready(), second.wait_ready())
            # Envoy's admin: a Unix socket (0600) in a private directory (0700), never a TCP port
            assert first.admin_socket and second.admin_socket and first.admin_socket != second.admin_socket
            for envoy in (first, second):
                assert envoy.admin_socket is not None
                socket_path = Path(envoy.admin_socket)
                assert socket_path.stat().st_mode & 0o777 == 0o600
                assert socket_path.parent.stat().st_mode & 0o777 == 0o700
                assert envoy.admin_get("/ready")[0] == 200
            assert len(xds.envoys()) == 2

            crashed = first.pid
            assert crashed is not None
            os.kill(crashed, signal.SIGKILL)
            await _wait(lambda: first.restarts == 1 and first.pid not in (None, crashed))
            await first.wait_ready()
            await _wait(lambda: len(xds.envoys()) == 2)
        finally:
            pids = [p for p in (first.pid, second.pid) if p is not None]
            await asyncio.gather(first.stop(), second.stop())
            await xds.stop()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert "starting" in (tmp_path / "envoy1.log").read_text().lower()

    asyncio.run(scenario())


def test_start_failure_is_reported() -> None:
    async def scenario() -> None:
        envoy = EnvoyProcess("127.0.0.1", 1, extra_args=("--no-such-flag",))
        with pytest.raises(RuntimeError, match="exited"):
            await envoy.start(timeout=20)
        await envoy.stop()

    asyncio.run(scenario())


def test_an_envoy_that_fails_to_start_leaves_no_process(tmp_path: Path) -> None:
    """Envoy runs in its own session, so one that does not start as it should (exits,
    or never opens its admin socket) must be ended by us: nothing else would."""
    hangs = tmp_path / "hangs"
    duration = f"300.{os.getpid()}"  # this run's own: another run's leftover is not ours to find
    hangs.write_text(f"#!/bin/sh\nexec sleep {duration}\n")
    hangs.chmod(0o755)

    async def scenario() -> None:
        failing = EnvoyProcess("127.0.0.1", 1, binary="/bin/false", work_dir=tmp_path / "false")
        with pytest.raises(RuntimeError):
            await failing.start(timeout=5)
        stuck = EnvoyProcess("127.0.0.1", 1, binary=str(hangs), work_dir=tmp_path / "hangs-dir")
        with pytest.raises(TimeoutError):
            await stuck.start(timeout=1)  # no stop(): a failed start cleans up by itself

    asyncio.run(scenario())
    ours = f"sleep\x00{duration}\x00".encode()
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == ours]
    assert leftovers == []


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
