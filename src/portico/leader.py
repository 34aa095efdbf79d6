"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's leaderelection
semantics.

Every controller replica watches and translates; only the leader writes status
(and, with the Kubernetes infrastructure, applies Deployments), so a failover
costs one lease expiry, not a resync.

- Expiry is judged on the local clock only: a replica notes when it first saw the
  Lease record as it is now (its observed time); the lease is free once that
  record has not changed for `lease_duration`. The holder's renewTime is written
  for humans and never compared with our clock, so a skewed clock cannot make a
  healthy lease look expired.
- The holder renews every `retry_period`. Each attempt is bounded: the holder is
  the leader only until `renew_deadline` after it *sent* its last successful
  renewal (`is_leader()` checks the clock, so a renewal that hangs cannot keep it
  writing); a follower takes over no sooner than `lease_duration` after it saw
  that renewal, which was after it was sent. With renew_deadline < lease_duration
  (enforced), the old leader has stopped before anyone can take over.
- Every write names the Lease's resourceVersion: two replicas racing for a free
  lease cannot both win, and a renewal that arrives late fails.
- On shutdown the leader stops acting as leader, lets `before_release` finish
  (status writes in flight), then gives the lease up (holderIdentity cleared), so
  the next one takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx2 as httpx  # lightkube's HTTP client
from lightkube import AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from portico.kubeapi import status_code

log = logging.getLogger(__name__)


class LeaderElector:
    def __init__(self, client: AsyncClient, namespace: str, name: str, identity: str, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_change: Callable[[bool], None] | None = None,
                 before_release: Callable[[], Awaitable[None]] | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_change = on_change
        self.before_release = before_release
        self.now = now  # the wall clock, for the timestamps written (never compared)
        self.monotonic = monotonic  # the local clock every decision is made on
        self.leading = False
        self._valid_until = 0.0  # local time after which we no longer act as leader
        self._observed: tuple[Any, ...] | None = None  # the Lease record as last seen
        self._observed_at = 0.0  # local time it was first seen as it is

    def is_leader(self) -> bool:
        return self.leading and self.monotonic() < self._valid_until

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                sent = self.monotonic()
                # a leader's attempt may last until its deadline; a follower's, a renew deadline
                budget = self._valid_until - sent if self.leading else self.renew_deadline
                try:
                    async with asyncio.timeout(max(budget, 0.0)):
                        won = await self._try_acquire_or_renew()
                except Exception as e:  # noqa: BLE001 (the API server may be away or slow: keep trying)
                    log.warning("leader election: %s: %s", type(e).__name__, e)
                    won = False
                if won and self.monotonic() < sent + self.renew_deadline:
                    self._valid_until = sent + self.renew_deadline
                    self._set(True)
                elif won:  # an answer later than the deadline (a loaded machine): not leading on it
                    log.warning("%s: the lease write took longer than %.1f s; not acting on it", self.identity,
                                self.renew_deadline)
                    if self.leading:
                        self._set(False)
                elif self.leading and self.monotonic() >= self._valid_until:
                    log.warning("%s could not renew the lease within %.1f s: stepping down", self.identity,
                                self.renew_deadline)
                    self._set(False)
                elif self.leading and won is False and self._observed and self._observed[0] != self.identity:
                    self._set(False)  # someone else holds it now
                with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancellation (3.11)
                    async with asyncio.timeout(self.retry_period):
                        await stop.wait()
        finally:
            was_leading = self.is_leader()
            self._valid_until = 0.0
            self._set(False)
            if was_leading:
                await self._hand_over()

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("%s %s the lease %s/%s", self.identity, "acquired" if leading else "lost",
                     self.namespace, self.name)
            if self.on_change is not None:
                self.on_change(leading)

    def _observe(self, lease: Any) -> None:
        spec = lease.spec or LeaseSpec()
        record = (spec.holderIdentity or "", spec.renewTime, spec.acquireTime, spec.leaseTransitions,
                  lease.metadata.resourceVersion if lease.metadata else None)
        if record != self._observed:
            self._observed, self._observed_at = record, self.monotonic()

    async def _try_acquire_or_renew(self) -> bool:
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except httpx.HTTPStatusError as e:
            if status_code(e) != 404:
                raise
            return await self._create()
        self._observe(lease)
        spec = lease.spec or LeaseSpec()
        holder = spec.holderIdentity or ""
        if holder and holder != self.identity and self.monotonic() < self._observed_at + self.lease_duration:
            return False  # held, and renewed within a lease duration as our clock measures it
        now = self.now()
        transitions = (spec.leaseTransitions or 0) + (0 if holder == self.identity else 1)
        acquire = spec.acquireTime if holder == self.identity and spec.acquireTime else now
        lease.spec = LeaseSpec(holderIdentity=self.identity, leaseDurationSeconds=self._duration_seconds(),
                               acquireTime=acquire, renewTime=now, leaseTransitions=transitions)
        try:
            written = await self.client.replace(lease)  # names the resourceVersion read: 409 if someone else wrote
        except httpx.HTTPStatusError as e:
            if status_code(e) == 409:
                return False
            raise
        self._observe(written)
        return True

    async def _create(self) -> bool:
        now = self.now()
        lease = Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace),
                      spec=LeaseSpec(holderIdentity=self.identity, leaseDurationSeconds=self._duration_seconds(),
                                     acquireTime=now, renewTime=now, leaseTransitions=0))
        try:
            created = await self.client.create(lease)
        except httpx.HTTPStatusError as e:
            if status_code(e) == 409:  # another replica created it first
                return False
            raise
        self._observe(created)
        return True

    def _duration_seconds(self) -> int:
        return max(1, math.ceil(self.lease_duration))

    async def _hand_over(self) -> None:
        """Shutdown: `before_release` (requests in flight answered), then the lease given up.
        Bounded: a `before_release` that has not returned within a lease duration leaves the
        lease to expire (releasing it could let the next leader write before our last write
        lands), and shutdown goes on."""
        if self.before_release is not None:
            try:
                async with asyncio.timeout(self.lease_duration):
                    await self.before_release()
            except TimeoutError:
                log.warning("%s: writes still in flight after %.1f s; leaving the lease to expire",
                            self.identity, self.lease_duration)
                return
        await self._release()

    async def _release(self) -> None:
        try:
            async with asyncio.timeout(self.renew_deadline):
                lease = await self.client.get(Lease, self.name, namespace=self.namespace)
                if lease.spec is not None and lease.spec.holderIdentity == self.identity:
                    lease.spec.holderIdentity = None
                    lease.spec.renewTime = None
                    await self.client.replace(lease)
                    log.info("%s released the lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as e:  # noqa: BLE001 (it expires anyway)
            log.warning("could not release the lease: %s", e)
