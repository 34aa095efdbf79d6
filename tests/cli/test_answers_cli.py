"""CLI answers that misled (issue 31 item 10): an unknown Gateway, an unknown Envoy group,
the admin API's own messages, the OpenAPI description."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from portico.admin import OPENAPI, AdminServer
from portico.cli.status import get_json
from portico.store import Store

ROOT = Path(__file__).resolve().parents[2]


def test_config_dump_of_an_unknown_gateway_fails() -> None:
    """It printed {} and exited 0."""
    proc = subprocess.run([sys.executable, "-m", "portico.cli", "config-dump", "--gateway", "default/nope",
                           "-f", str(ROOT / "examples" / "quickstart")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "no Gateway default/nope" in proc.stderr
    known = subprocess.run([sys.executable, "-m", "portico.cli", "config-dump", "--gateway", "default/quickstart",
                            "-f", str(ROOT / "examples" / "quickstart")], capture_output=True, text=True, timeout=120)
    assert known.returncode == 0 and "default/quickstart" in known.stdout


def test_the_admin_apis_message_reaches_the_user() -> None:
    """`config-dump --envoy nope` said "answered 404 Not Found", dropping why."""
    async def scenario() -> str:
        class NoEnvoy:
            def envoy_stats(self, group: str) -> bytes | None:
                return None

            def envoy_admin(self, group: str, path: str) -> bytes | None:
                return None

        server = AdminServer(Store(), envoys=NoEnvoy())
        port = await server.start()
        try:
            def ask() -> str:
                with pytest.raises(OSError) as e:
                    get_json(f"127.0.0.1:{port}", "/api/config_dump", {"format": "envoy", "group": "nope"})
                return str(e.value)

            return await asyncio.to_thread(ask)
        finally:
            await server.stop()

    assert asyncio.run(scenario()).endswith("answered 404 Not Found: no Envoy of that group runs here")


def test_openapi_describes_every_endpoint() -> None:
    """`openapi.json` missed /api/describe and the topology endpoints."""
    served = {r.resource.canonical for r in AdminServer(Store()).app.router.routes()  # type: ignore[union-attr]
              if r.resource is not None}
    assert served - set(OPENAPI["paths"]) - {"/", "/topology/cytoscape.min.js"} == set()
