"""Helpers shared by the integration tests: `portico` subprocesses, atomic
manifest writes (as the conformance runner does) and polling."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

# what a poll treats as "not yet" rather than a failure
RETRYABLE: tuple[type[Exception], ...] = (OSError, http.client.HTTPException, ValueError, KeyError, IndexError)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def portico_command() -> list[str]:
    script = Path(sys.executable).parent / "portico"
    return [str(script)] if script.exists() else [sys.executable, "-m", "portico.cli"]


# every process `start` made, so conftest.py can stop what a failed test left running
STARTED: list[subprocess.Popen[bytes]] = []


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`portico ARGS` in its own process group, output to `log`."""
    with log.open("wb") as out:
        proc = subprocess.Popen(portico_command() + args, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    STARTED.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> int:
    """SIGTERM the process group, SIGKILL after `timeout`; the exit code."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return int(proc.returncode)


def write_atomically(path: Path, docs: list[dict[str, Any]] | str) -> None:
    """As the conformance runner does: write a dot-file, then rename it into place."""
    text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs, sort_keys=False)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
             retry_on: tuple[type[Exception], ...] = RETRYABLE) -> Any:
    """Poll `check` until it returns something truthy; its value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except retry_on as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def gateway_address(admin: int, timeout: float = 30.0) -> str:
    """The address `portico run` (admin API on 127.0.0.1:`admin`) gave a Gateway: the first
    Gateway's that has one."""
    def address() -> str | None:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/objects?kind=Gateway", timeout=2) as r:
            for item in json.load(r)["items"]:
                found = (item.get("status") or {}).get("addresses")
                if found:
                    return str(found[0]["value"])
        return None

    return str(wait_for("the Gateway's address", address, timeout))
