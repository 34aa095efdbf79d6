"""Leader election against the strict double: one leader, hand over on release and on
expiry; and, from the audit log, no two replicas ever write status while the other
holds the lease, with clocks seconds apart or a renewal that hangs."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from kube.emulator import AuditEntry, KubeAPI
from kube.support import controller_client, route, running, until
from portico.leader import LeaderElector
from portico.objects import ObjectKey
from portico.provider.kubernetes import KINDS
from portico.status.kubernetes import KubernetesStatusWriter

ME = "portico.dev/gateway-controller"
KEY = ObjectKey("gateway.networking.k8s.io", "HTTPRoute", "apps", "web")
TIMING = {"lease_duration": 1.0, "renew_deadline": 0.7, "retry_period": 0.1}


def test_one_leader_hand_over_on_release_and_on_expiry() -> None:
    async def main() -> None:
        async with running() as (api, client):
            timing = {"lease_duration": 0.6, "renew_deadline": 0.4, "retry_period": 0.05}
            stops = [asyncio.Event() for _ in range(3)]
            electors = [LeaderElector(client, "portico-system", "portico", f"replica-{i}", **timing)
                        for i in range(3)]
            tasks = [asyncio.create_task(e.run(s)) for e, s in zip(electors, stops, strict=True)]
            await until(lambda: sum(e.leading for e in electors) == 1, what="a leader")
            await asyncio.sleep(0.3)
            assert sum(e.leading for e in electors) == 1  # and only one, over several renewals
            first = next(i for i, e in enumerate(electors) if e.leading)
            stops[first].set()  # a clean shutdown gives the lease up
            await tasks[first]
            loop = asyncio.get_running_loop()
            start = loop.time()
            await until(lambda: sum(e.leading for e in electors) == 1, what="a second leader")
            assert loop.time() - start < 0.5  # at the next retry, not after the lease duration
            second = next(i for i, e in enumerate(electors) if e.leading)
            lease = api.get("coordination.k8s.io", "leases", "portico-system", "portico")
            assert lease is not None and lease["spec"]["holderIdentity"] == f"replica-{second}"
            assert lease["spec"]["leaseTransitions"] >= 1
            electors[second].leading = False  # dies without giving the lease up (no release on the way out)
            tasks[second].cancel()
            start = loop.time()
            await until(lambda: sum(e.leading for e in electors) == 1, timeout=5, what="a third leader")
            third = next(i for i, e in enumerate(electors) if e.leading)
            assert third not in (first, second)
            assert loop.time() - start >= 0.4  # only once the lease expired
            for s in stops:
                s.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


async def replicas(api: KubeAPI, names: tuple[str, ...], seconds: float) -> None:
    """Replicas electing a leader and writing a new status every 20 ms while they lead."""
    stop = asyncio.Event()
    clients = [controller_client(api, name) for name in names]
    electors = [LeaderElector(c, "portico-system", "portico", name, now=api.clock(name), **TIMING)
                for c, name in zip(clients, names, strict=True)]
    writers = [KubernetesStatusWriter(c, KINDS, ME, is_leader=e.is_leader, backoff=(0.05, 0.2), timeout=0.5)
               for c, e in zip(clients, electors, strict=True)]
    counter = itertools.count()

    async def work(writer: KubernetesStatusWriter, name: str) -> None:
        while not stop.is_set():
            writer.write(KEY, {"parents": [{
                "parentRef": {"name": "gw", "namespace": "apps"}, "controllerName": ME, "conditions": [{
                    "type": "Accepted", "status": "True", "reason": "Accepted", "message": f"{name} {next(counter)}",
                    "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}]})
            await asyncio.sleep(0.02)

    for elector, writer in zip(electors, writers, strict=True):
        elector.on_change = lambda leading, w=writer: w.resume() if leading else None
        elector.before_release = writer.settle
    tasks = [asyncio.create_task(e.run(stop)) for e in electors]
    tasks += [asyncio.create_task(work(w, n)) for w, n in zip(writers, names, strict=True)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    for w in writers:
        await w.idle()
    for c in clients:
        await c.close()


def holders(audit: list[AuditEntry]) -> list[tuple[float, str]]:
    """When each successful Lease write took effect, and who held the Lease after it."""
    return sorted((e.end, str((e.object or {}).get("spec", {}).get("holderIdentity") or ""))
                  for e in audit if e.resource == "leases" and e.verb in ("create", "update") and e.code < 300)


def overlapping_writes(audit: list[AuditEntry]) -> list[tuple[float, str, str]]:
    """Status writes made by a replica while the Lease named another holder (or none)."""
    timeline = holders(audit)
    bad = []
    for e in audit:
        if e.subresource == "status" and e.verb == "patch" and e.code < 300:
            holder = next((h for t, h in reversed(timeline) if t <= e.start), "")
            if holder != e.client:
                bad.append((e.start, e.client, holder))
    return bad


def status_writers(audit: list[AuditEntry]) -> set[str]:
    return {e.client for e in audit if e.subresource == "status" and e.code < 300}


def test_skewed_clocks_do_not_take_a_healthy_lease() -> None:
    async def main() -> None:
        async with running() as (api, _):
            api.put(route("web"))
            api.offsets.update({"one": -5.0, "two": +5.0})  # clocks 10 s apart, 10 lease durations
            await replicas(api, ("one", "two"), seconds=3.0)
            assert len({h for _, h in holders(api.audit) if h}) == 1, holders(api.audit)  # never taken over
            assert overlapping_writes(api.audit) == []
            assert len(status_writers(api.audit)) == 1

    asyncio.run(main())


def test_a_hung_renewal_steps_the_leader_down_before_anyone_takes_over() -> None:
    async def main() -> None:
        async with running() as (api, _):
            api.put(route("web"))
            leader: dict[str, Any] = {}

            async def hang_the_leader() -> None:
                await until(lambda: holders(api.audit), what="a leader")
                leader["name"] = holders(api.audit)[-1][1]
                # for 3.5 s (5 renew deadlines) its renewals hang, each arriving 3.5 s late
                hung = api.fault(verb="update", resource="leases", client=leader["name"], delay=3.5, times=None)
                await asyncio.sleep(3.5)
                hung.times = hung.hits

            hang = asyncio.create_task(hang_the_leader())
            await replicas(api, ("one", "two"), seconds=6.0)
            await hang
            assert overlapping_writes(api.audit) == []
            assert status_writers(api.audit) == {"one", "two"}  # the other took over, and wrote
            late = [e for e in api.audit if e.client == leader["name"] and e.resource == "leases"
                    and e.verb == "update" and e.end - e.start >= 3.4]
            assert late and {e.code for e in late} == {409}  # the hung renewals arrived after the takeover

    asyncio.run(main())


def test_a_leader_whose_writes_do_not_finish_still_stops_and_leaves_the_lease_to_expire() -> None:
    """`before_release` that never returns: `run` ends within a lease duration of `stop`,
    and the lease is not given up (the next leader must not write before our last write lands)."""
    async def main() -> None:
        async with running() as (api, client):
            stop = asyncio.Event()
            elector = LeaderElector(client, "portico-system", "portico", "stuck", **TIMING)
            elector.before_release = asyncio.Event().wait  # a write in flight that never ends
            task = asyncio.create_task(elector.run(stop))
            await until(elector.is_leader, what="leading")
            stop.set()
            await asyncio.wait_for(task, TIMING["lease_duration"] + 2)
            lease = api.get("coordination.k8s.io", "leases", "portico-system", "portico") or {}
            assert lease["spec"]["holderIdentity"] == "stuck"

    asyncio.run(main())
