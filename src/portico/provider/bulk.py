"""Bulk work across processes: parsing and admitting many manifests at once.

Why: a burst of new objects (a directory of a thousand routes written at once, one
`List` of a thousand) is CPU work in Python, YAML construction and the API server's
schema and CEL checks, and one process does it on one core: about a second for a
thousand routes on our 2-core machines, while the second core idles. Spread over
worker processes it takes about 60 % of that (bench/attached.py). Only bulk is sent
(`BULK` items or more): a single change stays in-process, where it costs no pickling.

Workers come from a forkserver that imported the parsing and validation modules and
compiled the CRD schemas once (`portico.provider.bulkserver`; forking the control plane
itself would copy its gRPC and asyncio threads), and are started in the background when
the pool is created: the first burst waits for them only as long as they take to start.
They do not run the control plane's main script, as multiprocessing would have each
do (`_plain_main`). Any failure of the pool (a worker killed, an
object that does not pickle) falls back to doing the same work in-process.

The helpers never outlive the control plane: each worker watches it (a pidfd) and
exits when it is gone, even by `kill -9`; the forkserver ends when its last client
has, and the resource tracker when its last user has. Their pids are recorded
(`start(record)`), so that the next instance stops any a dead one left all the same.
They are started with the working directory off their `sys.path` (PYTHONSAFEPATH):
Python's `-c` would otherwise put it first, and a `token.py` there would be run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import select
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from portico.objects import interned
from portico.pids import alive as _alive
from portico.provider.manifests import FileResult, digest, load_file
from portico.validation import Violation, checked, compile_all

log = logging.getLogger(__name__)

BULK = 64  # items of one burst from which the pool is used
# ... or files holding this many bytes, fewer of them: a directory of Lists of 1000
# routes (370 KB each) is bulk, though only ten files (at 10,000 routes they took 3-8 s
# to parse in the control plane's process while a worker idled)
BULK_BYTES = 256 * 1024
T = TypeVar("T")
R = TypeVar("R")
# the violations, the object as it would be stored, and the digest of the content checked
Checked = tuple[list[Violation], dict[str, Any], bytes]


def load_files(paths: Sequence[str]) -> list[FileResult]:
    return [load_file(p).with_digests() for p in paths]


def check_all(items: Sequence[tuple[dict[str, Any], dict[str, Any] | None]]) -> list[Checked]:
    return [_checked(content, old) for content, old in items]


def _checked(content: dict[str, Any], old: dict[str, Any] | None) -> Checked:
    violations, stored = checked(content, old)
    return violations, interned(stored), digest(content)


def checked_new(content: dict[str, Any]) -> Checked | None:
    """`content` checked as a new object; None if the checks fail on it (the emulation then
    checks it, and reports what fails, for this document alone)."""
    try:
        return _checked(content, None)
    except Exception:  # noqa: BLE001 (see above: not this worker's to report)
        return None


def _warm(_: int) -> tuple[int, int]:
    """A worker's pid and its parent's (the forkserver); its CRD schemas are compiled
    (the forkserver's, unless that failed)."""
    compile_all()
    return os.getpid(), os.getppid()


def _exit_with(owner: int) -> None:
    """Worker initializer: exit as soon as the control plane `owner` is gone, however it
    ended (its parent is the forkserver, so PR_SET_PDEATHSIG would not tell)."""
    try:
        fd = os.pidfd_open(owner)  # readable once that process has exited
    except ProcessLookupError:
        os._exit(0)
    except OSError:  # no pidfds (an old kernel): ask every second
        fd = -1

    def watch() -> None:
        if fd >= 0:
            select.select([fd], [], [])
        else:
            while _alive(owner):
                time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


@contextlib.contextmanager
def _safe_path() -> Iterator[None]:
    """PYTHONSAFEPATH=1 while helpers are started: they run `python -c`, which would put
    the working directory first on their sys.path (a `token.py` there shadows the stdlib)."""
    before = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = before


@contextlib.contextmanager
def _plain_main() -> Iterator[None]:
    """Worker processes started meanwhile do not import the control plane's main script.
    multiprocessing prepares each (forkserver and spawn alike) by running the parent's
    `__main__` file again as `__mp_main__`, for functions defined there; the `portico`
    script imports the whole CLI, 0.3 s of CPU per worker at a cold start, which waits for
    them. What they run is defined in this module. (Workers start as they are first
    submitted to, within this block: `_executor_or_none`.)"""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _ours(pid: int) -> bool:
    """`pid` is this process's child or a child's child: one of its own helpers (the
    forkserver, the resource tracker, a worker), whatever a dead instance recorded."""
    parent = _parent(pid)
    return parent == os.getpid() or (parent is not None and parent > 1 and _parent(parent) == os.getpid())


def stop_left_helpers(record: Path) -> None:
    """Stop the helpers a dead instance recorded in `record` (only processes still running
    multiprocessing's code, and never this process's own: a pid may have been reused,
    and this instance's helpers may be running already)."""
    try:
        data = json.loads(record.read_text())
        owner, pids = int(data["owner"]), [int(p) for p in data["pids"]]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if owner != os.getpid() and _alive(owner):
        return  # still running: not ours to stop
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes() and not _ours(pid):
                log.info("stopping a bulk worker process a previous instance left (pid %d)", pid)
                os.kill(pid, 9)
    record.unlink(missing_ok=True)


class BulkPool:
    """Worker processes for bursts; `map` runs in-process below `BULK` items or when the
    pool is not (or no longer) usable."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or max(1, min(2, os.cpu_count() or 1))
        self._executor: Executor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._started = False
        self._record: Path | None = None
        self._record_lock = threading.Lock()
        self.helpers: list[int] = []  # pids of the worker processes, forkserver and resource tracker
        self.used = 0  # bursts sent to the workers (for tests and benchmarks)

    def start(self, record: Path | None = None) -> None:
        """Create the workers, in the background (once: `portico run` starts them first
        thing, so that their forkserver imports and compiles while the control plane
        imports the rest); `record`: see `record`."""
        if record is not None:
            self.record(record)
        if not self._started:
            self._started = True
            threading.Thread(target=self._executor_or_none, name="bulk-pool-start", daemon=True).start()

    def record(self, record: Path) -> None:
        """Keep the helpers' pids in `record` (now, or once they run), after stopping those
        a dead instance left there (`stop_left_helpers`: never this instance's own)."""
        with self._record_lock:
            stop_left_helpers(record)
            self._record = record
            self._write_record()

    def _write_record(self) -> None:
        if self._record is not None and self.helpers:
            with contextlib.suppress(OSError):  # (a state directory not writable: see infra.host)
                self._record.write_text(json.dumps({"owner": os.getpid(), "pids": self.helpers}))

    def _executor_or_none(self) -> Executor | None:
        with self._lock:
            if self._executor is None and self.workers > 1 and not self._closed:
                try:
                    context = multiprocessing.get_context("forkserver")
                    context.set_forkserver_preload(["portico.provider.bulkserver"])
                    with _safe_path():
                        multiprocessing.forkserver.ensure_running()  # (and the resource tracker)
                    executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_exit_with,
                                                   initargs=(os.getpid(),))
                    with _plain_main():  # (every worker starts here: one task each)
                        warming = executor.map(_warm, range(self.workers))
                    started = list(warming)
                    self._executor = executor
                    self._recorded(started)
                except Exception:  # noqa: BLE001 (no pool: the work is done in-process)
                    log.warning("no worker processes for bulk parsing; parsing in-process", exc_info=True)
                    self.workers = 1
            return self._executor

    def _recorded(self, started: list[tuple[int, int]]) -> None:
        from multiprocessing import resource_tracker

        tracker = getattr(getattr(resource_tracker, "_resource_tracker", None), "_pid", None)
        with self._record_lock:
            self.helpers = sorted({p for pair in started for p in pair} | ({tracker} if tracker else set()))
            self._write_record()

    def map(self, fn: Callable[[Sequence[T]], list[R]], items: Sequence[T], bulk: bool | None = None,
            chunk: int | None = None) -> list[R]:
        """`fn(items)`, its items split between the workers when there are enough (`BULK`,
        or when the caller says it is `bulk` work), `chunk` items a task (default: two
        tasks per worker, so that one slow task waits less)."""
        executor = self._executor_or_none() if (len(items) >= BULK if bulk is None else bulk) else None
        if executor is None:
            return fn(items)
        size = chunk or -(-len(items) // (2 * self.workers))
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        try:
            results = [r for part in executor.map(fn, chunks) for r in part]
        except Exception:  # noqa: BLE001 (a broken pool: this burst and the next ones in-process)
            log.warning("bulk worker processes failed; parsing in-process", exc_info=True)
            self.close()
            self.workers = 1
            return fn(items)
        self.used += 1
        return results

    def close(self) -> None:
        """Stop the workers and wait for the pool's threads: shutting down without waiting
        left its manager thread closing its wake-up pipe while concurrent.futures' exit
        hook wrote to it ("OSError: Bad file descriptor" on about 2 of 5 SIGTERMs). A pool
        still starting is not started after this."""
        self._closed = True
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None
            if self._record is not None:
                self._record.unlink(missing_ok=True)

