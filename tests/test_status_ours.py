"""Status composed once (portico.status.compose): other controllers' route parents and
policy ancestors are kept where they are, ours replaced; the ancestor limit never drops
theirs; lastTransitionTime is stamped in the same step, for every writer."""

from __future__ import annotations

from typing import Any

from portico.status import compose, without_ours

OURS, THEIRS = "portico.dev/gateway-controller", "other.io/controller"


def entry(controller: str, name: str, status: str = "True", at: str = "") -> dict[str, Any]:
    conditions = [{"type": "Accepted", "status": status, "lastTransitionTime": at}] if at else []
    return {"parentRef": {"name": name}, "controllerName": controller, "conditions": conditions}


def clock() -> str:
    return "NOW"


def test_compose_keeps_other_controllers_and_replaces_ours() -> None:
    current = {"parents": [entry(THEIRS, "a"), entry(OURS, "old")], "extra": 1}
    assert compose(current, {"parents": [entry(OURS, "new")]}, OURS, clock) == \
        {"parents": [entry(THEIRS, "a"), entry(OURS, "new")]}


def test_other_controllers_entries_keep_their_place_and_order() -> None:
    current = {"parents": [entry(OURS, "gw"), entry(THEIRS, "b"), entry(OURS, "gone"), entry(THEIRS, "a")]}
    ours = {"parents": [entry(OURS, "added"), entry(OURS, "gw", "False")]}
    assert compose(current, ours, OURS, clock)["parents"] == \
        [entry(OURS, "gw", "False"), entry(THEIRS, "b"), entry(THEIRS, "a"), entry(OURS, "added")]


def test_the_ancestor_limit_cuts_ours_not_theirs() -> None:
    theirs = [{**entry(THEIRS, f"t{i}"), "ancestorRef": {"name": f"t{i}"}} for i in range(15)]
    ours = [{**entry(OURS, f"o{i}"), "ancestorRef": {"name": f"o{i}"}} for i in range(3)]
    composed = compose({"ancestors": theirs}, {"ancestors": ours}, OURS, clock)
    assert composed["ancestors"] == theirs + ours[:1]


def test_a_writer_keeps_entries_written_since_the_translation() -> None:
    desired = {"parents": [entry(THEIRS, "stale"), entry(OURS, "gw")]}  # a stale entry of theirs is not ours
    now = {"parents": [entry(THEIRS, "fresh")]}
    assert compose(now, desired, OURS, clock) == {"parents": [entry(THEIRS, "fresh"), entry(OURS, "gw")]}
    assert compose(None, {"conditions": []}, OURS, clock) == {"conditions": []}


def test_transition_times_are_stamped_against_the_stored_status() -> None:
    current = {"parents": [entry(OURS, "gw", "True", "EARLIER"), entry(THEIRS, "x", "True", "THEIRS")]}
    same = compose(current, {"parents": [entry(OURS, "gw", "True", "RENDERED")]}, OURS, clock)
    assert same["parents"][0]["conditions"][0]["lastTransitionTime"] == "EARLIER"
    assert same["parents"][1]["conditions"][0]["lastTransitionTime"] == "THEIRS"  # theirs untouched
    flipped = compose(current, {"parents": [entry(OURS, "gw", "False", "RENDERED")]}, OURS, clock)
    assert flipped["parents"][0]["conditions"][0]["lastTransitionTime"] == "NOW"


def test_release_drops_only_our_entries() -> None:
    current = {"parents": [entry(OURS, "gw"), entry(THEIRS, "a")], "conditions": ["kept"]}
    assert without_ours(current, OURS) == {"parents": [entry(THEIRS, "a")], "conditions": ["kept"]}
