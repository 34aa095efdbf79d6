"""Structured logs: JSON lines with the timeline of every applied change."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_control_loop import CLASS, GATEWAY, EmulatedStore, FakeXds, docs, host

from portico.control import ControlLoop
from portico.logs import JSONFormatter

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


def test_a_json_line_holds_the_record_and_its_fields() -> None:
    record = logging.LogRecord("portico.control", logging.INFO, "f", 1, "applied %s", ("x",), None)
    record.fields = {"event": "change_applied", "acked_ms": 3.5}
    line = json.loads(JSONFormatter().format(record))
    assert line["message"] == "applied x" and line["level"] == "info" and line["logger"] == "portico.control"
    assert line["event"] == "change_applied" and line["acked_ms"] == 3.5 and line["time"].endswith("+00:00")


def test_every_applied_change_logs_its_timeline(caplog: pytest.LogCaptureFixture) -> None:
    loop = ControlLoop(EmulatedStore(), host(), FakeXds())
    with caplog.at_level(logging.INFO, "portico.control"):
        loop.apply(docs(CLASS, GATEWAY))
        assert loop.sync()
        loop.on_ack("portico", 1)
        loop.on_ack("portico", 1)  # a second ACK of the same version logs nothing more
    applied = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "change_applied"]
    assert len(applied) == 1
    fields = applied[0].fields  # type: ignore[attr-defined]
    assert fields["group"] == "portico" and fields["version"] == 1
    assert 0 <= fields["translated_ms"] <= fields["pushed_ms"] <= fields["acked_ms"]


def test_portico_run_logs_json_lines(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "portico.cli", "run", str(QUICKSTART / "gateway.yaml"),
                             "--admin-address", f"127.0.0.1:{port}", "--port-offset", "30000",
                             "--state-dir", str(tmp_path / "state"), "--log-format", "json"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 30
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(json.loads(line))  # every line is one JSON object
            if any(entry.get("event") == "change_applied" for entry in lines):
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert any(entry.get("event") == "change_applied" for entry in lines), lines[-5:]


def test_an_unknown_log_format_is_refused() -> None:
    out = subprocess.run([sys.executable, "-m", "portico.cli", "run", str(QUICKSTART), "--log-format", "xml"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "log format" in out.stderr
