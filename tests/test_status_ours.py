"""Only our entries (portico.status.ours): other controllers' route parents and policy
ancestors are kept as they are, ours replaced; the ancestor limit never drops theirs."""

from __future__ import annotations

from portico.status import merge_ours, with_ours

OURS, THEIRS = "portico.dev/gateway-controller", "other.io/controller"


def entry(controller: str, name: str) -> dict[str, object]:
    return {"parentRef": {"name": name}, "controllerName": controller, "conditions": []}


def test_merge_keeps_other_controllers_and_replaces_ours() -> None:
    current = {"parents": [entry(THEIRS, "a"), entry(OURS, "old")], "extra": 1}
    merged = merge_ours(current, "parents", [entry(OURS, "new")], OURS)
    assert merged == {"parents": [entry(THEIRS, "a"), entry(OURS, "new")], "extra": 1}


def test_the_ancestor_limit_cuts_ours_not_theirs() -> None:
    theirs = [entry(THEIRS, f"t{i}") for i in range(15)]
    merged = merge_ours({"ancestors": theirs}, "ancestors", [entry(OURS, f"o{i}") for i in range(3)], OURS)
    assert merged["ancestors"] == theirs + [entry(OURS, "o0")]


def test_a_writer_keeps_entries_written_since_the_translation() -> None:
    desired = {"parents": [entry(THEIRS, "stale"), entry(OURS, "gw")]}
    now = {"parents": [entry(THEIRS, "fresh")]}
    assert with_ours(now, desired, OURS) == {"parents": [entry(THEIRS, "fresh"), entry(OURS, "gw")]}
    assert with_ours(None, {"conditions": []}, OURS) == {"conditions": []}
