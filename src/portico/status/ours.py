"""Only our entries: a status field that several controllers share (route `parents`,
policy `ancestors`) gets our entries, and every other controller's entry is kept as it
is (RouteParentStatus / PolicyAncestorStatus: "implementations MUST NOT remove or
modify entries of other controllers"). The translator renders with it from the status
it read; a writer to an API server applies it again to the status it finds there, since
another controller may have written in between.
"""

from __future__ import annotations

from typing import Any

# field -> how many entries the schema allows (PolicyStatus.ancestors: at most 16)
SHARED_FIELDS: dict[str, int | None] = {"parents": None, "ancestors": 16}


def merge_ours(current: dict[str, Any] | None, field: str, ours: list[dict[str, Any]],
               controller: str) -> dict[str, Any]:
    """`current` with `field` holding other controllers' entries, then ours (cut to the
    field's limit: other controllers' entries are never dropped for ours)."""
    current = current or {}
    others = [e for e in current.get(field) or [] if isinstance(e, dict) and e.get("controllerName") != controller]
    limit = SHARED_FIELDS.get(field)
    kept = ours if limit is None else ours[:max(0, limit - len(others))]
    return {**current, field: others + kept}


def with_ours(current: dict[str, Any] | None, desired: dict[str, Any], controller: str) -> dict[str, Any]:
    """The status to write: `desired` (ours) with the other controllers' entries of
    `current` in each shared field."""
    out = dict(desired)
    for field in SHARED_FIELDS:
        if field in desired:
            ours = [e for e in desired[field] if isinstance(e, dict) and e.get("controllerName") == controller]
            out = merge_ours({**out, field: (current or {}).get(field) or []}, field, ours, controller)
    return out
