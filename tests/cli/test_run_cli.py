"""`portico run` and `make run` when another instance is up (issue 31 item 8)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@contextmanager
def listening() -> Iterator[int]:
    """A port something else listens on (as another instance's admin API would)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_busy_admin_port_hints_at_admin_address() -> None:
    with listening() as port:
        proc = subprocess.run([str(BIN / "portico"), "run", str(ROOT / "examples" / "quickstart"),
                               "--admin-address", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"the admin address 127.0.0.1:{port} is in use" in proc.stderr
    assert "--admin-address" in proc.stderr


def test_make_run_beside_another_instance_does_not_report_its_gateway() -> None:
    """A second `make run` printed "programmed. Try: curl ..." from the first instance's
    admin API, then failed on the echo ports. It now stops at once and says why."""
    with listening() as port:
        env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PORTICO_ADMIN": f"127.0.0.1:{port}"}
        # (its own session: were it to start its backends, they are stopped with it)
        proc = subprocess.Popen([str(ROOT / "examples" / "quickstart" / "run.sh")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    assert proc.returncode == 1
    assert "programmed" not in stdout
    assert f"the admin address 127.0.0.1:{port}" in stderr and "in use" in stderr
