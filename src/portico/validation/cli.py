"""`portico validate PATH...`: the API server's validation, offline, with file and line."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from portico.validation import validate

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class Report:
    """One violation (or unreadable document), located in its file."""

    file: str
    line: int  # 1-based: the field's line when the path maps to a YAML node, else the document's
    path: str  # field path in the object, "" for the whole document
    message: str
    rule: str | None
    object: str = ""  # "Kind namespace/name" when known

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        what = f" {self.object}" if self.object else ""
        field = f" {self.path}:" if self.path else ""
        return f"{where}{what}{field} {self.message}"


# --- files and documents ----------------------------------------------------------


def manifest_files(paths: list[Path]) -> list[Path]:
    """The manifests under paths: files as given, directories recursively (hidden entries skipped)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p).parts
                if f.is_file() and f.suffix in MANIFEST_SUFFIXES and not any(x.startswith(".") for x in rel):
                    out.append(f)
        else:
            out.append(p)
    return out


@dataclass(frozen=True, slots=True)
class _Doc:
    data: Any
    node: yaml.Node | None
    line: int


def _documents(text: str) -> Iterator[_Doc | yaml.YAMLError]:
    """Each YAML document with its node tree (for field lines); a parse error ends the file."""
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = loader.construct_document(node)
            yield _Doc(data, node, node.start_mark.line + 1)
    except yaml.YAMLError as exc:
        yield exc
    finally:
        loader.dispose()


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


def node_line(node: yaml.Node | None, path: list[str | int], default: int) -> int:
    """The line of the deepest YAML node along path (a missing field: its parent's line)."""
    line = default
    cur = node
    for seg in path:
        if cur is None:
            break
        nxt: yaml.Node | None = None
        if isinstance(cur, yaml.MappingNode) and isinstance(seg, str):
            for key, value in cur.value:
                if isinstance(key, yaml.ScalarNode) and key.value == seg:
                    line = key.start_mark.line + 1
                    nxt = value
                    break
        elif isinstance(cur, yaml.SequenceNode) and isinstance(seg, int) and 0 <= seg < len(cur.value):
            nxt = cur.value[seg]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        cur = nxt
    return line


def _describe(raw: Any) -> str:
    if not isinstance(raw, dict):
        return ""
    meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    name = str(meta.get("name") or "")
    ns = str(meta.get("namespace") or "")
    kind = str(raw.get("kind") or "")
    return f"{kind} {ns + '/' if ns else ''}{name}".strip()


def _items(doc: _Doc) -> Iterator[tuple[Any, yaml.Node | None, int]]:
    """The objects of a document: itself, or the items of a `kind: List`."""
    data = doc.data
    if isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list):
        items_node: yaml.Node | None = None
        if isinstance(doc.node, yaml.MappingNode):
            for key, value in doc.node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == "items":
                    items_node = value
        for i, item in enumerate(data["items"]):
            node = (
                items_node.value[i] if isinstance(items_node, yaml.SequenceNode) and i < len(items_node.value) else None
            )
            yield item, node, (node.start_mark.line + 1) if node is not None else doc.line
    else:
        yield data, doc.node, doc.line


def field_line(file: str, start_line: int, path: str) -> int:
    """The line of field `path` in the object that starts at `start_line` of `file`
    (the provider reports where documents start; this finds the field itself)."""
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return start_line
    for doc in _documents(text):
        if isinstance(doc, yaml.YAMLError):
            break
        for _, node, line in _items(doc):
            if line == start_line:
                return node_line(node, parse_path(path), line)
    return start_line


def validate_text(text: str, file: str) -> tuple[list[Report], int]:
    """Reports for the manifests in text (YAML or JSON), and how many objects it holds."""
    reports: list[Report] = []
    count = 0
    for doc in _documents(text):
        if isinstance(doc, yaml.YAMLError):
            mark = getattr(doc, "problem_mark", None) or getattr(doc, "context_mark", None)
            line = mark.line + 1 if mark is not None else 1
            problem = getattr(doc, "problem", None) or str(doc)
            reports.append(Report(file, line, "", f"cannot parse: {problem}", "yaml"))
            break
        if doc.data is None:
            continue  # an empty document
        for raw, node, line in _items(doc):
            count += 1
            if not isinstance(raw, dict):
                reports.append(Report(file, line, "", "a manifest must be a mapping", "type"))
                continue
            what = _describe(raw)
            for v in validate(raw):
                reports.append(Report(file, node_line(node, parse_path(v.path), line), v.path, v.message, v.rule, what))
    return reports, count


def validate_paths(paths: list[Path]) -> list[Report]:
    """Validate every manifest under paths, as ``portico run`` would load them."""
    return _validate_paths(paths)[0]


def _validate_paths(paths: list[Path]) -> tuple[list[Report], int, int]:
    reports: list[Report] = []
    objects = 0
    files = manifest_files(paths)
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reports.append(Report(str(f), 1, "", f"cannot read: {exc}", "io"))
            continue
        found, count = validate_text(text, str(f))
        reports.extend(found)
        objects += count
    return reports, objects, len(files)


# --- the command ---------------------------------------------------------------------


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


def validate_command(
    paths: Annotated[list[Path], typer.Argument(help="Manifest files or directories.", exists=True)],
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="text or json.")] = OutputFormat.text,
) -> None:
    """Validate manifests as the API server would (CRD schemas and CEL rules); exit 1 on errors."""
    reports, objects, files = _validate_paths(paths)
    if output == OutputFormat.json:
        doc = {"valid": not reports, "files": files, "objects": objects, "errors": [asdict(r) for r in reports]}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        from rich.console import Console
        from rich.markup import escape

        console = Console(highlight=False, soft_wrap=True)
        for r in reports:
            what = f" [bold]{escape(r.object)}[/bold]" if r.object else ""
            field = f" [cyan]{escape(r.path)}[/cyan]:" if r.path else ""
            console.print(f"[magenta]{escape(r.file)}:{r.line}[/magenta]{what}{field} {escape(r.message)}")
        summary = f"{objects} object(s) in {files} file(s): "
        if reports:
            console.print(f"{summary}[red]{len(reports)} error(s)[/red]")
        else:
            console.print(f"{summary}[green]valid[/green]")
    if reports:
        raise typer.Exit(1)
