"""Reading manifests: the one loader behind `portico run`, `portico validate` and
the line numbers of every error (file, document, field).

Every `*.yaml`, `*.yml` and `*.json` under the given paths (recursively; hidden
files and directories are skipped, so editors' and writers' temporary dot-files
are never read) is loaded. YAML files may hold several documents; a document of
a `...List` kind contributes its `items`. A document that cannot be read is
reported (file, line, reason) and skipped; the rest loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from portico.objects import key_of
from portico.provider import Document, DocumentError, Source

EXTENSIONS = (".yaml", ".yml", ".json")
# Limits of one document (Kubernetes objects are JSON of at most ~1.5 MiB, shallow):
# beyond them a document is rejected before anything expands its aliases or recurses.
MAX_DOCUMENT_BYTES = 3 * 1024 * 1024
MAX_DEPTH = 100
MAX_VALUES = 500_000  # values after alias expansion ("billion laughs")
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
    # with keep_nodes: each document's YAML node and the line offset of its chunk
    # (for the line of a field: `node_line`)
    nodes: list[tuple[yaml.Node | None, int]] = field(default_factory=list)
    # `digest` of each of `documents` once asked for (`with_digests`): what a provider
    # keeps of a document once it has passed it on
    digests: list[bytes] = field(default_factory=list)

    def with_digests(self) -> FileResult:
        if len(self.digests) != len(self.documents):
            self.digests = [digest(d.raw) for d in self.documents]
        return self


def digest(raw: Any) -> bytes:
    """A digest of a document's content: equal documents, equal digests (key order aside)."""
    try:
        text = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):  # keys of mixed types (YAML allows them): the parse's own order
        text = repr(raw)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


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


class _Collector:
    """Turns parsed values into Documents and DocumentErrors for one file."""

    def __init__(self, file: str, keep_nodes: bool = False) -> None:
        self.file = file
        self.keep_nodes = keep_nodes
        self.result = FileResult()

    def error(self, line: int, message: str, path: str = "") -> None:
        self.result.errors.append(DocumentError(self.file, line, message, path))
        self.result.complete = False

    def add(self, raw: Any, line: int, node: yaml.Node | None = None, offset: int = 0, *,
            json_shaped: bool = False, item_lines: list[int] | None = None) -> None:
        """`json_shaped`: built by `_fast_document`, which admits JSON shapes only.
        `item_lines`: the 0-based chunk lines of a List's items (from `_fast_document`);
        else `node` tells them."""
        problem = None if json_shaped else shape_problem(raw)
        if problem is not None:
            self.error(line, f"invalid document: {problem}")
            return
        if _is_list(raw):
            items = raw["items"]
            nodes = _items_nodes(node, len(items))
            if item_lines is not None and len(item_lines) == len(items):
                lines = [offset + n + 1 for n in item_lines]
            else:
                lines = [line if n is None else offset + n.start_mark.line + 1 for n in nodes]
            for i, item in enumerate(items):
                self._add_one(item, lines[i], f"items[{i}].", nodes[i], offset)
            return
        self._add_one(raw, line, "", node, offset)

    def _add_one(self, raw: Any, line: int, prefix: str, node: yaml.Node | None, offset: int) -> None:
        problem = _identity_problem(raw)
        if problem is not None:
            path, reason = problem
            self.error(line, reason, (prefix + path).rstrip("."))
            return
        self.result.documents.append(Document(key_of(raw), raw, Source(self.file, line)))
        if self.keep_nodes:
            self.result.nodes.append((node, offset))


def _items_nodes(node: yaml.Node | None, count: int) -> list[yaml.Node | None]:
    """The node of each `items` entry of a List document's node."""
    out: list[yaml.Node | None] = [None] * count
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == "items" and isinstance(value_node, yaml.SequenceNode):
                for i, item in enumerate(value_node.value[:count]):
                    out[i] = item
    return out


class _Unsupported(Exception):
    """Not a plain JSON-shaped document: `_fast_document` leaves it to PyYAML's constructor."""


_STR, _INT, _FLOAT, _BOOL, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null"))
_START_ITEMS = 2  # stack depth of a List's items: [the document, its `items`]


