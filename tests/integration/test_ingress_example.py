"""examples/ingress/run.sh as a new user runs it: it starts the backend the example's
EndpointSlice names (:9101) and Portico, prints a curl command, and that command is
answered by the backend, through the Ingress's rewrite."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import free_port, wait_for

pytestmark = pytest.mark.timeout(120)
RUN = Path(__file__).resolve().parents[2] / "examples" / "ingress" / "run.sh"


def test_the_ingress_example_starts_its_own_backend(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PORTICO_ADMIN": f"127.0.0.1:{free_port()}", "PORTICO_PORT_OFFSET": str(free_port() - 80)}
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", str(RUN)], stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=tmp_path)
    try:
        command = wait_for("the curl command", lambda: re.search(
            r"curl -H 'Host: (\S+)' http://([\d.]+):(\d+)(/\S*)", log.read_text()), 60)
        host, ip, port, path = command.groups()

        def get() -> tuple[int, dict[str, str]] | None:
            conn = http.client.HTTPConnection(ip, int(port), timeout=5)
            try:
                conn.request("GET", path, headers={"Host": host})
                resp = conn.getresponse()
                return (resp.status, json.loads(resp.read())) if resp.status == 200 else None
            finally:
                conn.close()

        status, reply = wait_for("the example answered", get, 30)
        assert reply["pod"] == "web-1" and reply["path"] == "/items", reply
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
