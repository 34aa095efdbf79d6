"""When the control loop lets Python's cyclic garbage collector run: not while a
configuration is translated and published, and after it in a way whose cost is that
of the change, not of every stored object.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a configuration is translated and published.

    Translation allocates hundreds of thousands of objects, most of which outlive a
    young-generation collection (the new IR, statuses), so the collector keeps
    promoting them and runs full collections over the whole heap (every stored
    object) in the middle of it: at 10k routes that was over half of the time of a
    sync. Reference counting still frees garbage at once; cycles wait until the end.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Collector:
    """The garbage of a sync, once the xDS streams have sent the new configuration.

    After a full translation everything is collected, then what survives (the store,
    the state the next patch works on) is frozen: later collections skip it, so one
    after a patched translation costs what the patch allocated, not a scan of every
    object (at 10k routes a full collection blocks the event loop for over a second,
    the p99 of a route change). Refcounting frees what a patch replaces; cyclic garbage
    among frozen objects waits for the next full translation, or at most
    FULL_COLLECTION_EVERY patches. A full collection waits for a quiet moment: a change
    that comes first is translated at once, the collection staying due."""

    # a full collection (unfrozen) at least every this many patched translations
    FULL_COLLECTION_EVERY = 500
    # ... made once no change came for this long (seconds): it blocks the event loop (a
    # second at 10k routes), which the xDS streams need to send the new configuration
    FULL_COLLECTION_QUIET = 0.05

    def __init__(self) -> None:
        self._patched_since_full = 0
        self._full_due = False

    async def after_sync(self, patched: bool, changed: asyncio.Event) -> None:
        """After each sync (`patched`: a patched translation); `changed`: set by a change."""
        self._patched_since_full = self._patched_since_full + 1 if patched else 0
        self._full_due = self._full_due or not patched or not self._patched_since_full % self.FULL_COLLECTION_EVERY
        if not self._full_due:
            gc.collect(1)
            return
        if not await _quiet(changed, self.FULL_COLLECTION_QUIET):
            return  # a change came first: translated at once, the collection waits
        self._full_due = False
        gc.unfreeze()
        gc.collect()
        gc.freeze()


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
