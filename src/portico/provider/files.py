"""The standalone provider: manifests in files (`portico.provider.manifests`),
watched for changes, as object events. Objects come as written: the API server's
checks and metadata are `portico.provider.apiserver`'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import watchfiles

from portico.objects import ObjectKey
from portico.provider import Document, DocumentError, ProviderEvent
from portico.provider.manifests import FileResult, hidden, load_file, manifest_files

log = logging.getLogger(__name__)

RESCAN_MS = 1000


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


# ---------------------------------------------------------------- provider


class FileProvider:
    """Loads manifests from `paths` and reports changes as ProviderEvents."""

    def __init__(self, paths: Sequence[str | Path], debounce_ms: int = 200, step_ms: int = 30) -> None:
        # absolute, so that paths reported by the watcher match the scanned ones
        self.paths = [os.path.abspath(p) for p in paths]
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self._cache: dict[str, tuple[tuple[int, int, int] | None, FileResult]] = {}
        self._by_file: dict[str, dict[ObjectKey, Document]] = {}
        self._current: dict[ObjectKey, Document] = {}
        self._errors: tuple[DocumentError, ...] = ()
        self._loaded_once = False

    def scan(self, changed: set[str] | None = None) -> ProviderEvent:
        """Reload (files in `changed`, and any whose stat changed) and diff with the last scan."""
        for path in changed or ():
            self._cache.pop(path, None)
        paths = manifest_files(self.paths)
        if self._loaded_once and set(paths) == set(self._by_file) and all(map(self._cached, paths)):
            # the periodic rescan's usual case: nothing to parse, nothing to diff
            return ProviderEvent(errors=self._errors)
        by_file: dict[str, dict[ObjectKey, Document]] = {}
        errors: list[DocumentError] = []
        for path in paths:
            result = self._load_cached(path)
            errors.extend(result.errors)
            docs = {d.key: d for d in result.documents}
            if not result.complete:
                # keep what this file held before, so a half-written or broken
                # file does not take down the routes it defines
                for key, doc in self._by_file.get(path, {}).items():
                    docs.setdefault(key, doc)
            by_file[path] = docs
        for stale in set(self._cache) - set(by_file):
            del self._cache[stale]
        return self._diff(by_file, errors)

    def _cached(self, path: str) -> bool:
        cached = self._cache.get(path)
        signature = _signature(path)
        return cached is not None and signature is not None and cached[0] == signature

    def _load_cached(self, path: str) -> FileResult:
        signature = _signature(path)
        cached = self._cache.get(path)
        if cached is not None and signature is not None and cached[0] == signature:
            return cached[1]
        result = load_file(path)
        self._cache[path] = (signature, result)
        for error in result.errors:
            log.warning("skipped document: %s", error)
        return result

    def _diff(self, by_file: dict[str, dict[ObjectKey, Document]], errors: list[DocumentError]) -> ProviderEvent:
        desired: dict[ObjectKey, Document] = {}
        for path, docs in by_file.items():
            for key, doc in docs.items():
                previous = desired.get(key)
                if previous is not None and previous.source.file != path:
                    log.warning("%s is defined in %s:%d and %s:%d; the latter wins",
                                key, previous.source.file, previous.source.line, path, doc.source.line)
                desired[key] = doc
        upserts = tuple(d for k, d in desired.items() if self._current.get(k) != d)
        deletes = tuple(k for k in self._current if k not in desired)
        initial = not self._loaded_once
        self._loaded_once = True
        self._current, self._by_file, self._errors = desired, by_file, tuple(errors)
        return ProviderEvent(upserts, deletes, self._errors, initial)

    def _watch_roots(self) -> list[str]:
        # a single file is watched through its directory: atomic renames
        # replace the inode a direct watch would follow
        roots = {p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)) for p in self.paths}
        return sorted(r for r in roots if os.path.isdir(r))

    async def events(self, stop: asyncio.Event | None = None) -> AsyncIterator[ProviderEvent]:
        """The initial load, then one event per burst of file changes that
        changed an object or the list of load errors."""
        event = await asyncio.to_thread(self.scan)
        yield event
        last_errors = event.errors
        force_polling: bool | None = None
        while stop is None or not stop.is_set():
            try:
                # The periodic empty batches (yield_on_timeout) rescan by stat: they
                # catch changes made before the watcher started or missed by it.
                async for changes in watchfiles.awatch(
                    *self._watch_roots(), watch_filter=_not_hidden, debounce=self.debounce_ms,
                    step=self.step_ms, stop_event=stop, force_polling=force_polling,
                    ignore_permission_denied=True, rust_timeout=RESCAN_MS, yield_on_timeout=True,
                ):
                    event = await asyncio.to_thread(self.scan, {path for _, path in changes})
                    if event.upserts or event.deletes or event.errors != last_errors:
                        last_errors = event.errors
                        yield event
                return
            except (OSError, RuntimeError) as e:
                # e.g. inotify watch limits: poll rather than stop watching
                log.warning("file watching failed (%s); polling instead", e)
                force_polling = True
                await asyncio.sleep(0.5)


def _not_hidden(change: watchfiles.Change, path: str) -> bool:
    return not hidden(os.path.basename(path))
