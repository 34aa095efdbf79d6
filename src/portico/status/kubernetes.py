"""Kubernetes mode's StatusWriter: the status subresource, only our entries, only
when something changed, one write in flight per object.

- Only ours: route `parents` and policy `ancestors` entries of other controllers
  are taken from the object as the API server has it at write time
  (`portico.status.compose`, which also stamps lastTransitionTime), never from an
  older read.
- Only on change: the composed status is compared with the stored one, so a
  controller restart rewrites nothing that is already right.
- Coalesced: a key has at most one write in flight; statuses that arrive during
  it replace each other, and the latest is written next.
- Conflicts: the write names the resourceVersion it was computed from; on 409
  the object is read again and the status recomputed.
- Never lost: a write refused for now (429, 5xx, a timeout, a connection error,
  a run of conflicts) is tried again after an exponential backoff with jitter
  (client-go's workqueue rate limiter), or after the server's Retry-After when it
  sends one, for as long as we lead; an object gone (404) is dropped.
- Order is not a change: a status whose only difference from the stored one is the
  order of other controllers' entries around ours is not written again.
- Only the leader writes (`is_leader`, checked before every request); a new leader
  writes every status it holds (`resume`).
- After the data plane's answer: a write waits for `hold` first (the controller's: until
  Envoy answered the configuration just pushed, bounded). Status writes and their watch
  echoes, started beside the push, kept the event loop (and the API server) busy while
  Envoy's ACK waited to be read: at 3000 routes the ACK came 13-17 ms after the push,
  against 4-6 ms in standalone mode (issue 30, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import httpx2 as httpx  # lightkube's HTTP client
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

from portico.kubeapi import Kind, status_code
from portico.objects import ObjectKey, utc_now
from portico.status.compose import SHARED_FIELDS, compose, without_ours

log = logging.getLogger(__name__)

# (status, resourceVersion) of an object as last seen, or None when unknown
Lookup = Callable[[ObjectKey], tuple[dict[str, Any], str] | None]


class KubernetesStatusWriter:
    def __init__(self, client: AsyncClient, kinds: Iterable[Kind] | Mapping[tuple[str, str], Kind],
                 controller_name: str, *,
                 is_leader: Callable[[], bool] = lambda: True, lookup: Lookup | None = None,
                 clock: Callable[[], str] = utc_now, attempts: int = 5,
                 backoff: tuple[float, float] = (0.2, 30.0), timeout: float = 10.0,
                 hold: Callable[[], Awaitable[None]] | None = None) -> None:
        self.client = client
        # a Mapping is shared, not copied: the provider updates it with the version discovery
        # finds, and statuses are written at the version the cluster serves
        self.kinds: Mapping[tuple[str, str], Kind] = (
            kinds if isinstance(kinds, Mapping) else {(k.group, k.kind): k for k in kinds})
        self.controller_name = controller_name
        self.is_leader = is_leader
        self.lookup = lookup
        self.clock = clock
        self.attempts = attempts
        self.backoff = backoff  # first and longest wait before a write is tried again
        self.timeout = timeout  # of one request
        self.hold = hold  # awaited before a write is sent (it must return in bounded time)
        self._desired: dict[ObjectKey, dict[str, Any] | None] = {}  # None: remove our entries
        self._inflight: dict[ObjectKey, asyncio.Task[None]] = {}
        self._again: set[ObjectKey] = set()
        self._waiting: set[ObjectKey] = set()  # keys backing off before their next try
        self.written = 0  # status writes sent (for tests and metrics)

    # ------------------------------------------------------------ StatusWriter

    def write(self, key: ObjectKey, status: dict[str, Any]) -> None:
        self._desired[key] = status
        self._schedule(key)

    def release(self, keep: Iterable[ObjectKey]) -> None:
        """Objects no longer ours: our entries leave their shared fields (a whole
        status such as a GatewayClass's is left for its new controller)."""
        keep = set(keep)
        for key in [k for k, v in self._desired.items() if v is not None and k not in keep]:
            self._desired[key] = None
            self._schedule(key)

    def resume(self) -> None:
        """Leadership gained: write what we hold (unchanged statuses are skipped)."""
        for key in list(self._desired):
            self._schedule(key)

    async def idle(self) -> None:
        """Until no write is in flight, retries included (tests)."""
        while self._inflight:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    async def settle(self) -> None:
        """Shutdown, or leadership given up: until no request is in flight. A write waiting
        to be tried again (a backoff may last `backoff[1]` s, a Retry-After longer) is not
        waited for: its status stays desired, and whoever leads next writes it (`resume`).
        Bounded: a request lasts at most `timeout` per attempt, and no new one is sent
        unless we lead, so this returns promptly however leadership stands."""
        while self._inflight:
            # a request already sent is awaited (cancelling our side would not stop the server
            # applying it after the lease is given up), a backoff is not
            for key, task in list(self._inflight.items()):
                if key in self._waiting:
                    task.cancel()
            await asyncio.wait(list(self._inflight.values()), timeout=0.05)

    # ------------------------------------------------------------ writing

    def _schedule(self, key: ObjectKey) -> None:
        if not self.is_leader() or (key.group, key.kind) not in self.kinds:
            return
        if key in self._inflight:
            self._again.add(key)
            return
        self._inflight[key] = asyncio.get_running_loop().create_task(self._run(key))

    async def _run(self, key: ObjectKey) -> None:
        failures = 0
        try:
            while self.is_leader():
                if self.hold is not None:
                    await self._held(key)
                self._again.discard(key)
                try:
                    done = await self._flush(key)
                except Exception as e:  # noqa: BLE001 (one object's failure never stops the others)
                    done, failures = False, failures + 1
                    delay = self._delay(failures, e)
                    log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                            "writing the status of %s failed (%s: %s); trying again in %.1f s",
                            key, type(e).__name__, e, delay)
                    await self._wait(key, delay)
                    continue
                if not done:  # a run of conflicts: the object keeps changing; wait a little
                    failures += 1
                    await self._wait(key, self._delay(failures, None))
                    continue
                failures = 0
                if key not in self._again:
                    return
        finally:
            self._inflight.pop(key, None)
            self._waiting.discard(key)

    async def _held(self, key: ObjectKey) -> None:
        """`hold`, as a wait `settle` may cancel (nothing is in flight meanwhile)."""
        assert self.hold is not None
        self._waiting.add(key)
        try:
            await self.hold()
        finally:
            self._waiting.discard(key)

    async def _wait(self, key: ObjectKey, delay: float) -> None:
        """A backoff: `settle` may cancel it (nothing is in flight meanwhile)."""
        self._waiting.add(key)
        try:
            await asyncio.sleep(delay)
        finally:
            self._waiting.discard(key)

    def _delay(self, failures: int, error: Exception | None) -> float:
        """The server's Retry-After when it sent one, else exponential backoff with jitter."""
        response = getattr(error, "response", None)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after is not None and retry_after.isdigit():
            return float(retry_after)
        first, cap = self.backoff
        return float(min(cap, first * 2 ** (failures - 1)) * random.uniform(0.5, 1.5))

    async def _flush(self, key: ObjectKey) -> bool:
        """Write the status; False after `attempts` conflicts in a row (raises what is
        worth trying again later)."""
        kind = self.kinds[(key.group, key.kind)]
        res = kind.resource()
        known = self.lookup(key) if self.lookup is not None else None
        for attempt in range(self.attempts):
            if known is None:
                async with asyncio.timeout(self.timeout):
                    known = await self._read(res, key)
                if known is None:
                    return True  # the object is gone
            current, version = known
            desired = self._desired.get(key)
            new = self._compose(current, desired)
            if _same(new, current) or not self.is_leader():
                return True
            try:
                async with asyncio.timeout(self.timeout):
                    await self._send(res, key, current, new, version)
                return True
            except httpx.HTTPStatusError as e:
                code = status_code(e)
                if code == 404:
                    return True
                if code != 409:
                    raise
                log.debug("status of %s: conflict (attempt %d), reading it again", key, attempt + 1)
                known = None
        log.info("status of %s: it kept changing (%d conflicts); trying again shortly", key, self.attempts)
        return False

    def _compose(self, current: dict[str, Any], desired: dict[str, Any] | None) -> dict[str, Any]:
        if desired is None:  # release: drop only our entries of shared fields
            return without_ours(current, self.controller_name)
        return compose(current, desired, self.controller_name, self.clock)

    async def _read(self, res: Any, key: ObjectKey) -> tuple[dict[str, Any], str] | None:
        try:
            obj = await self.client.get(res, key.name, namespace=key.namespace or None)
        except ApiError as e:
            if e.status.code == 404:
                return None
            raise
        raw = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        return dict(raw.get("status") or {}), str(raw["metadata"]["resourceVersion"])

    async def _send(self, res: Any, key: ObjectKey, current: dict[str, Any], new: dict[str, Any],
                    version: str) -> None:
        # A merge patch of the status subresource, naming the resourceVersion it was
        # computed from (409 when the object changed since); fields we dropped are nulled.
        status: dict[str, Any] = {**{k: None for k in current if k not in new}, **new}
        patch = {"metadata": {"resourceVersion": version}, "status": status}
        await self.client.patch(res.Status, key.name, patch, namespace=key.namespace or None,
                                patch_type=PatchType.MERGE)
        self.written += 1


async def set_within(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set, at most `seconds` (a `hold`); at once, without yielding, if it is."""
    if event.is_set():
        return
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass


def _same(new: dict[str, Any], current: dict[str, Any]) -> bool:
    """Equal but for the order of the entries of shared fields (theirs listed around ours)."""
    def canonical(status: dict[str, Any]) -> dict[str, Any]:
        return {k: sorted(v, key=lambda e: json.dumps(e, sort_keys=True)) if k in SHARED_FIELDS and
                isinstance(v, list) else v for k, v in status.items()}

    return new == current or canonical(new) == canonical(current)
