"""Leader election on a coordination.k8s.io/v1 Lease (client-go's leaderelection).

Every controller replica watches and translates; only the leader writes status
(and, with the Kubernetes infrastructure, applies Deployments), so a failover
costs one lease expiry, not a resync. The holder renews every `retry_period`;
another replica takes the lease over once `renewTime + lease_duration` has
passed without renewal; a leader that cannot renew within `renew_deadline`
steps down before anyone else can take over. Every write names the Lease's
resourceVersion, so two replicas racing for an expired lease cannot both win.
On shutdown the leader gives the lease up (holderIdentity cleared), so the next
one takes over at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2 as httpx  # lightkube's HTTP client
from lightkube import AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from portico.provider.kubernetes import status_code

log = logging.getLogger(__name__)

MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"  # MicroTime


class LeaderElector:
    def __init__(self, client: AsyncClient, namespace: str, name: str, identity: str, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_change: Callable[[bool], None] | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_change = on_change
        self.now = now
        self.leading = False
        self._last_renew: datetime | None = None

    def is_leader(self) -> bool:
        return self.leading

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    self._set(await self._try_acquire_or_renew())
                except Exception as e:  # noqa: BLE001 (the API server may be away: keep trying)
                    log.warning("leader election: %s: %s", type(e).__name__, e)
                    self._expire_if_stale()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.retry_period)
                except TimeoutError:
                    pass
        finally:
            if self.leading:
                await self._release()
            self._set(False)

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("%s %s the lease %s/%s", self.identity, "acquired" if leading else "lost",
                     self.namespace, self.name)
            if self.on_change is not None:
                self.on_change(leading)

    def _expire_if_stale(self) -> None:
        """A leader that could not renew for renew_deadline steps down."""
        if self.leading and self._last_renew is not None and \
                self.now() - self._last_renew > timedelta(seconds=self.renew_deadline):
            self._set(False)

    async def _try_acquire_or_renew(self) -> bool:
        now = self.now()
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except httpx.HTTPStatusError as e:
            if status_code(e) != 404:
                raise
            return await self._create(now)
        spec = lease.spec or LeaseSpec()
        holder = spec.holderIdentity or ""
        if holder and holder != self.identity and not self._expired(spec, now):
            self._expire_if_stale()
            return False
        transitions = (spec.leaseTransitions or 0) + (0 if holder == self.identity else 1)
        acquire = spec.acquireTime if holder == self.identity and spec.acquireTime else now
        lease.spec = LeaseSpec(holderIdentity=self.identity, leaseDurationSeconds=int(self.lease_duration),
                               acquireTime=acquire, renewTime=now, leaseTransitions=transitions)
        try:
            await self.client.replace(lease)  # names the resourceVersion read: 409 if someone else wrote
        except httpx.HTTPStatusError as e:
            if status_code(e) == 409:
                return False
            raise
        self._last_renew = now
        return True

    async def _create(self, now: datetime) -> bool:
        lease = Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace),
                      spec=LeaseSpec(holderIdentity=self.identity, leaseDurationSeconds=int(self.lease_duration),
                                     acquireTime=now, renewTime=now, leaseTransitions=0))
        try:
            await self.client.create(lease)
        except httpx.HTTPStatusError as e:
            if status_code(e) == 409:  # another replica created it first
                return False
            raise
        self._last_renew = now
        return True

    def _expired(self, spec: Any, now: datetime) -> bool:
        renewed = spec.renewTime or spec.acquireTime
        if renewed is None:
            return True
        if isinstance(renewed, str):
            renewed = datetime.strptime(renewed, MICRO).replace(tzinfo=UTC)
        duration = spec.leaseDurationSeconds or self.lease_duration
        return bool(now > renewed + timedelta(seconds=duration))

    async def _release(self) -> None:
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec is not None and lease.spec.holderIdentity == self.identity:
                lease.spec.holderIdentity = None
                lease.spec.renewTime = None
                await self.client.replace(lease)
                log.info("%s released the lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as e:  # noqa: BLE001 (it expires anyway)
            log.warning("could not release the lease: %s", e)
