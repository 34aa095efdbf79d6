"""The standalone provider: manifests in files, watched for changes.

Every `*.yaml`, `*.yml` and `*.json` under the given paths (recursively; hidden
files and directories are skipped, so editors' and writers' temporary dot-files
are never read) is loaded. YAML files may hold several documents; a document of
kind `List` contributes its `items`. A document that cannot be read is reported
(file, line, reason) and skipped; the rest loads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import watchfiles
import yaml

from portico.objects import ObjectKey, key_of
from portico.provider import Document, DocumentError, ProviderEvent, Source

log = logging.getLogger(__name__)

EXTENSIONS = (".yaml", ".yml", ".json")
RESCAN_MS = 1000
_DOC_START = re.compile(r"^---(\s|$)")


# libyaml's parser when PyYAML has it (the pure-Python one took most of the time of
# loading a thousand routes); same nodes, marks and errors.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that keeps timestamps as strings: manifests are JSON-shaped
    (a creationTimestamp or a date-like label must stay a string)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class FileResult:
    documents: list[Document] = field(default_factory=list)
    errors: list[DocumentError] = field(default_factory=list)
    # False when a document could not be identified: objects it may have held
    # are then kept from the previous load instead of being deleted.
    complete: bool = True


# ---------------------------------------------------------------- parsing


def split_yaml(text: str) -> Iterator[tuple[int, str]]:
    """(0-based line offset, text) of each `---`-separated chunk of a YAML stream.

    Splitting before parsing lets a broken document be skipped while the
    documents after it still load (a YAML error ends PyYAML's stream).
    """
    lines = text.splitlines(keepends=True)
    start = 0
    for i, line in enumerate(lines):
        if i > start and _DOC_START.match(line):
            yield start, "".join(lines[start:i])
            start = i
    if start < len(lines):
        yield start, "".join(lines[start:])


def _yaml_error_line(error: yaml.YAMLError, offset: int, chunk: str) -> int:
    """1-based file line of a YAML error. An error found only at the end of the
    chunk (e.g. an unclosed bracket) points at what was left open instead, not
    at the next document's `---`."""
    last = max((i for i, line in enumerate(chunk.splitlines()) if line.strip()), default=0)
    problem = getattr(error, "problem_mark", None)
    context = getattr(error, "context_mark", None)
    mark = problem
    if mark is None or (mark.line > last and context is not None):
        mark = context
    line = min(mark.line, last) if mark is not None else 0
    return offset + line + 1


def _yaml_error_message(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError):
        parts = [p for p in (error.context, error.problem) if p]
        return "invalid YAML: " + ", ".join(parts)
    return f"invalid YAML: {error}"


def _identity_problem(raw: Any) -> tuple[str, str] | None:
    """(field path, reason) when `raw` cannot be an object, else None."""
    if not isinstance(raw, dict):
        return "", f"document is a {type(raw).__name__}, not a mapping"
    for required in ("apiVersion", "kind"):
        value = raw.get(required)
        if not isinstance(value, str) or not value:
            return required, "required field is missing" if value in (None, "") else "must be a string"
    meta = raw.get("metadata")
    if not isinstance(meta, dict):
        return "metadata", "required field is missing" if meta is None else "must be a mapping"
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return "metadata.name", "required field is missing" if name in (None, "") else "must be a string"
    namespace = meta.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        return "metadata.namespace", "must be a string"
    return None


def _is_list(raw: Any) -> bool:
    return (isinstance(raw, dict) and isinstance(raw.get("kind"), str) and raw["kind"].endswith("List")
            and isinstance(raw.get("items"), list))


def _item_lines(node: yaml.Node | None, count: int, default: int, offset: int) -> list[int]:
    """1-based line of each `items` entry of a List document's node."""
    lines = [default] * count
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == "items" and isinstance(value_node, yaml.SequenceNode):
                for i, item in enumerate(value_node.value[:count]):
                    lines[i] = offset + item.start_mark.line + 1
    return lines


class _Collector:
    """Turns parsed values into Documents and DocumentErrors for one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.result = FileResult()

    def error(self, line: int, message: str, path: str = "") -> None:
        self.result.errors.append(DocumentError(self.file, line, message, path))
        self.result.complete = False

    def add(self, raw: Any, line: int, item_lines: list[int] | None = None) -> None:
        if _is_list(raw):
            items = raw["items"]
            lines = item_lines or [line] * len(items)
            for i, item in enumerate(items):
                self._add_one(item, lines[i], f"items[{i}].")
            return
        self._add_one(raw, line, "")

    def _add_one(self, raw: Any, line: int, prefix: str) -> None:
        problem = _identity_problem(raw)
        if problem is not None:
            path, reason = problem
            self.error(line, reason, (prefix + path).rstrip("."))
            return
        self.result.documents.append(Document(key_of(raw), raw, Source(self.file, line)))


def parse_yaml(text: str, file: str) -> FileResult:
    out = _Collector(file)
    for offset, chunk in split_yaml(text):
        loader = _Loader(chunk)
        try:
            node = loader.get_single_node()
            if node is None:  # only comments or blank lines
                continue
            raw = loader.construct_document(node)
        except yaml.YAMLError as e:
            out.error(_yaml_error_line(e, offset, chunk), _yaml_error_message(e))
            continue
        finally:
            loader.dispose()
        if raw is None:
            continue
        line = offset + node.start_mark.line + 1
        count = len(raw["items"]) if _is_list(raw) else 0
        out.add(raw, line, _item_lines(node, count, line, offset) if count else None)
    return out.result


def parse_json(text: str, file: str) -> FileResult:
    out = _Collector(file)
    if not text.strip():
        return out.result
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        out.error(e.lineno, f"invalid JSON: {e.msg} (column {e.colno})")
        return out.result
    leading = text[: len(text) - len(text.lstrip())]
    out.add(raw, leading.count("\n") + 1)
    return out.result


def load_file(path: str) -> FileResult:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        result = FileResult(complete=False)
        result.errors.append(DocumentError(path, 1, f"cannot read file: {e}"))
        return result
    return parse_json(text, path) if path.endswith(".json") else parse_yaml(text, path)


# ---------------------------------------------------------------- discovery


def _hidden(name: str) -> bool:
    return name.startswith(".")


def manifest_files(paths: Sequence[str]) -> list[str]:
    """Every manifest file under `paths`, in a stable order (later files win on duplicates)."""
    found: list[str] = []
    for root in paths:
        if os.path.isfile(root):
            found.append(root)
            continue
        for directory, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
            found.extend(os.path.join(directory, f) for f in sorted(filenames)
                         if not _hidden(f) and f.endswith(EXTENSIONS))
    return found


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
    return not _hidden(os.path.basename(path))
