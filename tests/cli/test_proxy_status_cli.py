"""`portico proxy-status` against a running `portico run` with real Envoy processes (one
per Gateway): every connected Envoy listed with its Gateway and the version it applied,
behind the admin token like the rest of /api/."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart"
PORTICO = [sys.executable, "-m", "portico.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proxy_status(admin: str, *args: str, token: str | None = "s3cret") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PORTICO_ADMIN_TOKEN"}
    if token:
        env["PORTICO_ADMIN_TOKEN"] = token
    return subprocess.run([*PORTICO, "proxy-status", "--admin-address", admin, *args], capture_output=True,
                          text=True, env=env, timeout=30)


def test_connected_envoys_and_their_sync_state(tmp_path: Path) -> None:
    admin = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "run.log").open("wb")
    env = {**os.environ, "PORTICO_ADMIN_TOKEN": "s3cret"}
    proc = subprocess.Popen([*PORTICO, "run", str(QUICKSTART), "--admin-address", admin, "--envoy-per-gateway",
                             "--port-offset", str(free_port() - 8080), "--state-dir", str(tmp_path / "state")],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            result = proxy_status(admin, "-o", "json")
            items = json.loads(result.stdout)["items"] if result.returncode == 0 else []
            if items:
                break
            assert time.monotonic() < deadline, (result.stderr, (tmp_path / "run.log").read_text())
            time.sleep(0.2)
        [proxy] = items
        assert proxy["group"] == "default/quickstart" and proxy["state"] == "SYNCED"
        assert proxy["applied"] == proxy["latest"] >= 1 and proxy["nack"] == ""
        table = proxy_status(admin)
        assert table.returncode == 0
        header, row = table.stdout.splitlines()
        assert header.split()[:4] == ["GATEWAY", "NODE", "ADDRESS", "STATE"]
        assert row.startswith("default/quickstart") and "SYNCED" in row
        denied = proxy_status(admin, token=None)
        assert denied.returncode == 1 and "401" in denied.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
