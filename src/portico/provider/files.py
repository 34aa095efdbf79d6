"""The standalone provider: manifests in files (`portico.provider.manifests`),
watched for changes, as object events. Objects come as written: the API server's
checks and metadata are `portico.provider.apiserver`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import watchfiles

from portico.objects import ObjectKey
from portico.provider import Document, DocumentError, ProviderEvent, Source
from portico.provider.bulk import BULK, BULK_BYTES, BulkPool, load_files
from portico.provider.inotify import Batch, Inotify
from portico.provider.manifests import EXTENSIONS, FileResult, hidden, load_file, manifest_files

log = logging.getLogger(__name__)

RESCAN_MS = 1000
# A file found empty (no document, no error) less than this long after it was written,
# when it held objects, is taken for a write in progress (truncated, not yet written: an
# editor or `write_text` saving in place) and keeps its objects until a later scan: read
# as a deletion, its routes went down and came back as new objects (new uid, generation 1).
# The periodic rescan (RESCAN_MS) reads it again, so a file really emptied is a deletion
# within about a second.
SETTLE_MS = 500
# a scan made on the event loop (`FileProvider._small`): at most this many changed files,
# among at most this many files, holding at most this many bytes
SMALL_SCAN = (8, 200, 64 * 1024)


@dataclasses.dataclass(frozen=True, slots=True)
class _Held:
    """What the provider keeps of a document it passed on: enough to tell a change and
    to name it in a conflict. The document itself lives on in the store only (issue 30:
    one copy of each object); the rare case that needs it again reloads its file."""

    digest: bytes
    source: Source


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


# ---------------------------------------------------------------- provider


class FileProvider:
    """Loads manifests from `paths` and reports changes as ProviderEvents."""

    def __init__(self, paths: Sequence[str | Path], debounce_ms: int = 200, step_ms: int = 2,
                 pool: BulkPool | None = None, settle_ms: int = SETTLE_MS, quiet_ms: int = 20,
                 loader: Callable[[Sequence[str]], list[FileResult]] = load_files) -> None:
        # absolute, so that paths reported by the watcher match the scanned ones
        self.paths = [os.path.abspath(p) for p in paths]
        self.debounce_ms = debounce_ms
        # When polling (no inotify): the quiet time that ends a burst of file events, and
        # the poll period (a change waits for it, the idle process pays for it).
        self.step_ms = step_ms
        # With inotify a file is reported when its writer closes it (or renames it into
        # place); one written and left open, after this long without an event.
        self.quiet_ms = quiet_ms
        self.settle_ms = settle_ms
        # the stat signature of each file as last loaded (its results are kept for one scan)
        self._cache: dict[str, tuple[int, int, int] | None] = {}
        self._loaded: dict[str, FileResult] = {}
        self._by_file: dict[str, dict[ObjectKey, _Held]] = {}
        self._fresh: dict[str, dict[ObjectKey, Document]] = {}  # this scan's documents, per file
        self._current: dict[ObjectKey, bytes] = {}  # the digest of each object passed on
        # object -> the files that define it (a tuple: almost always one; a set costs 216 bytes)
        self._defined: dict[ObjectKey, tuple[str, ...]] = {}
        self._file_errors: dict[str, tuple[DocumentError, ...]] = {}
        # objects defined in more than one file: the conflict, reported until one goes
        self._conflicts: dict[ObjectKey, DocumentError] = {}
        self._errors: tuple[DocumentError, ...] = ()
        self._loaded_once = False
        self._full_at = 0.0  # time.monotonic() of the last full scan (`scan`)
        self._missing: set[str] = set()  # watched paths that do not exist (their objects are kept)
        self.pool = pool or BulkPool(workers=1)  # (one: in-process)
        # what the bulk workers make of a burst of files: parsed, or with the next stage's
        # work on each document done in the same pass (`apiserver.parse_and_check`)
        self.loader = loader

    def scan(self, changed: Iterable[str] | None = None, exact: bool = False) -> ProviderEvent:
        """Reload (files in `changed`, and any whose stat changed) and diff with the last
        scan: only the objects of the files reloaded, added or gone are compared, so one
        new file costs the same beside 10 objects or 10,000. `exact`: `changed` names every
        file changed since the last scan (inotify's files written, renamed or removed; no
        directory changed): only those are looked at, without listing the tree (a scan that
        stats every file made a burst of 1000 files quadratic); a full scan still comes at
        least every RESCAN_MS."""
        changed = set(changed or ())
        for path in changed:
            self._cache.pop(path, None)
        self._note_missing()
        files = self._exact_files(changed) if exact else None
        if files is not None:
            try:
                return self._scan_files(files)
            finally:
                self._loaded.clear()
                self._fresh.clear()
        self._full_at = time.monotonic()
        paths = manifest_files(self.paths)
        kept = {p for p in self._by_file if self._under_missing(p)}
        if self._loaded_once and set(paths) | kept == set(self._by_file) and all(map(self._cached, paths)):
            # the periodic rescan's usual case: nothing to parse, nothing to diff
            return ProviderEvent(errors=self._errors)
        try:
            return self._scan(paths)
        finally:
            self._loaded.clear()
            self._fresh.clear()

    def _exact_files(self, changed: set[str]) -> list[str] | None:
        """The manifest files among `changed` (present or gone), or None when a full scan
        is due: a watched path missing or named itself, a path under two watched paths, or
        the last full scan RESCAN_MS ago (files emptied mid-write are read again by it)."""
        if not self._loaded_once or self._missing or time.monotonic() - self._full_at > RESCAN_MS / 1000:
            return None
        files = []
        for path in changed:
            places = [place for place in (self._place_under(i, root, path) for i, root in enumerate(self.paths))
                      if place is not None]
            if len(places) > 1 or path in self.paths:
                return None
            if places and not any(hidden(part[1]) for part in places[0][1]) and path.endswith(EXTENSIONS):
                files.append(path)
        return sorted(files, key=self._place)

    @staticmethod
    def _place_under(index: int, root: str, path: str) -> tuple[int, tuple[tuple[int, str], ...]] | None:
        """Where `manifest_files` lists `path` under the watched `root`: a sort key (a
        directory's files before its subdirectories', each in name order)."""
        if path == root:
            return index, ()
        prefix = root.rstrip(os.sep) + os.sep
        if not path.startswith(prefix):
            return None
        *directories, name = path[len(prefix):].split(os.sep)
        return index, (*((1, d) for d in directories), (0, name))

    def _place(self, path: str) -> tuple[int, tuple[tuple[int, str], ...]]:
        return next(p for p in (self._place_under(i, r, path) for i, r in enumerate(self.paths)) if p is not None)

    def _scan(self, paths: list[str]) -> ProviderEvent:
        """A full scan: `paths` every manifest file (`manifest_files`)."""
        stale = [p for p in paths if not (p in self._by_file and self._cached(p))]
        listed = set(paths)
        gone = [p for p in self._by_file if p not in listed and not self._under_missing(p)]
        order = {p: i for i, p in enumerate(paths)}
        return self._reload(stale, gone, order.__getitem__, paths)

    def _scan_files(self, files: list[str]) -> ProviderEvent:
        """An exact scan (`scan`): `files` the manifest files changed, present or gone."""
        present = {p for p in files if os.path.lexists(p) and not os.path.isdir(p)}  # (as os.walk lists files)
        stale = [p for p in files if p in present and not (p in self._by_file and self._cached(p))]
        gone = [p for p in files if p in self._by_file and p not in present]
        return self._reload(stale, gone, self._place, None)

    def _reload(self, stale: list[str], gone: list[str], order: Callable[[str], Any],
                listed: list[str] | None) -> ProviderEvent:
        """Load the `stale` files, forget the `gone` ones, diff the objects they define.
        `order`: a file's place in the listing; `listed`: every file in that order, when
        known (a full scan)."""
        touched: set[ObjectKey] = set()
        self._load_all(stale)
        for path in stale:
            result = self._load_cached(path).with_digests()
            self._fresh[path] = {d.key: d for d in result.documents}
            held = {d.key: _Held(h, d.source) for d, h in zip(result.documents, result.digests, strict=True)}
            if not result.complete or self._emptied_just_now(path, result):
                # keep what this file held before, so a half-written or broken
                # file does not take down the routes it defines
                for key, old in self._by_file.get(path, {}).items():
                    held.setdefault(key, old)
            touched.update(self._by_file.get(path, {}), held)
            self._define(path, held)
            self._file_errors[path] = tuple(result.errors)
        for path in gone:
            touched.update(self._by_file[path])
            self._define(path, {})
            del self._by_file[path]
            self._file_errors.pop(path, None)
            self._cache.pop(path, None)
        if listed is None:
            listed = sorted((p for p, errors in self._file_errors.items() if errors), key=order)
        file_errors = tuple(e for p in listed for e in self._file_errors.get(p, ()))
        event = self._diff(touched, order)
        self._errors = file_errors + tuple(self._conflicts[k] for k in sorted(self._conflicts))
        return dataclasses.replace(event, errors=self._errors)

    def _emptied_just_now(self, path: str, result: FileResult) -> bool:
        """`path` held objects and is now empty, written less than `settle_ms` ago (see
        SETTLE_MS): it is read again at the next scan."""
        if result.documents or result.errors or not self._by_file.get(path):
            return False
        signature = self._cache.get(path)
        if signature is None or time.time_ns() - signature[0] >= self.settle_ms * 1_000_000:
            return False
        log.info("%s is empty a moment after it was written: its objects are kept until it is read again", path)
        self._cache.pop(path, None)  # not cached: the next scan reads it again
        return True

    def _note_missing(self) -> None:
        """A watched path that disappears as a whole (a directory removed, to be recreated;
        a volume unmounted) is an accident far more often than a wish to withdraw every
        route: its files' objects stay as they were, logged, until it is back. (Files
        removed from a path that exists are deletions as usual.)"""
        missing = {p for p in self.paths if not os.path.exists(p)}
        for path in sorted(missing - self._missing):
            log.warning("%s is gone: the configuration it held keeps serving until it is back "
                        "(to withdraw its objects, delete the files in it or empty it)", path)
        for path in sorted(self._missing - missing):
            log.info("%s is back: its manifests are loaded again", path)
        self._missing = missing

    def _under_missing(self, path: str) -> bool:
        return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in self._missing)

    def _define(self, path: str, docs: dict[ObjectKey, _Held]) -> None:
        """`path` now holds `docs`: the index of which files define which object follows."""
        for key in self._by_file.get(path, {}):
            if key not in docs:
                files = tuple(f for f in self._defined.get(key, ()) if f != path)
                if files:
                    self._defined[key] = files
                else:
                    self._defined.pop(key, None)
        for key in docs:
            files = self._defined.get(key, ())
            if path not in files:
                self._defined[key] = (*files, path)
        self._by_file[path] = docs

    def _load_all(self, paths: list[str]) -> None:
        """Load the files not cached, a burst of them (`BULK` files, or two or more holding
        `BULK_BYTES`) across the bulk pool's processes."""
        todo = [p for p in paths if not self._cached(p)]
        signatures = [_signature(p) for p in todo]  # before reading: a later write is seen again
        size = sum(s[1] for s in signatures if s is not None)
        if len(todo) < BULK and (len(todo) < 2 or size < BULK_BYTES):
            return  # `_load_cached` loads them one by one
        # a few large files: one a task, the workers taking the next as they finish (by
        # twos, the 10 Lists of 1000 routes of a 10,000-route start left one worker 2000
        # routes behind the other)
        results = self.pool.map(self.loader, todo, bulk=True, chunk=1 if len(todo) < BULK else None)
        for path, signature, result in zip(todo, signatures, results, strict=True):
            self._cache[path] = signature
            self._loaded[path] = result
            for error in result.errors:
                log.warning("skipped document: %s", error)

    def _cached(self, path: str) -> bool:
        signature = _signature(path)
        return path in self._cache and signature is not None and self._cache[path] == signature

    def _load_cached(self, path: str) -> FileResult:
        """`path` as loaded in this scan, else loaded now."""
        signature = _signature(path)
        loaded = self._loaded.get(path)
        if loaded is not None and signature is not None and self._cache.get(path) == signature:
            return loaded
        result = load_file(path)
        self._cache[path] = signature
        self._loaded[path] = result
        for error in result.errors:
            log.warning("skipped document: %s", error)
        return result

    def _diff(self, touched: set[ObjectKey], order: Callable[[str], Any]) -> ProviderEvent:
        """The touched objects as they are now. An object defined in two files is a
        conflict, reported with both: neither definition is applied (one file must not
        silently replace what another defines, say a tenant's file the platform's
        Gateway or ReferenceGrant), and the version applied before keeps serving until
        one of them is removed."""
        upserts, deletes = [], []
        for key in sorted(touched):
            files = sorted(self._defined.get(key, ()), key=order)
            if not files:
                self._conflicts.pop(key, None)
                if self._current.pop(key, None) is not None:
                    deletes.append(key)
                continue
            held = self._by_file[files[-1]][key]
            if len(files) > 1:
                self._conflict(key, [self._by_file[f][key].source for f in files])
                continue
            if self._conflicts.pop(key, None) is not None:
                log.info("%s is defined in %s only again: applied", key, held.source.file)
            if self._current.get(key) != held.digest:
                doc = self._document(files[-1], key)
                if doc is None:
                    continue  # the file changed meanwhile: the next scan reloads it
                upserts.append(doc)
                self._current[key] = held.digest
        initial = not self._loaded_once
        self._loaded_once = True
        return ProviderEvent(tuple(upserts), tuple(deletes), self._errors, initial)

    def _document(self, path: str, key: ObjectKey) -> Document | None:
        """The document of `key` in `path`: this scan's, or (a file not reloaded, e.g. the
        other side of a conflict that just ended) loaded again, if unchanged since."""
        doc = self._fresh.get(path, {}).get(key)
        if doc is not None:
            return doc
        result = load_file(path).with_digests()
        self._fresh[path] = {d.key: d for d in result.documents}
        held = self._by_file[path][key]
        doc = self._fresh[path].get(key)
        if doc is None or result.digests[result.documents.index(doc)] != held.digest:
            self._cache.pop(path, None)
            return None
        return doc

    def _conflict(self, key: ObjectKey, sources: list[Source]) -> None:
        where = " and ".join(f"{s.file}:{s.line}" for s in sources)
        kept = "the version applied before keeps serving" if key in self._current else "it is not applied"
        last = sources[-1]
        error = DocumentError(last.file, last.line, f"{key} is defined in {where}: {kept} until only one file "
                                                    "defines it", object=str(key), rule="conflict")
        if self._conflicts.get(key) != error:
            log.error("conflict: %s", error)
        self._conflicts[key] = error

    def _watch_roots(self) -> list[str]:
        # a single file is watched through its directory: atomic renames
        # replace the inode a direct watch would follow
        roots = {p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)) for p in self.paths}
        return sorted(r for r in roots if os.path.isdir(r))

    async def events(self, stop: asyncio.Event | None = None) -> AsyncIterator[ProviderEvent]:
        """The initial load, then one event per batch of file changes that changed an
        object or the list of load errors."""
        event = await asyncio.to_thread(self.scan)
        last_errors = event.errors
        yield event
        # Not kept while waiting for changes: the initial load's parsed documents would
        # live on beside what the store keeps of them (a second copy of every object).
        del event
        force_polling: bool | None = None
        while stop is None or not stop.is_set():
            roots = self._watch_roots()
            try:
                async with contextlib.aclosing(self._batches(roots, stop, force_polling)) as batches:
                    async for changes in batches:
                        observed = time.monotonic()
                        event = self.scan(*changes) if self._small(changes) else \
                            await asyncio.to_thread(self.scan, *changes)
                        if event.upserts or event.deletes or event.errors != last_errors:
                            last_errors = event.errors
                            yield dataclasses.replace(event, observed=observed)
                        del event
                        if self._watch_roots() != roots:
                            break  # a watched directory went or came back: watch what is there now
            except (OSError, RuntimeError) as e:
                # e.g. inotify watch limits: poll rather than stop watching
                log.warning("file watching failed (%s); polling instead", e)
                force_polling = True
                await asyncio.sleep(0.5)

    def _small(self, changes: Batch) -> bool:
        """A scan small enough to make on the event loop: a few small files changed, an
        exact scan or among few files (a full scan stats every file). Handing a scan of
        well under a millisecond to a thread and back cost about half as much again; a
        bigger one goes to a thread, so the event loop (the xDS streams) never waits for a
        burst or a big file."""
        paths, exact = changes
        if not paths or len(paths) > SMALL_SCAN[0] or (not exact and len(self._by_file) > SMALL_SCAN[1]):
            return False
        size = 0
        for path in paths:
            if not os.path.isfile(path):  # gone, or a directory (its files are read too)
                return False
            size += os.path.getsize(path)
        return size <= SMALL_SCAN[2]

    async def _batches(self, roots: list[str], stop: asyncio.Event | None,
                       force_polling: bool | None) -> AsyncGenerator[Batch, None]:
        """The paths changed, a batch at a time, and an empty batch every RESCAN_MS: the
        periodic rescan by stat catches changes made before the watcher started or missed
        by it. Linux's inotify read on the event loop (`portico.provider.inotify`: a file
        is reported once written, with no polling), else watchfiles polling the tree."""
        if not roots:  # every watched path is gone: look again each rescan period
            await asyncio.sleep(RESCAN_MS / 1000)
            yield Batch(set(), exact=False)
            return
        if not force_polling:
            watcher = Inotify(roots, quiet_ms=self.quiet_ms)
            try:
                async with contextlib.aclosing(watcher.batches(RESCAN_MS / 1000, stop)) as batches:
                    async for batch in batches:
                        yield batch
            finally:
                watcher.close()
            return
        async with contextlib.aclosing(watchfiles.awatch(
                *roots, watch_filter=_not_hidden, debounce=self.debounce_ms, step=self.step_ms, stop_event=stop,
                force_polling=True, ignore_permission_denied=True, rust_timeout=RESCAN_MS,
                yield_on_timeout=True)) as polled:
            async for changes in polled:
                yield Batch({path for _, path in changes}, exact=False)


def _not_hidden(change: watchfiles.Change, path: str) -> bool:
    return not hidden(os.path.basename(path))
