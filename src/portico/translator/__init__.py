"""Gateway API semantics: a snapshot of objects in, IR and status out.

Pure: no I/O, no clock, no globals. See `translate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portico.ir import IR
from portico.models import Resource
from portico.objects import ObjectKey


@dataclass(frozen=True)
class Snapshot:
    """Every stored object, parsed (`portico.models.parse_object`), keyed by
    identity. metadata.generation, creationTimestamp and uid are filled in by
    the store."""

    objects: dict[ObjectKey, Resource]
    # Gateway (namespace, name) -> the loopback address it binds (standalone contract)
    addresses: dict[tuple[str, str], str] = field(default_factory=dict)
    # added to every listener port (`portico run --port-offset`)
    port_offset: int = 0
    # IR listener (socket) names the data plane could not bind (ListenerReasonPortUnavailable)
    unbindable: frozenset[str] = frozenset()
    # optional: the previous translation's per-route results, reused for unchanged routes
    # (`portico.translator.backends.RuleMemo`); the translation is the same with or without
    memo: Any = field(default=None, compare=False)


@dataclass
class Translation:
    ir: IR
    # the full new `status` of every object the translator owns status for
    # (entries of other controllers carried over from the input untouched)
    statuses: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)


def translate(snapshot: Snapshot) -> Translation:
    """Snapshot → IR + status (see the package docstring)."""
    from portico.translator.pipeline import run

    return run(snapshot)
