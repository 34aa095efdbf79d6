"""`portico validate PATH...`: the API server's validation, offline, with file and line."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from portico.provider.manifests import load_text, manifest_files, node_line, parse_path
from portico.validation import validate


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


def validate_text(text: str, file: str) -> tuple[list[Report], int]:
    """Reports for the manifests in text (YAML or JSON), and how many objects it holds:
    read by the same loader as `portico run`, so lines and messages are the same."""
    result = load_text(text, file, keep_nodes=True)
    reports = [Report(e.file, e.line, e.path, e.message, "yaml" if not e.path else "type") for e in result.errors]
    for doc, (node, offset) in zip(result.documents, result.nodes, strict=True):
        line = doc.source.line
        for v in validate(doc.raw):
            reports.append(Report(file, node_line(node, parse_path(v.path), line, offset), v.path, v.message,
                                  v.rule, str(doc.key)))
    reports.sort(key=lambda r: r.line)
    return reports, len(result.documents)


def validate_paths(paths: list[Path]) -> list[Report]:
    """Validate every manifest under paths, as ``portico run`` would load them."""
    return _validate_paths(paths)[0]


def _validate_paths(paths: list[Path]) -> tuple[list[Report], int, int]:
    reports: list[Report] = []
    objects = 0
    files = manifest_files([str(p) for p in paths])
    for f in files:
        try:
            text = Path(f).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reports.append(Report(f, 1, "", f"cannot read file: {exc}", "io"))
            continue
        found, count = validate_text(text, f)
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
