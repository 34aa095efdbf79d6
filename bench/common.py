"""What every benchmark shares: processes, manifests on disk, HTTP, statistics, results.

Processes are started as a user would (`portico run`, `portico echo`) in their own
session, and always stopped (SIGTERM, then SIGKILL) by process group. All traffic
goes to 127.0.0.0/8. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import manifests

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchError(RuntimeError):
    """A benchmark could not run (a process died, a wait timed out)."""


# ---------------------------------------------------------------- small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_path(name: str) -> str:
    """A console script of this venv (`portico`, `envoy`), else PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"{name} not found (run `make setup`)")
    return found


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll `check` until it returns something truthy; BenchError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError, TypeError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def render(docs: Sequence[dict[str, Any]]) -> str:
    return yaml.dump_all(list(docs), Dumper=_Dumper, sort_keys=False)


def write_docs(path: Path, docs: Sequence[dict[str, Any]] | str) -> None:
    """Write atomically (a dot-file renamed into place): the watcher never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(docs if isinstance(docs, str) else render(docs))
    os.replace(tmp, path)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else math.nan


# ---------------------------------------------------------------- /proc


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status(pid: int, key: str) -> int:
    """A /proc/<pid>/status size in bytes (VmRSS: resident now, VmHWM: peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def descendants(pid: int) -> list[int]:
    out, todo = [], children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children(child)
    return out


def envoy_pids(pid: int) -> list[int]:
    """The Envoys `portico run` (pid) started: below it, each under its shell (infra/envoy.py)."""
    out = []
    for p in descendants(pid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{p}/comm").read_text().strip() == "envoy":
                out.append(p)
    return sorted(out)


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = proc_meminfo_total()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "envoy": envoy_version()}


def proc_meminfo_total() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def envoy_version() -> str:
    try:
        out = subprocess.run([bin_path("envoy"), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError, BenchError):
        return ""
    return out.strip().rsplit(" ", 1)[-1].split("/")[1] if "/" in out else out.strip()


# ---------------------------------------------------------------- processes


class Process:
    """A child process in its own session, its output in a log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.args[0]} exited with {self.proc.returncode}; log {self.log}:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    def ready(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
        """`wait_until(check)`, failing fast if the process dies; stops the process if it never gets ready."""
        def checked() -> Any:
            self.check()
            return check()

        try:
            return wait_until(what, checked, timeout, interval)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class Echo(Process):
    """`portico echo` on 127.0.0.1:port."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.port = free_port()
        self.name = name
        super().__init__([bin_path("portico"), "echo", "--port", str(self.port), "--name", name,
                          "--log-level", "warning"], workdir / f"echo-{name}.log")
        self.ready(f"echo {name}", lambda: _connects("127.0.0.1", self.port), 20)


def _connects(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True


class Portico(Process):
    """`portico run DIR` with its own admin port, port offset and address pool."""

    def __init__(self, workdir: Path, manifests_dir: Path, port_offset: int | None = None,
                 extra_args: tuple[str, ...] = (), log_level: str = "warning", log_format: str = "text") -> None:
        self.admin_port = free_port()
        self.port_offset = port_offset if port_offset is not None else random.randint(20000, 40000)
        pool = f"127.{random.randint(30, 250)}.{random.randint(0, 255)}.0/24"
        self.started = time.monotonic()
        super().__init__([bin_path("portico"), "run", str(manifests_dir), "--admin-address",
                          f"127.0.0.1:{self.admin_port}", "--port-offset", str(self.port_offset),
                          "--address-pool", pool, "--log-level", log_level, "--log-format", log_format, *extra_args],
                         workdir / "portico.log")
        self.address = ""

    @property
    def listener_port(self) -> int:
        return manifests.LISTENER_PORT + self.port_offset

    def envoy_pid(self) -> int | None:
        pids = envoy_pids(self.pid)
        return pids[0] if pids else None

    def admin(self, path: str, timeout: float = 30) -> Any:
        self.check()
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise ValueError(f"admin {path}: {resp.status}")  # not yet (wait_until retries)
            return json.loads(body)
        finally:
            conn.close()

    def objects(self, kind: str, name: str = "", namespace: str = "") -> list[dict[str, Any]]:
        query = f"kind={kind}" + (f"&name={name}" if name else "") + (f"&namespace={namespace}" if namespace else "")
        return list(self.admin(f"/api/objects?{query}")["items"])

    def gateway(self) -> dict[str, Any]:
        items = self.objects("Gateway", manifests.GATEWAY_NAME, manifests.GATEWAY_NS)
        return items[0] if items else {}

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until("portico /healthz", lambda: self.admin("/healthz").get("status") == "ok", timeout, 0.05)

    def wait_programmed(self, attached: int, timeout: float = 120, interval: float = 0.05) -> dict[str, Any]:
        """Wait until the Gateway is Programmed with `attached` routes on its listener; sets `address`."""

        def done() -> dict[str, Any] | None:
            gw = self.gateway()
            status = gw.get("status") or {}
            if not programmed(status) or attached_routes(status) != attached:
                return None
            return gw

        gw = wait_until(f"Gateway Programmed with {attached} routes", done, timeout, interval)
        self.address = gw["status"]["addresses"][0]["value"]
        return dict(gw)

    def stats(self) -> dict[str, float]:
        """Control plane CPU seconds and RSS (now and peak); Envoy's RSS."""
        envoy = self.envoy_pid()
        return {
            "cp_cpu_s": proc_cpu_seconds(self.pid),
            "cp_rss_mib": proc_status(self.pid, "VmRSS") / 2**20,
            "cp_peak_rss_mib": proc_status(self.pid, "VmHWM") / 2**20,
            "envoy_rss_mib": proc_status(envoy, "VmRSS") / 2**20 if envoy else math.nan,
            "envoy_cpu_s": proc_cpu_seconds(envoy) if envoy else math.nan,
        }


def programmed(status: dict[str, Any]) -> bool:
    return any(c.get("type") == "Programmed" and c.get("status") == "True" for c in status.get("conditions") or [])


def attached_routes(status: dict[str, Any]) -> int:
    return sum(int(ls.get("attachedRoutes", 0)) for ls in status.get("listeners") or [])


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"portico-bench-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running(*procs: Process) -> Iterator[None]:
    try:
        yield
    finally:
        for p in reversed(procs):
            p.stop()


# ---------------------------------------------------------------- HTTP


class Client:
    """One keep-alive HTTP/1.1 connection (reopened after an error)."""

    def __init__(self, host: str, port: int, timeout: float = 5) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str, host_header: str,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request("GET", path, headers={"Host": host_header, **(headers or {})})
            resp = self.conn.getresponse()
            body = resp.read()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            if resp.will_close:
                self.close()
            return resp.status, headers, body
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------- results


@dataclass
class Report:
    """A benchmark's results: rows for the table, one summary line, JSON on disk."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    summary: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)

    def target(self, what: str, goal: str, value: Any, met: bool) -> None:
        self.targets.append({"target": what, "goal": goal, "value": value, "met": met})

    def table(self) -> str:
        cells = [[str(c) for c in self.columns]] + [[fmt(v) for v in row] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)

    def emit(self, results_dir: Path = RESULTS_DIR) -> Path:
        print(f"\n## {self.title}\n")
        print(self.table())
        for t in self.targets:
            print(f"target: {t['target']} ({t['goal']}): {fmt(t['value'])} -> {'MET' if t['met'] else 'MISSED'}")
        print(f"SUMMARY {self.name}: {self.summary}", flush=True)
        results_dir.mkdir(parents=True, exist_ok=True)
        path = results_dir / f"{self.name}.json"
        payload = {"benchmark": self.name, "title": self.title, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "machine": machine(), "columns": self.columns, "rows": self.rows, "summary": self.summary,
                   "targets": self.targets, "data": self.data}
        path.write_text(json.dumps(payload, indent=2, default=str))
        return path


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)
