"""KubernetesStatusWriter against the API server double: only our entries, only on
change, coalesced, conflicts retried, only the leader."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from kube.support import route, running, until
from portico.objects import ObjectKey
from portico.provider.kubernetes import KINDS
from portico.status.kubernetes import KubernetesStatusWriter, set_within

G = "gateway.networking.k8s.io"
ME, OTHER = "portico.dev/gateway-controller", "example.com/other"
KEY = ObjectKey(G, "HTTPRoute", "apps", "web")


def entry(controller: str, gateway: str, accepted: str = "True") -> dict[str, Any]:
    return {"parentRef": {"group": G, "kind": "Gateway", "name": gateway, "namespace": "apps"},
            "controllerName": controller,
            "conditions": [{"type": "Accepted", "status": accepted, "reason": "Accepted", "message": "",
                            "observedGeneration": 1, "lastTransitionTime": "1970-01-01T00:00:00Z"}]}


def test_only_our_entries_only_on_change_and_coalesced() -> None:
    async def main() -> None:
        async with running() as (api, client):
            api.put({**route("web"), "status": {"parents": [entry(OTHER, "theirs")]}})
            writer = KubernetesStatusWriter(client, KINDS, ME, clock=lambda: "2026-12-02T00:00:00Z")
            for accepted in ("False", "True", "False", "True"):  # a burst: the latest wins
                writer.write(KEY, {"parents": [entry(ME, "gw", accepted)]})
            await writer.idle()
            stored = api.get(G, "httproutes", "apps", "web")
            assert stored is not None
            parents = stored["status"]["parents"]
            assert [p["controllerName"] for p in parents] == [OTHER, ME]  # theirs kept, untouched
            assert parents[0] == entry(OTHER, "theirs")
            assert parents[1]["conditions"][0]["status"] == "True"
            assert parents[1]["conditions"][0]["lastTransitionTime"] == "2026-12-02T00:00:00Z"
            assert len(api.status_writes()) <= 2
            writes = len(api.status_writes())
            writer.write(KEY, {"parents": [entry(ME, "gw", "True")]})  # nothing new
            await writer.idle()
            assert len(api.status_writes()) == writes
            # released: our entry leaves, theirs stays
            writer.release(keep=[])
            await writer.idle()
            stored = api.get(G, "httproutes", "apps", "web")
            assert stored is not None and stored["status"]["parents"] == [entry(OTHER, "theirs")]

    asyncio.run(main())


def test_a_conflict_is_retried_on_the_object_as_it_is_now() -> None:
    async def main() -> None:
        async with running() as (api, client):
            api.put(route("web"))
            stale = copy.deepcopy(api.get(G, "httproutes", "apps", "web"))
            assert stale is not None
            # another controller writes its entry after our read
            api.put({**route("web"), "status": {"parents": [entry(OTHER, "theirs")]}})
            writer = KubernetesStatusWriter(client, KINDS, ME,
                                            lookup=lambda key: ({}, stale["metadata"]["resourceVersion"]))
            writer.write(KEY, {"parents": [entry(ME, "gw")]})
            await writer.idle()
            stored = api.get(G, "httproutes", "apps", "web")
            assert stored is not None
            assert [p["controllerName"] for p in stored["status"]["parents"]] == [OTHER, ME]
            statuses = [w for w in api.status_writes()]
            assert len(statuses) == 1  # the 409 wrote nothing; the retry did

    asyncio.run(main())


def test_only_the_leader_writes_and_a_new_leader_writes_what_it_holds() -> None:
    async def main() -> None:
        async with running() as (api, client):
            api.put(route("web"))
            leading = False
            writer = KubernetesStatusWriter(client, KINDS, ME, is_leader=lambda: leading)
            writer.write(KEY, {"parents": [entry(ME, "gw")]})
            await writer.idle()
            assert api.status_writes() == []
            leading = True
            writer.resume()
            await writer.idle()
            assert len(api.status_writes()) == 1

    asyncio.run(main())


def test_refused_and_timed_out_writes_are_retried_honouring_retry_after() -> None:
    async def main() -> None:
        async with running() as (api, client):
            api.put(route("web"))
            throttled = api.fault(verb="patch", resource="httproutes/status", code=429, retry_after=1)
            failing = api.fault(verb="patch", resource="httproutes/status", code=503, times=2)
            hung = api.fault(verb="patch", resource="httproutes/status", delay=2.0)  # answered too late
            writer = KubernetesStatusWriter(client, KINDS, ME, backoff=(0.05, 0.2), timeout=0.5)
            loop = asyncio.get_running_loop()
            start = loop.time()
            writer.write(KEY, {"parents": [entry(ME, "gw")]})
            await asyncio.wait_for(writer.idle(), 10)
            assert throttled.hits == 1 and failing.hits == 2 and hung.hits == 1
            assert loop.time() - start >= 1.0  # the server's Retry-After, not the backoff, after the 429
            stored = api.get(G, "httproutes", "apps", "web")
            assert stored is not None and stored["status"]["parents"][0]["controllerName"] == ME

    asyncio.run(main())


def test_other_controllers_entries_around_ours_cost_no_write() -> None:
    async def main() -> None:
        async with running() as (api, client):
            api.put({**route("web"), "status": {"parents": [entry(ME, "gw"), entry(OTHER, "theirs")]}})
            writer = KubernetesStatusWriter(client, KINDS, ME)
            writer.write(KEY, {"parents": [entry(ME, "gw")]})
            await writer.idle()
            assert api.status_writes() == []

    asyncio.run(main())


def test_settle_does_not_wait_for_a_write_backing_off_and_keeps_its_status_desired() -> None:
    """Shutdown (or leadership given up) while a write waits a long Retry-After: `settle`
    returns at once, and the status is written when leadership resumes."""
    async def main() -> None:
        async with running() as (api, client):
            api.put(route("web"))
            throttled = api.fault(verb="patch", resource="httproutes/status", code=429, retry_after=60)
            writer = KubernetesStatusWriter(client, KINDS, ME, backoff=(0.05, 0.2), timeout=0.5)
            writer.write(KEY, {"parents": [entry(ME, "gw")]})
            await until(lambda: throttled.hits == 1, what="the throttled write")
            await asyncio.wait_for(writer.settle(), 2)
            stored = api.get(G, "httproutes", "apps", "web")
            assert stored is not None and not (stored.get("status") or {}).get("parents")
            writer.resume()  # leading again (or the next leader): the status is still wanted
            await asyncio.wait_for(writer.idle(), 10)
            stored = api.get(G, "httproutes", "apps", "web")
            assert stored is not None and stored["status"]["parents"][0]["controllerName"] == ME

    asyncio.run(main())


def test_a_write_waits_for_its_hold_and_settle_does_not() -> None:
    """`hold` (the controller's: until Envoy answered the configuration just pushed) comes
    before the write is sent; `settle` does not wait for a held write, whose status stays
    desired and is written when leadership resumes."""
    async def main() -> None:
        async with running() as (api, client):
            api.put(route("web"))
            answered = asyncio.Event()
            writer = KubernetesStatusWriter(client, KINDS, ME, hold=lambda: set_within(answered, 60))
            writer.write(KEY, {"parents": [entry(ME, "gw")]})
            await asyncio.sleep(0.2)  # the write would be answered by now (loopback)
            assert api.status_writes() == []
            await asyncio.wait_for(writer.settle(), 2)
            assert api.status_writes() == []
            writer.resume()
            await asyncio.sleep(0.05)
            assert api.status_writes() == []
            answered.set()
            await asyncio.wait_for(writer.idle(), 10)
            assert len(api.status_writes()) == 1
            answered.clear()  # a bounded hold: written all the same when no answer comes
            writer.write(KEY, {"parents": [entry(ME, "gw", "False")]})
            writer.hold = lambda: set_within(answered, 0.05)
            await asyncio.wait_for(writer.idle(), 10)
            assert len(api.status_writes()) == 2

    asyncio.run(main())
