"""Linux inotify on the event loop: a directory tree's changes as soon as a file is
complete, with no polling and no thread.

watchfiles (the file provider's watcher before, and still its polling fallback) takes
inotify's events in a Rust thread, but hands them over by polling: every `step` ms the
watch call takes the GIL to look, returns only after a step without new events (two
steps at least: 2-4 ms at step 2 ms, plus the GIL and a thread hop back to the event
loop; 4-5 ms of every change in bench/propagation.py's timeline). Here the inotify
descriptor is read by the event loop itself (`add_reader`) when the kernel has events.

When a batch is complete is told by the events themselves, not by a quiet period: a
file written in place (create or truncate, write, close) is reported at its close
(IN_CLOSE_WRITE); a rename into place, a deletion or a move away at once. A file
modified and left open (no close yet) is reported after `quiet_ms` without an event,
as a quiet period did before. Only a burst (more than one file changed since the last
batch) is taken whole after a quiet period, as watchfiles took every change (`_burst`).
Hidden names (`manifests.hidden`: editors' and atomic writers' temporary files) are not
reported, as before. Every file changed is named unless a directory changed or events
were lost (`Batch.exact`): the caller then reads only those (`FileProvider.scan`), else
it compares every file's stat.

The system calls and the kernel's event records are inotify_simple's (a maintained
wrapper of inotify(7), no dependencies); this module adds only when a batch is complete.
Anything failing (no inotify, watch limits) raises OSError: the file provider then
polls with watchfiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncGenerator
from typing import NamedTuple

from inotify_simple import INotify
from inotify_simple import flags as f

from portico.provider.manifests import hidden

WATCHED = (f.MODIFY | f.ATTRIB | f.CLOSE_WRITE | f.MOVED_FROM | f.MOVED_TO | f.CREATE | f.DELETE
           | f.DELETE_SELF | f.MOVE_SELF)
# a file's content is complete (or gone): reported at once
DONE = f.CLOSE_WRITE | f.MOVED_TO | f.MOVED_FROM | f.DELETE | f.ATTRIB
# a file being written: reported at its close, or after a quiet period
WRITING = f.CREATE | f.MODIFY


class Batch(NamedTuple):
    paths: set[str]
    # every file changed since the last batch is in `paths` (no directory changed, no
    # event lost): the caller may look at those alone
    exact: bool


class Inotify:
    """One inotify instance watching directory trees (their non-hidden subdirectories,
    including those created later)."""

    def __init__(self, roots: list[str], quiet_ms: float = 20, burst_quiet_ms: float = 2,
                 burst_max_ms: float = 200) -> None:
        self.quiet = quiet_ms / 1000
        self.burst_quiet, self.burst_max = burst_quiet_ms / 1000, burst_max_ms / 1000
        self._inotify = INotify(nonblocking=True)  # (close-on-exec: inotify_simple's default)
        self.fd: int = self._inotify.fileno()
        self._dirs: dict[int, str] = {}  # watch descriptor -> directory
        self._done: set[str] = set()  # paths complete (or gone) since the last batch
        self._writing: set[str] = set()  # paths written, not yet closed
        self._exact = True  # no directory changed and no event lost since the last batch
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failed: OSError | None = None  # (raised in `batches`: a reader callback cannot)
        try:
            for root in roots:
                self._add_tree(root)
        except BaseException:
            self._inotify.close()
            raise

    def _add_tree(self, root: str) -> None:
        for directory, dirnames, _ in os.walk(root):
            dirnames[:] = [d for d in dirnames if not hidden(d)]
            try:
                wd = self._inotify.add_watch(directory, WATCHED)
            except OSError as error:
                if error.errno in (errno.ENOENT, errno.ENOTDIR):  # gone meanwhile: its parent reports it
                    continue
                raise
            self._dirs[wd] = directory

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.fd)
            self._loop = None
        with contextlib.suppress(OSError):
            self._inotify.close()

    async def batches(self, timeout: float, stop: asyncio.Event | None = None) -> AsyncGenerator[Batch, None]:
        """Each batch of changed paths as soon as it is complete; an empty one (not exact)
        after `timeout` seconds without one (the caller's periodic rescan). Ends when `stop`
        is set."""
        loop = self._loop = asyncio.get_running_loop()
        loop.add_reader(self.fd, self._read)
        stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
        if stopping is not None:
            stopping.add_done_callback(lambda _: self._wake.set())
        try:
            while stop is None or not stop.is_set():
                deadline = loop.time() + timeout
                while not self._done:
                    # a file written but not closed yet is reported once its writer is quiet
                    # (or at the periodic rescan, should it never be)
                    remaining = deadline - loop.time()
                    wait = min(self.quiet, remaining) if self._writing else remaining
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), max(wait, 0))
                    except TimeoutError:
                        if not self._writing:
                            break  # the periodic rescan
                        self._done |= self._writing
                        self._writing.clear()
                    if self._failed is not None:
                        raise self._failed
                    if stop is not None and stop.is_set():
                        return
                if len(self._done) > 1:
                    await self._burst(loop)
                batch = Batch(self._done, self._exact and bool(self._done))
                self._done, self._exact = set(), True
                yield batch
        finally:
            if stopping is not None:
                stopping.cancel()

    async def _burst(self, loop: asyncio.AbstractEventLoop) -> None:
        """More than one file changed since the last batch: a burst may be under way (a
        `kubectl apply -f dir/`, a checkout, a copy of a directory). It is taken whole
        once a `burst_quiet_ms` passes without an event (or `burst_max_ms` after it was
        noticed): one scan of its files, parsed in bulk, instead of many. Meanwhile the
        descriptor is read once a `burst_quiet_ms`, not at every event. A single file
        written (one edit, the next of back-to-back changes) is reported at once."""
        end = loop.time() + self.burst_max
        loop.remove_reader(self.fd)
        try:
            while loop.time() < end:
                await asyncio.sleep(min(self.burst_quiet, end - loop.time()))
                if not self._read():
                    return
        finally:
            loop.add_reader(self.fd, self._read)

    def _read(self) -> bool:
        """Take in the events the kernel has; whether there were any."""
        events = self._inotify.read(timeout=0)
        for event in events:
            self._event(event.wd, event.mask, event.name)
        if events:
            self._wake.set()
        return bool(events)

    def _event(self, wd: int, mask: int, name: str) -> None:
        directory = self._dirs.get(wd)
        if mask & f.Q_OVERFLOW or directory is None:
            if mask & f.Q_OVERFLOW:  # events were lost: the caller's scan compares every file
                self._done.add("")
                self._exact = False
            return
        if mask & f.IGNORED:  # the directory is gone (its parent reported it)
            del self._dirs[wd]
            return
        if mask & (f.DELETE_SELF | f.MOVE_SELF):
            self._done.add(directory)
            self._exact = False
            return
        if not name or hidden(name):
            return
        path = os.path.join(directory, name)
        if mask & f.ISDIR:
            if mask & (f.CREATE | f.MOVED_TO):
                try:
                    self._add_tree(path)  # (the files already in it: the caller's scan finds them)
                except OSError as e:
                    self._failed = e
            self._done.add(path)
            self._exact = False
        elif mask & DONE:
            self._writing.discard(path)
            self._done.add(path)
        elif mask & WRITING:
            self._writing.add(path)

