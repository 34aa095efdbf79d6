"""`portico run`'s processes and files over its life (issue 31, items 4-7): the bulk
helpers (forkserver, workers, resource tracker) die with a control plane killed with
-9, and a new instance stops any a dead one left; they never run a module from the
working directory; SIGTERM stops cleanly, without a traceback, and removes the state
directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from support import free_port, portico_command, stop, wait_for, write_atomically

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: no bulk worker processes")]
GW = "gateway.networking.k8s.io/v1"


def manifests(listener: int) -> list[dict[str, Any]]:
    return [
        {"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "portico",
                  "listeners": [{"name": "http", "port": listener, "protocol": "HTTP"}]}},
    ]


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[0] != "Z"


def descendants(pid: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        found.update(children)
        todo.extend(children)
    return found


def helpers_of(pid: int) -> list[int]:
    """The bulk helpers of `portico run` `pid`: its multiprocessing processes (the resource
    tracker, the forkserver and its workers)."""
    out = []
    for child in descendants(pid):
        try:
            if b"multiprocessing" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(child)
        except OSError:
            pass
    return sorted(out)


class Instance:
    """`portico run` of one Gateway, on a free admin port, in the default state directory."""

    def __init__(self, tmp_path: Path, cwd: Path | None = None) -> None:
        self.root = tmp_path / "manifests"
        self.root.mkdir(exist_ok=True)
        write_atomically(self.root / "all.yaml", manifests(free_port()))
        self.admin = free_port()
        # the default state directory: portico-<uid>/<admin host>-<port> under $XDG_RUNTIME_DIR
        # (short: Envoy's Unix socket paths under it must fit in 108 bytes)
        self.runtime = Path(tempfile.mkdtemp(prefix="xdg-"))
        self.state = self.runtime / f"portico-{os.getuid()}" / f"127.0.0.1-{self.admin}"
        self.cwd = cwd or tmp_path
        self.tmp_path = tmp_path
        self.helpers: list[int] = []

    def start(self, log: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime)}
        with (self.tmp_path / log).open("wb") as out:
            proc = subprocess.Popen(
                portico_command() + ["run", str(self.root), "--admin-address", f"127.0.0.1:{self.admin}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env=env, cwd=self.cwd)
        try:
            # the resource tracker, the forkserver and two workers (BulkPool: two on 2 cores)
            self.helpers = wait_for("the bulk helpers up", lambda: len(h := helpers_of(proc.pid)) >= 4 and h,
                                    timeout=60)
        except AssertionError:
            stop(proc)
            raise
        return proc

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *_: object) -> None:
        # an Envoy a failed test left for adoption (it runs under its own shell, in its session)
        for pid_file in self.state.glob("envoy/*/envoy.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.killpg(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        shutil.rmtree(self.runtime, ignore_errors=True)


def terminate(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM to `portico run` alone (as `kill PID` does; not its process group)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            stop(proc)
    return int(proc.returncode)


def test_helpers_die_with_a_control_plane_killed_with_9(tmp_path: Path) -> None:
    """Item 4: they ran on forever (139 MB) and `make test` leaked them the same way."""
    with Instance(tmp_path) as instance:
        _killed(instance)


def _killed(instance: Instance) -> None:
    first = instance.start("first.log")
    second = None
    try:
        pids = instance.helpers
        os.kill(first.pid, signal.SIGKILL)  # the control plane only (Envoy outlives it, for adoption)
        first.wait(5)
        wait_for("the helpers gone", lambda: not [p for p in pids if alive(p)], timeout=10)
        second = instance.start("second.log")  # adopts the Envoy; its own helpers
        assert not set(instance.helpers) & set(pids)
    finally:
        stop(first)
        with contextlib.suppress(ProcessLookupError):  # its helpers, if they outlived it
            os.killpg(first.pid, signal.SIGKILL)
        if second is not None:
            assert terminate(second) == 0


def test_helpers_do_not_run_modules_of_the_working_directory(tmp_path: Path) -> None:
    """Item 5: `python -c` put the working directory first on the helpers' sys.path, so a
    `token.py` there shadowed the standard library's and was run."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    marker = tmp_path / "token-ran"
    (cwd / "token.py").write_text(f"open({str(marker)!r}, 'a').write('ran\\n')\n")
    with Instance(tmp_path, cwd=cwd) as instance:
        _token(instance, marker)


def _token(instance: Instance, marker: Path) -> None:
    proc = instance.start("run.log")
    try:
        assert not marker.exists(), "a helper ran token.py from the working directory"
    finally:
        assert terminate(proc) == 0


def test_sigterm_stops_cleanly_and_removes_the_state_directory(tmp_path: Path) -> None:
    """Items 6 and 7: no traceback (concurrent.futures' exit hook raced the pool's
    shutdown), no helper left, and the state directory (xds.sock, Envoy work dirs,
    addresses) removed as the README says."""
    with Instance(tmp_path) as instance:
        _terminated(instance)


def _terminated(instance: Instance) -> None:
    proc = instance.start("run.log")
    pids = instance.helpers
    assert instance.state.is_dir()
    assert terminate(proc) == 0
    log = (instance.tmp_path / "run.log").read_text()
    assert "Traceback" not in log, log
    wait_for("the helpers gone", lambda: not [p for p in pids if alive(p)], timeout=10)
    assert not instance.state.exists()
