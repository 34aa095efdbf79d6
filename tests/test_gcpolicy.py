"""When the cyclic garbage collector runs (`portico.gcpolicy`): pauses that overlap
across threads, and the start's pause, held until the first configuration pushed is
answered by its data plane and collected then (issue 30 item 5: at 10,000 routes the
automatic full collections of a cold start scanned the growing heap for 1.8 s, and two
more, 0.7 s each, came between the first push and Envoy's ACK)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from test_control_loop import CLASS, GATEWAY, EmulatedStore, FakeTranslator, FakeXds, docs, host, settle

from portico.control import ControlLoop
from portico.gcpolicy import Collector, gc_paused
from portico.infra.host import MERGED_GROUP
from portico.provider import ProviderEvent


@pytest.fixture(autouse=True)
def collector_enabled() -> Iterator[None]:
    """Each test starts with the collector running, and leaves it as it found it."""
    before = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        gc.unfreeze()
        (gc.enable if before else gc.disable)()


def test_pauses_that_overlap_across_threads_end_with_the_last() -> None:
    """The loop's pause opened first and closed last, a thread's inside it, and the
    other way round: the collector runs again only when no pause is open."""
    for thread_first in (False, True):
        entered, leave = threading.Event(), threading.Event()

        def other(entered: threading.Event = entered, leave: threading.Event = leave) -> None:
            with gc_paused():
                entered.set()
                leave.wait(10)

        thread = threading.Thread(target=other)
        pause = gc_paused()
        if thread_first:
            thread.start()
            assert entered.wait(10)
        pause.__enter__()
        if not thread_first:
            thread.start()
            assert entered.wait(10)
        assert not gc.isenabled()
        if thread_first:
            leave.set()
            thread.join(10)
            assert not gc.isenabled()  # the loop's pause is still open
            pause.__exit__(None, None, None)
        else:
            pause.__exit__(None, None, None)
            assert not gc.isenabled()  # the thread's pause is still open
            leave.set()
            thread.join(10)
        assert gc.isenabled()


def test_a_pause_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_a_full_collection_waits_for_the_answer_and_yields_to_a_change() -> None:
    async def main() -> None:
        collector = Collector()
        collector.hold()
        changed, answered = asyncio.Event(), asyncio.Event()
        waiting = asyncio.create_task(collector.after_sync(False, changed, answered))
        for _ in range(20):  # well past FULL_COLLECTION_QUIET
            await asyncio.sleep(0.01)
        assert not waiting.done() and not gc.isenabled()  # the push is not answered yet
        changed.set()  # a change comes first: translated at once, the collection still due
        await waiting
        assert not gc.isenabled()
        changed.clear()
        answered.set()
        await collector.after_sync(True, changed, answered)  # (a patched sync: the full one is still due)
        assert gc.isenabled() and gc.get_freeze_count() > 0

    asyncio.run(main())


def test_the_start_is_not_collected_until_the_first_configuration_is_answered() -> None:
    """From `run` on, no collection: the initial load and its translation, then the push;
    once the data plane ACKs it, a full collection, and the collector runs again."""

    async def main() -> None:
        xds = FakeXds()
        loop = ControlLoop(EmulatedStore(), host(), xds, translator=FakeTranslator())
        queue: asyncio.Queue[ProviderEvent] = asyncio.Queue()

        async def events() -> AsyncIterator[ProviderEvent]:
            while True:
                yield await queue.get()

        ready = asyncio.Event()
        task = asyncio.create_task(loop.run(events(), ready.set))
        queue.put_nowait(dataclasses.replace(docs(CLASS, GATEWAY), initial=True))
        try:
            await settle(ready.is_set, "the initial sync")
            assert not gc.isenabled()
            assert xds.pushed
            deadline = time.monotonic() + 4 * Collector.FULL_COLLECTION_QUIET
            while time.monotonic() < deadline:  # quiet, but not answered: still no collection
                await asyncio.sleep(0.01)
            assert not gc.isenabled()
            loop.on_ack(MERGED_GROUP, len(xds.by_group[MERGED_GROUP]))
            await settle(gc.isenabled, "the collector running again")
            assert gc.get_freeze_count() > 0  # collected, and what survived frozen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert gc.isenabled()

    asyncio.run(main())


def test_a_loop_stopped_before_its_first_collection_leaves_the_collector_running() -> None:
    async def main() -> None:
        loop = ControlLoop(EmulatedStore(), host(), FakeXds(), translator=FakeTranslator())

        async def events() -> AsyncIterator[ProviderEvent]:
            yield dataclasses.replace(docs(CLASS, GATEWAY), initial=True)
            await asyncio.Event().wait()

        ready = asyncio.Event()
        task = asyncio.create_task(loop.run(events(), ready.set))
        await settle(ready.is_set, "the initial sync")
        assert not gc.isenabled()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert gc.isenabled()


def test_the_starts_pause_ends_once_answered_even_while_changes_keep_coming() -> None:
    """Changes arriving faster than the data plane answers defer the full collection, not
    the collector: the start's pause ends at the first answer, or after ANSWER_WAIT."""

    async def main() -> None:
        for answer in (True, False):
            collector = Collector()
            if not answer:
                collector.ANSWER_WAIT = 0.0  # (held that long already)
            collector.hold()
            changed, answered = asyncio.Event(), asyncio.Event()
            if answer:
                answered.set()
            changed.set()  # a change came first: the full collection stays due
            await collector.after_sync(False, changed, answered)
            assert gc.isenabled()
            assert collector._full_due

    asyncio.run(main())
