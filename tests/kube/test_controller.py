"""`portico controller` against the API server double: statuses written (only ours,
no write storm, none rewritten after a restart), and a real local Envoy serving a
route created and then edited in the cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kube.emulator import KubeAPI
from kube.support import (CLASS, CONTROLLER, GATEWAY, SERVICE, controller_client, free_port, obj, route, running,
                          until)
from portico.controller import ControllerOptions, serve_controller
from portico.echo import EchoServer, Identity

pytestmark = pytest.mark.timeout(120)
G = "gateway.networking.k8s.io"
ME, OTHER = "portico.dev/gateway-controller", "example.com/other"


def options(tmp: Path, **extra: Any) -> ControllerOptions:
    # leases a loaded 2-core machine renews in time (a renewal answered after 0.8 s lost a 1 s
    # lease, and a leader flapping that way never wrote a status); hand-overs are by release
    return ControllerOptions(health_port=free_port(), state_dir=str(tmp), lease_duration=3.0, renew_deadline=2.0,
                             retry_period=0.1, retry_missing=0.5, data_plane="local", **extra)


def ours(api: KubeAPI, plural: str, namespace: str, name: str) -> list[dict[str, Any]]:
    stored = api.get(G, plural, namespace, name) or {}
    return [p for p in stored.get("status", {}).get("parents", []) if p.get("controllerName") == ME]


def accepted(entries: list[dict[str, Any]]) -> bool:
    return any(c["type"] == "Accepted" and c["status"] == "True" for e in entries for c in e["conditions"])


def other_entry() -> dict[str, Any]:
    return {"parentRef": {"group": G, "kind": "Gateway", "name": "theirs", "namespace": "apps"},
            "controllerName": OTHER,
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs",
                            "observedGeneration": 1, "lastTransitionTime": "2020-01-01T00:00:00Z"}]}


async def patched_translations(port: int) -> float:
    """portico_translations_patched_total from the controller's /metrics."""
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    return next(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("portico_translations_patched_total"))


def test_statuses_only_ours_no_write_storm_and_none_rewritten_after_a_restart(tmp_path: Path) -> None:
    async def main() -> None:
        async with running() as (api, client):
            for o in (CLASS, GATEWAY, SERVICE):
                api.put(o)
            for i in range(20):
                api.put({**route(f"r{i}"), "status": {"parents": [other_entry()]}})
            stop = asyncio.Event()
            controller = asyncio.create_task(serve_controller(options(tmp_path), stop, client, start_envoy=False))
            await until(lambda: all(accepted(ours(api, "httproutes", "apps", f"r{i}")) for i in range(20)),
                        what="route statuses")
            for i in range(20):  # the other controller's entry is untouched
                stored = api.get(G, "httproutes", "apps", f"r{i}")
                assert stored is not None and stored["status"]["parents"][0] == other_entry()
            # the class's status may follow the routes' (its finalizer patch can cost a conflict)
            await until(lambda: (api.get(G, "gatewayclasses", "", "portico") or {}).get("status"),
                        what="the GatewayClass status")
            gc = api.get(G, "gatewayclasses", "", "portico")
            assert gc is not None and gc["status"]["conditions"][0]["status"] == "True"
            await asyncio.sleep(0.5)
            settled = len(api.status_writes())
            await asyncio.sleep(1.5)  # quiet: lease renewals only, no status write
            assert len(api.status_writes()) == settled, api.status_writes()[settled:]
            # at most one write per object (the Gateway's Programmed waits for an Envoy: none here)
            per_object: dict[tuple[str, str], int] = {}
            for w in api.status_writes():
                per_object[(w.plural, w.name)] = per_object.get((w.plural, w.name), 0) + 1
            assert max(per_object.values()) == 1, per_object
            stop.set()
            await controller
            # a restarted controller (new identity: it waits for the released lease) rewrites nothing
            stop = asyncio.Event()
            # a new process: a client of its own (the first one's cancelled watches may still hold connections)
            fresh = controller_client(api, "second")
            second = options(tmp_path, identity="second")
            port = second.health_port
            restarted = asyncio.create_task(serve_controller(second, stop, fresh, start_envoy=False))
            await until(lambda: (api.get("coordination.k8s.io", "leases", "portico-system", "portico-controller")
                                 or {}).get("spec", {}).get("holderIdentity") == "second", what="the new leader")
            await asyncio.sleep(1.0)
            assert len(api.status_writes()) == settled, api.status_writes()[settled:]
            # a new route still gets its status: one watch event, one patched translation
            patched = await patched_translations(port)
            api.put(route("late"))
            await until(lambda: accepted(ours(api, "httproutes", "apps", "late")), what="the late route")
            assert await patched_translations(port) == patched + 1
            stop.set()
            await restarted
            await fresh.close()

    asyncio.run(main())


