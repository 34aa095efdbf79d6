"""Leader election on a Lease: one leader, hand-over on release and on expiry."""

from __future__ import annotations

import asyncio

from kube.support import running, until
from portico.leader import LeaderElector


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
