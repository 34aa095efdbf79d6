"""Bulk work across processes: parsing and admitting many manifests at once.

Why: a burst of new objects (a directory of a thousand routes written at once, one
`List` of a thousand) is CPU work in Python, YAML construction and the API server's
schema and CEL checks, and one process does it on one core: about a second for a
thousand routes on our 2-core machines, while the second core idles. Spread over
worker processes it takes about 60 % of that (bench/attached.py). Only bulk is sent
(`BULK` items or more): a single change stays in-process, where it costs no pickling.

Workers come from a forkserver that imported the parsing and validation modules once
(forking the control plane itself would copy its gRPC and asyncio threads), and are
started, and their CRD schemas loaded, in the background when the pool is created: the
first burst does not wait for them. Any failure of the pool (a worker killed, an
object that does not pickle) falls back to doing the same work in-process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, TypeVar

from portico.provider.manifests import FileResult, load_file
from portico.validation import Violation, checked, compile_all

log = logging.getLogger(__name__)

BULK = 64  # items of one burst from which the pool is used
T = TypeVar("T")
R = TypeVar("R")
Checked = tuple[list[Violation], dict[str, Any]]


def load_files(paths: Sequence[str]) -> list[FileResult]:
    return [load_file(p) for p in paths]


def check_all(items: Sequence[tuple[dict[str, Any], dict[str, Any] | None]]) -> list[Checked]:
    return [checked(content, old) for content, old in items]


def _warm(_: int) -> int:
    """Load a worker's CRD schemas (and compile their rules) before the first burst."""
    compile_all()
    return os.getpid()


class BulkPool:
    """Worker processes for bursts; `map` runs in-process below `BULK` items or when the
    pool is not (or no longer) usable."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or max(1, min(2, os.cpu_count() or 1))
        self._executor: Executor | None = None
        self._lock = threading.Lock()
        self.used = 0  # bursts sent to the workers (for tests and benchmarks)

    def start(self) -> None:
        """Create the workers and load their schemas, in the background."""
        threading.Thread(target=self._executor_or_none, name="bulk-pool-start", daemon=True).start()

    def _executor_or_none(self) -> Executor | None:
        with self._lock:
            if self._executor is None and self.workers > 1:
                try:
                    context = multiprocessing.get_context("forkserver")
                    context.set_forkserver_preload(["portico.provider.bulk"])
                    executor = ProcessPoolExecutor(self.workers, mp_context=context)
                    list(executor.map(_warm, range(self.workers)))
                    self._executor = executor
                except Exception:  # noqa: BLE001 (no pool: the work is done in-process)
                    log.warning("no worker processes for bulk parsing; parsing in-process", exc_info=True)
                    self.workers = 1
            return self._executor

    def map(self, fn: Callable[[Sequence[T]], list[R]], items: Sequence[T]) -> list[R]:
        """`fn(items)`, its items split between the workers when there are enough."""
        executor = self._executor_or_none() if len(items) >= BULK else None
        if executor is None:
            return fn(items)
        size = -(-len(items) // (2 * self.workers))  # two chunks per worker: one slow chunk waits less
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
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