def test_traffic_through_a_local_envoy_follows_the_cluster(tmp_path: Path) -> None:
    async def main() -> None:
        echo = EchoServer(Identity(pod="web-1", namespace="apps", service="web"))
        echo_port = await echo.start()
        async with running() as (api, client):
            gateway = obj(f"{G}/v1", "Gateway", "gw", "apps", spec={
                "gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
            slice_ = obj("discovery.k8s.io/v1", "EndpointSlice", "web-1", "apps", addressType="IPv4",
                         endpoints=[{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                         ports=[{"name": "http", "port": echo_port, "protocol": "TCP"}])
            slice_["metadata"]["labels"] = {"kubernetes.io/service-name": "web"}  # type: ignore[index]
            for o in (CLASS, gateway, SERVICE, slice_, route("web", hostnames=["web.example.com"])):
                api.put(o)
            stop = asyncio.Event()
            opts = options(tmp_path, port_offset=free_port() - 80, leader_elect=False)
            controller = asyncio.create_task(serve_controller(opts, stop, client))
            try:
                def address() -> str | None:
                    gw = api.get(G, "gateways", "apps", "gw") or {}
                    programmed = any(c["type"] == "Programmed" and c["status"] == "True"
                                     for c in gw.get("status", {}).get("conditions", []))
                    addresses = gw.get("status", {}).get("addresses") or [{}]
                    return addresses[0].get("value") if programmed else None

                await until(lambda: address() is not None, timeout=30, what="Programmed=True")
                url = f"http://{address()}:{80 + opts.port_offset}/"
                async with aiohttp.ClientSession() as http:
                    async def answer(host: str) -> int:
                        try:
                            async with http.get(url, headers={"Host": host}) as resp:
                                return resp.status
                        except aiohttp.ClientError:
                            return 0

                    assert await answer("web.example.com") == 200
                    assert await answer("other.example.com") == 404
                    # an edit in the cluster goes live
                    api.put(route("web", hostnames=["other.example.com"]))
                    for _ in range(100):
                        if await answer("other.example.com") == 200:
                            break
                        await asyncio.sleep(0.05)
                    assert await answer("other.example.com") == 200
                    assert await answer("web.example.com") == 404
                    # the API server goes away: Envoy keeps serving; back, the controller resyncs
                    api.down = True
                    await api.drop_watches()
                    await asyncio.sleep(1.0)
                    assert await answer("other.example.com") == 200
                    api.put(route("web", hostnames=["back.example.com"]))  # changed while unseen
                    api.down = False
                    for _ in range(200):
                        if await answer("back.example.com") == 200:
                            break
                        await asyncio.sleep(0.05)
                    assert await answer("back.example.com") == 200
            finally:
                stop.set()
                await controller
                await echo.stop()

    asyncio.run(main())


def test_the_portico_controller_command_with_a_kubeconfig(tmp_path: Path) -> None:
    """As a user runs it: `portico controller --kubeconfig FILE`, then SIGTERM."""
    import shutil
    import signal
    import sys

    import yaml

    async def main() -> None:
        async with running() as (api, client):
            for o in (CLASS, GATEWAY, SERVICE, route("web")):
                api.put(o)
            url = api.base_url
            kubeconfig = tmp_path / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
                "clusters": [{"name": "emulator", "cluster": {"server": url}}],
                "users": [{"name": "me", "user": {"token": api.token("cli", CONTROLLER)}}],
                "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "me"}}]}))
            portico = shutil.which("portico", path=str(Path(sys.executable).parent)) or "portico"
            proc = await asyncio.create_subprocess_exec(
                portico, "controller", "--kubeconfig", str(kubeconfig), "--namespace", "portico-system",
                "--health-address", f"127.0.0.1:{free_port()}", "--state-dir", str(tmp_path / "state"),
                "--retry-period", "0.1", "--log-level", "warning", "--data-plane", "local")
            try:
                await until(lambda: accepted(ours(api, "httproutes", "apps", "web")), timeout=30,
                            what="the route's status")
                lease = api.get("coordination.k8s.io", "leases", "portico-system", "portico-controller")
                assert lease is not None and lease["spec"]["holderIdentity"]
            finally:
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 20) == 0
            lease = api.get("coordination.k8s.io", "leases", "portico-system", "portico-controller")
            assert lease is not None and not lease["spec"].get("holderIdentity")  # given up on the way out

    asyncio.run(main())


def test_a_controller_stops_promptly_while_its_status_writes_back_off(tmp_path: Path) -> None:
    """`stop` while every status write waits a long Retry-After (a throttling API server):
    the controller stops at once, and the next leader writes the status."""
    async def main() -> None:
        async with running() as (api, client):
            for o in (CLASS, GATEWAY, SERVICE, route("web")):
                api.put(o)
            throttled = api.fault(verb="patch", resource="httproutes/status", code=429, retry_after=60, times=None)
            stop = asyncio.Event()
            controller = asyncio.create_task(serve_controller(options(tmp_path / "one", identity="one"), stop,
                                                              client, start_envoy=False))
            await until(lambda: throttled.hits >= 1, timeout=20, what="a throttled status write")
            stop.set()
            await asyncio.wait_for(controller, 10)
            throttled.times = throttled.hits  # the API server recovers
            stop = asyncio.Event()
            fresh = controller_client(api, "two")
            second = asyncio.create_task(serve_controller(options(tmp_path / "two", identity="two"), stop, fresh,
                                                          start_envoy=False))
            await until(lambda: accepted(ours(api, "httproutes", "apps", "web")), timeout=20, what="the status")
            stop.set()
            await asyncio.wait_for(second, 10)
            await fresh.close()

    asyncio.run(main())


def test_leader_hand_over_between_two_controllers(tmp_path: Path) -> None:
    """Both watch and translate; only the leader writes; the other takes over when it stops."""
    async def main() -> None:
        async with running() as (api, client):
            for o in (CLASS, GATEWAY, SERVICE, route("first")):
                api.put(o)
            stops = [asyncio.Event(), asyncio.Event()]
            controllers = [asyncio.create_task(serve_controller(options(tmp_path / name, identity=name), stop,
                                                                client, start_envoy=False))
                           for name, stop in zip(("one", "two"), stops, strict=True)]
            await until(lambda: accepted(ours(api, "httproutes", "apps", "first")), what="the first status")

            def holder() -> str:
                lease = api.get("coordination.k8s.io", "leases", "portico-system", "portico-controller") or {}
                return str(lease.get("spec", {}).get("holderIdentity") or "")

            leader = holder()
            assert leader in ("one", "two")
            index = ("one", "two").index(leader)
            stops[index].set()
            await controllers[index]
            await until(lambda: holder() == ("two", "one")[index], what="the other controller leading")
            api.put(route("second"))
            await until(lambda: accepted(ours(api, "httproutes", "apps", "second")), what="the new leader's write")
            stops[1 - index].set()
            await controllers[1 - index]

    asyncio.run(main())
