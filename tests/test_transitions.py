"""lastTransitionTime (`portico.status.transitions`): kept while a condition's status
stays, now when it changes or is new; conditions matched by type, list entries by
listener name / parentRef / ancestorRef, else by position. A status with nothing to
match (every status of a cold start) takes the short way (issue 30 item 5): the same
result."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

from portico.status.transitions import stamp_transitions

OLD = "2020-01-01T00:00:00Z"


def clock() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"now-{next(counter)}"


def cond(type_: str, status: str, time: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": "R", "lastTransitionTime": time}


def route_status(ready: str, time: str = "") -> dict[str, Any]:
    return {"parents": [{"parentRef": {"name": "gw"}, "controllerName": "c",
                         "conditions": [cond("Accepted", "True", time), cond("ResolvedRefs", ready, time)]}]}


def test_a_new_status_is_stamped_now_everywhere() -> None:
    out = stamp_transitions(route_status("True"), None, clock())
    assert [c["lastTransitionTime"] for c in out["parents"][0]["conditions"]] == ["now-1", "now-2"]
    assert stamp_transitions(route_status("True"), {}, clock()) == out


def test_a_condition_keeps_its_time_until_its_status_changes() -> None:
    old = route_status("True", OLD)
    out = stamp_transitions(route_status("False"), old, clock())
    assert [c["lastTransitionTime"] for c in out["parents"][0]["conditions"]] == [OLD, "now-1"]


def test_entries_are_matched_by_what_names_them_else_by_position() -> None:
    old = {"listeners": [{"name": "b", "conditions": [cond("Ready", "True", "b-time")]},
                         {"name": "a", "conditions": [cond("Ready", "True", "a-time")]}],
           "conditions": [cond("Accepted", "True", OLD)]}
    new = {"listeners": [{"name": "a", "conditions": [cond("Ready", "True")]},
                         {"name": "c", "conditions": [cond("Ready", "True")]}],
           "conditions": [cond("Accepted", "True")]}
    out = stamp_transitions(new, old, clock())
    assert [ls["conditions"][0]["lastTransitionTime"] for ls in out["listeners"]] == ["a-time", "now-1"]
    assert out["conditions"][0]["lastTransitionTime"] == OLD
    assert stamp_transitions([{"x": [cond("T", "True")]}], [{"x": [cond("T", "True", OLD)]}],
                             clock()) == [{"x": [cond("T", "True", OLD)]}]


def _reference(new: Any, old: Any, clock: Callable[[], str]) -> Any:
    """The rule as first written (one pass, no short way), the oracle for the one used."""
    def entry_id(e: Any) -> Any:
        if isinstance(e, dict):
            for name in ("type", "name", "parentRef", "ancestorRef"):
                if name in e:
                    return name, repr(e[name])
        return None

    if isinstance(new, dict):
        old_map = old if isinstance(old, dict) else {}
        out = {k: _reference(v, old_map.get(k), clock) for k, v in new.items()}
        if "type" in out and "status" in out and "lastTransitionTime" in new:
            same = old_map.get("status") == out["status"] and old_map.get("lastTransitionTime")
            out["lastTransitionTime"] = old_map["lastTransitionTime"] if same else clock()
        return out
    if isinstance(new, list):
        old_list = old if isinstance(old, list) else []
        by_id = {entry_id(e): e for e in old_list if entry_id(e) is not None}
        return [_reference(e, by_id.get(entry_id(e)) if entry_id(e) is not None
                           else (old_list[i] if i < len(old_list) else None), clock) for i, e in enumerate(new)]
    return new


def _random_status(rng: random.Random, depth: int = 0) -> Any:
    if depth > 2 or rng.random() < 0.2:
        return rng.choice([None, 0, "", "x", cond(rng.choice("AB"), rng.choice(["True", "False"]),
                                                   rng.choice(["", OLD, "t1"]))])
    if rng.random() < 0.5:
        return [_random_status(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    out: dict[str, Any] = {k: _random_status(rng, depth + 1) for k in rng.sample(["conditions", "parents", "a"],
                                                                                  rng.randint(0, 3))}
    for name in rng.sample(["name", "parentRef", "type", "status", "lastTransitionTime"], rng.randint(0, 3)):
        out[name] = rng.choice(["True", "False", "gw", OLD, {"name": "gw"}])
    return out


def test_the_same_result_as_the_rule_as_first_written() -> None:
    rng = random.Random(30)
    for _ in range(3000):
        new, old = _random_status(rng), rng.choice([None, {}, [], _random_status(rng)])
        assert stamp_transitions(new, old, clock()) == _reference(new, old, clock())