def _fast_document(chunk: str) -> tuple[Any, int, list[int] | None] | None:
    """The one document of `chunk` built straight from libyaml's events: (value, 0-based
    line where it starts, lines of a List's items), None when the chunk holds none. Only
    for what manifests almost always are, JSON-shaped documents: string keys, plain or
    quoted scalars of the core schema, no anchor, alias, tag, merge key or complex key,
    within MAX_DEPTH and MAX_VALUES. Anything else (and any YAML error) raises
    _Unsupported, and PyYAML's composer and constructor load the chunk as before, with
    the same results and messages. Why: the composer's nodes and the constructor's
    calls per node took two thirds of loading a List of 1000 routes (0.31 s: 10,000
    routes were 3 s of CPU of a cold start), the events alone a sixth of it."""
    loader = _Loader(chunk)
    resolve = loader.resolve
    resolved: dict[str, Any] = {}  # plain scalar -> its value (keys and values repeat)
    values = 0
    item_lines: list[int] = []
    # open containers: [the container, the key awaiting its value (mappings)]
    stack: list[list[Any]] = []
    root: Any = None
    start = -1
    try:
        loader.get_event()  # StreamStart
        if isinstance(loader.peek_event(), yaml.StreamEndEvent):
            return None
        loader.get_event()  # DocumentStart
        while True:
            event = loader.get_event()
            kind = type(event)
            if kind is yaml.ScalarEvent:
                if event.anchor is not None:
                    raise _Unsupported
                text = event.value
                if event.tag is None and event.implicit == (True, False):  # plain, the most common case
                    value = resolved.get(text, resolved)
                    if value is resolved:
                        value = _scalar(loader, resolve(yaml.ScalarNode, text, (True, False)), text)
                        if len(resolved) < 4096:
                            resolved[text] = value
                else:  # as the composer resolves it
                    tag = event.tag if event.tag not in (None, "!") else resolve(yaml.ScalarNode, text, event.implicit)
                    value = _scalar(loader, tag, text)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                if event.anchor is not None or (event.tag is not None and event.tag != "!"):
                    raise _Unsupported
                value = {} if kind is yaml.MappingStartEvent else []
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                value = stack.pop()[0]
                if not stack:
                    root = value
                    break
                _store(stack[-1], value)
                continue
            else:  # an alias, or a document that does not end where it should
                raise _Unsupported
            values += 1
            if values > MAX_VALUES or len(stack) >= MAX_DEPTH:
                raise _Unsupported
            if start < 0:
                start = event.start_mark.line
            if len(stack) == _START_ITEMS and stack[0][1] == "items" and type(stack[1][0]) is list:
                item_lines.append(event.start_mark.line)
            if kind is yaml.ScalarEvent:
                if not stack:
                    root = value
                    break
                _store(stack[-1], value)
                continue
            stack.append([value, _NO_KEY])
        if not isinstance(loader.get_event(), yaml.DocumentEndEvent) or \
                not isinstance(loader.get_event(), yaml.StreamEndEvent):
            raise _Unsupported  # (more than one document: the composer says so)
    except Exception:  # noqa: BLE001 (a YAML error, or anything unforeseen: the composer's path tells)
        raise _Unsupported from None
    finally:
        loader.dispose()
    return root, start, item_lines if _is_list(root) else None


_NO_KEY: Any = object()


def _store(top: list[Any], value: Any) -> None:
    """`value` into the open container `top` (a mapping takes a key, then its value)."""
    container, key = top
    if type(container) is list:
        container.append(value)
    elif key is _NO_KEY:
        if type(value) is not str:
            raise _Unsupported  # a key that is not a string (the constructor and shape_problem tell)
        top[1] = value
    else:
        container[key] = value
        top[1] = _NO_KEY


def _scalar(loader: yaml.SafeLoader, tag: str, text: str) -> Any:
    """A scalar's value by its tag (the core schema's; others: _Unsupported)."""
    if tag == _STR:
        return text
    if tag in (_INT, _FLOAT, _BOOL, _NULL):
        return loader.construct_object(yaml.ScalarNode(tag, text))
    raise _Unsupported  # e.g. a merge key "<<" or the value key "="


def parse_yaml(text: str, file: str, keep_nodes: bool = False) -> FileResult:
    out = _Collector(file, keep_nodes)
    for offset, chunk in split_yaml(text):
        if len(chunk) > MAX_DOCUMENT_BYTES:
            out.error(offset + 1, f"invalid document: larger than {MAX_DOCUMENT_BYTES // 2**20} MiB")
            continue
        if not keep_nodes:
            try:
                fast = _fast_document(chunk)
            except _Unsupported:
                pass
            else:
                if fast is not None and fast[0] is not None:
                    raw, start, item_lines = fast
                    out.add(raw, offset + start + 1, None, offset, json_shaped=True, item_lines=item_lines)
                continue
        loader = _Loader(chunk)
        try:
            node = loader.get_single_node()
            if node is None:  # only comments or blank lines
                continue
            raw = loader.construct_document(node)
        except yaml.YAMLError as e:
            out.error(_yaml_error_line(e, offset, chunk), _yaml_error_message(e))
            continue
        except RecursionError:
            out.error(offset + 1, f"invalid document: nested deeper than {MAX_DEPTH} levels")
            continue
        finally:
            loader.dispose()
        if raw is None:
            continue
        line = offset + node.start_mark.line + 1
        out.add(raw, line, node, offset)
    return out.result


