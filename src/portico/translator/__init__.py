"""Gateway API semantics: a snapshot of objects in, IR and status out.

Pure: no I/O, no clock, no globals. See `translate`; the types are in `snapshot`.
"""

from __future__ import annotations

from portico.translator.pipeline import patch, translate
from portico.translator.snapshot import GatewayOutput, Placement, Snapshot, Translation

__all__ = ["GatewayOutput", "Placement", "Snapshot", "Translation", "patch", "translate"]
