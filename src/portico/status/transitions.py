"""Condition lastTransitionTime: "the last time the condition transitioned from one
status to another" (metav1.Condition). A new status keeps the old time of every
condition whose status did not change; the others get the clock's time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# list entries that keep their identity across status updates, by the field naming them
_ENTRY_KEYS = ("type", "name", "parentRef", "ancestorRef")


def _entry_id(entry: Any) -> Any:
    if isinstance(entry, dict):
        for name in _ENTRY_KEYS:
            if name in entry:
                return name, repr(entry[name])
    return None


def stamp_transitions(new: Any, old: Any, clock: Callable[[], str]) -> Any:
    """`new` with every condition's lastTransitionTime set: the old time when the
    matching old condition had the same status, else now. Conditions are matched
    by type, and the lists holding them by listener name / parentRef / ancestorRef."""
    if not old:  # nothing to match (every status of a start): each condition is new
        return _all_new(new, clock)
    if isinstance(new, dict):
        old_map = old if isinstance(old, dict) else {}
        out = {k: stamp_transitions(v, old_map.get(k), clock) for k, v in new.items()}
        if "type" in out and "status" in out and "lastTransitionTime" in new:
            same = old_map.get("status") == out["status"] and old_map.get("lastTransitionTime")
            out["lastTransitionTime"] = old_map["lastTransitionTime"] if same else clock()
        return out
    if isinstance(new, list):
        old_list = old if isinstance(old, list) else []
        by_id = {i: e for i, e in ((_entry_id(e), e) for e in old_list) if i is not None}
        out_list = []
        for index, entry in enumerate(new):
            entry_id = _entry_id(entry)
            match = by_id.get(entry_id) if entry_id is not None else (
                old_list[index] if index < len(old_list) else None)
            out_list.append(stamp_transitions(entry, match, clock))
        return out_list
    return new


def _all_new(new: Any, clock: Callable[[], str]) -> Any:
    """`stamp_transitions` against nothing: every condition's time is now."""
    if isinstance(new, dict):
        out = {k: _all_new(v, clock) for k, v in new.items()}
        if "type" in out and "status" in out and "lastTransitionTime" in new:
            out["lastTransitionTime"] = clock()
        return out
    if isinstance(new, list):
        return [_all_new(e, clock) for e in new]
    return new
