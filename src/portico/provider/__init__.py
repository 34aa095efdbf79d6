"""Providers turn a source of manifests into object events for the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portico.objects import ObjectKey


@dataclass(frozen=True)
class Source:
    """Where a document came from: file and 1-based line of its start."""

    file: str
    line: int


@dataclass(frozen=True)
class Document:
    key: ObjectKey
    raw: dict[str, Any]
    source: Source


@dataclass(frozen=True)
class DocumentError:
    """A document that was skipped (or an object that was not applied)."""

    file: str
    line: int
    message: str
    path: str = ""  # field path inside the document, e.g. "spec.listeners[0].port"
    object: str = ""  # "Kind ns/name" when known
    rule: str = ""  # the schema keyword or CEL rule that rejected it

    def __post_init__(self) -> None:
        # what a document's author wrote reaches logs and /api/errors: never unbounded
        # (values in messages are cut where they are quoted; this holds for every field)
        for name, limit in (("message", 1000), ("path", 300), ("object", 400), ("rule", 500)):
            value = getattr(self, name)
            if len(value) > limit:
                object.__setattr__(self, name, f"{value[:limit]}... ({len(value)} characters)")

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path,
                "message": self.message, "object": self.object, "rule": self.rule}

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        what = f" {self.object}" if self.object else ""
        field_path = f" {self.path}:" if self.path else ""
        rule = f" (rule: {self.rule})" if self.rule else ""
        return f"{where}:{what}{field_path} {self.message}{rule}"


@dataclass(frozen=True)
class ProviderEvent:
    """One sync: what changed since the previous event, and every load error now."""

    upserts: tuple[Document, ...] = ()
    deletes: tuple[ObjectKey, ...] = ()
    errors: tuple[DocumentError, ...] = field(default=())
    initial: bool = False  # the first, complete load
    # when the provider saw the change (time.monotonic(): e.g. the file watcher's event),
    # the start of a change's timeline (`portico.control`); None when unknown
    observed: float | None = None