def parse_json(text: str, file: str, keep_nodes: bool = False) -> FileResult:
    out = _Collector(file, keep_nodes)
    if not text.strip():
        return out.result
    if len(text) > MAX_DOCUMENT_BYTES:
        out.error(1, f"invalid document: larger than {MAX_DOCUMENT_BYTES // 2**20} MiB")
        return out.result
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        out.error(e.lineno, f"invalid JSON: {e.msg} (column {e.colno})")
        return out.result
    except RecursionError:
        out.error(1, f"invalid document: nested deeper than {MAX_DEPTH} levels")
        return out.result
    leading = text[: len(text) - len(text.lstrip())]
    out.add(raw, leading.count("\n") + 1)
    return out.result


_SCALARS = (str, int, float, bool, type(None))


def shape_problem(raw: Any) -> str | None:
    """Why `raw` is not a JSON document an API server would take (string keys, JSON
    scalars, bounded depth and size), or None. Iterative, and it stops at the first
    problem: a recursive alias or an alias bomb is found without expanding it."""
    values = 0
    on_path: set[int] = set()  # containers being walked (a recursive alias comes back to one)
    stack: list[tuple[Any, int, bool]] = [(raw, 1, False)]
    while stack:
        obj, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(obj))
            continue
        values += 1
        if values > MAX_VALUES:
            return f"more than {MAX_VALUES:,} values once its aliases are expanded"
        if isinstance(obj, _SCALARS):
            continue
        if not isinstance(obj, dict | list):
            return f"a value of type {type(obj).__name__} is not JSON"
        if id(obj) in on_path:
            return "a recursive alias (the document contains itself)"
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        on_path.add(id(obj))
        stack.append((obj, depth, True))
        if isinstance(obj, dict):
            for key, value in obj.items():
                if not isinstance(key, str):
                    return f"mapping key {key!r} is not a string"
                stack.append((value, depth + 1, False))
        else:
            stack.extend((value, depth + 1, False) for value in obj)
    return None


def load_file(path: str, keep_nodes: bool = False) -> FileResult:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        result = FileResult(complete=False)
        result.errors.append(DocumentError(path, 1, f"cannot read file: {e}"))
        return result
    return load_text(text, path, keep_nodes)


def load_text(text: str, path: str, keep_nodes: bool = False) -> FileResult:
    if path.endswith(".json"):
        return parse_json(text, path, keep_nodes)
    return parse_yaml(text, path, keep_nodes)


def hidden(name: str) -> bool:
    return name.startswith(".")


def manifest_files(paths: Sequence[str]) -> list[str]:
    """Every manifest file under `paths`, in a stable order (an object in two files is a conflict)."""
    found: list[str] = []
    for root in paths:
        if os.path.isfile(root):
            found.append(root)
            continue
        for directory, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not hidden(d))
            found.extend(os.path.join(directory, f) for f in sorted(filenames)
                         if not hidden(f) and f.endswith(EXTENSIONS))
    return found



# ---------------------------------------------------------------- field lines


_SEGMENT = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def parse_path(path: str) -> list[str | int]:
    """``spec.rules[0].matches`` -> ["spec", "rules", 0, "matches"] (inverse of the paths we report)."""
    segs: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if m is None or m.end() == pos:
            break
        if m.group(1) is not None:
            segs.append(m.group(1))
        elif m.group(2) is not None:
            segs.append(int(m.group(2)))
        else:
            segs.append(str(json.loads(m.group(3))))
        pos = m.end()
    return segs


def node_line(node: yaml.Node | None, path: list[str | int], default: int, offset: int = 0) -> int:
    """The line of the deepest YAML node along path (a missing field: its parent's line);
    node marks count from line `offset` of the file."""
    line = default
    cur = node
    for seg in path:
        if cur is None:
            break
        nxt: yaml.Node | None = None
        if isinstance(cur, yaml.MappingNode) and isinstance(seg, str):
            for key, value in cur.value:
                if isinstance(key, yaml.ScalarNode) and key.value == seg:
                    line = offset + key.start_mark.line + 1
                    nxt = value
                    break
        elif isinstance(cur, yaml.SequenceNode) and isinstance(seg, int) and 0 <= seg < len(cur.value):
            nxt = cur.value[seg]
            line = offset + nxt.start_mark.line + 1
        if nxt is None:
            break
        cur = nxt
    return line


def field_line(file: str, start_line: int, path: str) -> int:
    """The line of field `path` in the object that starts at `start_line` of `file`
    (errors are reported where documents start; this finds the field itself)."""
    result = load_file(file, keep_nodes=True)
    for doc, (node, offset) in zip(result.documents, result.nodes, strict=True):
        if doc.source.line == start_line:
            return node_line(node, parse_path(path), start_line, offset)
    return start_line
