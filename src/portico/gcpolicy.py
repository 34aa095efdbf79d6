"""When the control loop lets Python's cyclic garbage collector run: not while a
configuration is loaded, translated and published, and after it in a way whose cost is
that of the change, not of every stored object.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import Iterator

_lock = threading.Lock()
_pauses = 0  # gc_paused regions open, in any thread
_was_enabled = False  # the collector's state when the first of them opened


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a configuration is translated and published.

    Translation allocates hundreds of thousands of objects, most of which outlive a
    young-generation collection (the new IR, statuses), so the collector keeps
    promoting them and runs full collections over the whole heap (every stored
    object) in the middle of it: at 10k routes that was over half of the time of a
    sync. Reference counting still frees garbage at once; cycles wait until the end.

    Pauses nest and may overlap across threads (the provider's bulk work runs in
    threads while the loop holds the start's pause): the collector runs again when the
    last one ends, if it ran before the first began.
    """
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()


class Collector:
    """The garbage of a sync, once the data planes have taken the new configuration.

    After a full translation everything is collected, then what survives (the store,
    the state the next patch works on) is frozen: later collections skip it, so one
    after a patched translation costs what the patch allocated, not a scan of every
    object (at 10k routes a full collection blocks the event loop for over a second,
    the p99 of a route change). Refcounting frees what a patch replaces; cyclic garbage
    among frozen objects waits for the next full translation, or at most
    FULL_COLLECTION_EVERY patches. A full collection waits until every pushed
    configuration was answered (ACK or NACK; at most ANSWER_WAIT seconds) and for a
    quiet moment: it blocks the event loop, which the xDS streams need to send the
    configuration and to take Envoy's answer (at 10,000 routes two full collections,
    one automatic, 0.7 s each, came between the first push and its ACK). A change that
    comes first is translated at once, the collection staying due.

    The start (`hold`): no collection at all from the first event until the first
    configuration pushed is answered (or ANSWER_WAIT passed since the start), then the
    first full collection as above. A cold start builds everything it will keep
    (documents, models, the first translation): every automatic full collection on the
    way scanned the whole growing heap for nothing (1.8 s of 10,000 routes' start, 0-5
    objects freed each time). Bounded so that changes arriving faster than the data
    plane answers never keep the collector off for long."""

    # a full collection (unfrozen) at least every this many patched translations
    FULL_COLLECTION_EVERY = 500
    # ... made once no change came for this long (seconds): it blocks the event loop (a
    # second at 10k routes), which the xDS streams need to send the new configuration
    FULL_COLLECTION_QUIET = 0.05
    # ... and once the data planes answered the configuration pushed, or after this long
    # (seconds: an Envoy that never answers does not keep the garbage forever)
    ANSWER_WAIT = 10.0

    def __init__(self) -> None:
        self._patched_since_full = 0
        self._full_due = False
        self._start = contextlib.ExitStack()  # the start's pause, until the first answer
        self._held_since = 0.0

    def hold(self) -> None:
        """No collection from now until the first configuration is answered (`after_sync`)."""
        self._start.enter_context(gc_paused())
        self._held_since = time.monotonic()

    def release(self) -> None:
        """End the start's pause, if still held (the loop stops before its first collection)."""
        self._start.close()

    async def after_sync(self, patched: bool, changed: asyncio.Event,
                         answered: asyncio.Event | None = None) -> None:
        """After each sync (`patched`: a patched translation); `changed`: set by a change;
        `answered`: set while no pushed configuration awaits its data plane's answer."""
        self._patched_since_full = self._patched_since_full + 1 if patched else 0
        self._full_due = self._full_due or not patched or not self._patched_since_full % self.FULL_COLLECTION_EVERY
        if not self._full_due:
            gc.collect(1)
            return
        if answered is not None and not await _answered(answered, changed, self.ANSWER_WAIT):
            # a change came first: translated at once, the collection waits (the start's
            # pause ends all the same once answered, or held for ANSWER_WAIT)
            if answered.is_set() or time.monotonic() - self._held_since >= self.ANSWER_WAIT:
                self.release()
            return
        if not await _quiet(changed, self.FULL_COLLECTION_QUIET):
            self.release()
            return
        self._full_due = False
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.release()


async def _quiet(changed: asyncio.Event, seconds: float) -> bool:
    """True once `seconds` passed without a change; False as soon as one arrives.
    Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives as
    `changed` is set (it returns the result instead), and the control loop, which ends
    only by being cancelled, would then never stop."""
    try:
        async with asyncio.timeout(seconds):
            await changed.wait()
    except TimeoutError:
        return True
    return False


async def _answered(answered: asyncio.Event, changed: asyncio.Event, seconds: float) -> bool:
    """True once `answered` is set (or `seconds` passed) without a change; False as soon
    as one arrives."""
    if changed.is_set() or answered.is_set():
        return not changed.is_set()
    waiters = [asyncio.ensure_future(answered.wait()), asyncio.ensure_future(changed.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return not changed.is_set()
