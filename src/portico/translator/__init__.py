"""Gateway API semantics: a snapshot of objects in, IR and status out.

Pure: no I/O, no clock, no globals. See `translate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portico.ir import IR
from portico.objects import ObjectKey


@dataclass(frozen=True)
class Snapshot:
    """Every stored object in Kubernetes shape (apiVersion, kind, metadata, spec,
    status), keyed by identity. metadata.generation, creationTimestamp and uid
    are filled in by the store."""

    objects: dict[ObjectKey, dict[str, Any]]


@dataclass
class Translation:
    ir: IR
    # the full new `status` of every object the translator owns status for
    # (entries of other controllers carried over from the input untouched)
    statuses: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
