"""The one place a status to store is composed: our entries (what the translator
rendered) merged with the status as it is stored now, and lastTransitionTime stamped.

Both writers use it: the store's (standalone mode) and the status subresource's
(Kubernetes mode), always against the status as they find it at write time, since
another controller may have written in between.

- Shared fields (route `parents`, policy `ancestors`) hold one entry per controller
  and parent: "implementations MUST NOT remove or modify entries of other
  controllers" (RouteParentStatus, PolicyAncestorStatus). Their entries stay where
  they are, in their order; ours replace our previous entries in place (matched by
  parentRef/ancestorRef), new ones are appended, and ours are cut to the field's
  limit (PolicyStatus.ancestors: at most 16), never theirs.
- Every other field is ours as rendered.
- lastTransitionTime: kept while a condition's status stays the same
  (`portico.status.transitions`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from portico.status.transitions import stamp_transitions

# field -> how many entries the schema allows (PolicyStatus.ancestors: at most 16)
SHARED_FIELDS: dict[str, int | None] = {"parents": None, "ancestors": 16}
_REF_FIELDS = ("parentRef", "ancestorRef")


def compose(current: dict[str, Any] | None, ours: dict[str, Any], controller: str,
            clock: Callable[[], str]) -> dict[str, Any]:
    """The status to store: `ours` with the other controllers' entries of `current` kept
    in every shared field, each condition's lastTransitionTime stamped against `current`."""
    current = current or {}
    merged = dict(ours)
    for field, limit in SHARED_FIELDS.items():
        if field in ours:
            merged[field] = _merged(current.get(field) or [], ours[field], controller, limit)
    stamped: dict[str, Any] = stamp_transitions(merged, current, clock)
    return stamped


def without_ours(current: dict[str, Any], controller: str) -> dict[str, Any]:
    """`current` with our entries gone from its shared fields (an object no longer ours;
    a whole status such as a GatewayClass's is left for its new controller)."""
    out = dict(current)
    for field in SHARED_FIELDS:
        if field in current:
            out[field] = [e for e in current[field] or [] if not _is_ours(e, controller)]
    return out


def _merged(stored: list[Any], entries: list[Any], controller: str, limit: int | None) -> list[Any]:
    others = [e for e in stored if not _is_ours(e, controller)]
    mine = [e for e in entries if _is_ours(e, controller)]  # (a stale entry of theirs is never ours to write)
    if limit is not None:
        mine = mine[:max(0, limit - len(others))]
    by_ref = {_ref(e): e for e in mine}
    out, placed = [], set()
    for entry in stored:
        if not _is_ours(entry, controller):
            out.append(entry)
            continue
        ref = _ref(entry)
        if ref in by_ref and ref not in placed:  # our entry for this parent: replaced where it is
            out.append(by_ref[ref])
            placed.add(ref)
    out.extend(e for e in mine if _ref(e) not in placed)
    return out


def _is_ours(entry: Any, controller: str) -> bool:
    return isinstance(entry, dict) and entry.get("controllerName") == controller


def _ref(entry: dict[str, Any]) -> str:
    return repr([entry.get(name) for name in _REF_FIELDS])
