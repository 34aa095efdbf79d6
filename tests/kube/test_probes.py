"""The controller's probes as the shipped Deployment uses them: a kind whose LIST keeps
failing holds readiness back (no sync yet) but never liveness, so the kubelet does
not restart a controller that is only waiting for the API server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from kube.support import CLASS, running
from kube.test_controller import options
from portico.controller import serve_controller
from portico.install import render

pytestmark = pytest.mark.timeout(120)


def probes() -> dict[str, str]:
    deployment = next(o for o in render() if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {probe: container[probe]["httpGet"]["path"]
            for probe in ("startupProbe", "livenessProbe", "readinessProbe")}


def test_liveness_does_not_wait_for_the_sync_readiness_does(tmp_path: Path) -> None:
    paths = probes()

    async def main() -> None:
        async with running() as (api, client):
            api.put(CLASS)
            failing = api.fault(verb="list", resource="gatewayclasses", code=500, times=None)
            opts = options(tmp_path)
            stop = asyncio.Event()
            controller = asyncio.create_task(serve_controller(opts, stop, client, start_envoy=False))
            base = f"http://127.0.0.1:{opts.health_port}"
            async with aiohttp.ClientSession() as http:
                async def code(path: str) -> int:
                    try:
                        async with http.get(base + path) as resp:
                            return resp.status
                    except aiohttp.ClientError:
                        return 0

                for _ in range(100):  # the admin server is up
                    if await code(paths["startupProbe"]):
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)  # GatewayClasses still cannot be listed
                assert failing.hits >= 2
                assert await code(paths["startupProbe"]) == 200
                assert await code(paths["livenessProbe"]) == 200
                assert await code(paths["readinessProbe"]) == 503
                failing.times = failing.hits  # the API server recovers
                for _ in range(200):
                    if await code(paths["readinessProbe"]) == 200:
                        break
                    await asyncio.sleep(0.05)
                assert await code(paths["readinessProbe"]) == 200
            stop.set()
            await controller

    asyncio.run(main())
