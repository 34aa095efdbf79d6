"""Routes Envoy rejects are found by bisection and left out (issue 31 item 1): the control
loop with the real translator, and an xDS double that answers as Envoy would for a value it
refuses (the real-Envoy test: `tests/integration/test_nack_quarantine.py`)."""

from __future__ import annotations

import copy
from typing import Any

from test_control_loop import CLASS, GATEWAY, EmulatedStore, FakeXds, docs, host

from portico import ir
from portico.control import ControlLoop
from portico.infra.host import MERGED_GROUP
from portico.objects import key_of
from portico.status.quarantine import summary
from portico.translator import translate
from portico.translator.snapshot import Quarantined

BAD = "REJECTED-BY-ENVOY"


class Envoy(FakeXds):
    """Answers each version as an Envoy that refuses a header value containing BAD would
    (it refuses the whole route table), or refuses everything while `broken`."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[tuple[int, str]] = []  # (version, "" or Envoy's message)
        self.refuse_all = ""

    def update(self, group: str, model: ir.IR) -> int:
        version = super().update(group, model)
        bad = [h.value for li in model.listeners for c in li.filter_chains if c.http
               for vh in c.http.virtual_hosts for r in vh.routes for h in r.action.request_headers.set
               if BAD in h.value]
        self.answers.append((version, self.refuse_all or (f"Incorrect configuration: {bad[0]}" if bad else "")))
        return version


def route(name: str, value: str, generation_bump: str = "") -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["shop.example"],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": f"/{name}{generation_bump}"}}],
                                "filters": [{"type": "RequestHeaderModifier",
                                             "requestHeaderModifier": {"set": [{"name": "x-v", "value": value}]}}],
                                "backendRefs": [{"name": "svc", "port": 80}]}]}}


def converge(loop: ControlLoop, envoy: Envoy) -> int:
    """Sync and answer as Envoy until nothing is left to do; the number of versions pushed."""
    first = len(envoy.answers)
    for _ in range(100):
        loop._dirty.clear()
        loop.sync()
        for version, message in pending(envoy):
            if message:
                loop.on_nack(MERGED_GROUP, version, message)
            else:
                loop.on_ack(MERGED_GROUP, version)
        if not loop._dirty.is_set():
            return len(envoy.answers) - first
    raise AssertionError("the loop never settled")


def answered(envoy: Envoy) -> set[int]:
    return envoy.__dict__.setdefault("_answered", set())  # type: ignore[no-any-return]


def pending(envoy: Envoy) -> list[tuple[int, str]]:
    done = answered(envoy)
    out = [(v, m) for v, m in envoy.answers if v not in done]
    done.update(v for v, _ in out)
    return out


def served(envoy: Envoy) -> set[str]:
    """The routes of the newest version Envoy accepted."""
    version = max(v for v, m in envoy.answers if not m)
    model = envoy.by_group[MERGED_GROUP][version - 1]
    return {r.name.split("/")[2] for li in model.listeners for c in li.filter_chains if c.http
            for vh in c.http.virtual_hosts for r in vh.routes if r.name.startswith("httproute/")}


def accepted(loop: ControlLoop, name: str) -> tuple[str, str]:
    obj = loop.store.get(key_of(route(name, "")))
    assert obj is not None
    cond = next(c for c in obj.status["parents"][0]["conditions"] if c["type"] == "Accepted")
    return cond["status"], cond["message"]


def test_rejected_routes_are_found_and_left_out_and_come_back_when_fixed() -> None:
    envoy = Envoy()
    loop = ControlLoop(EmulatedStore(), host(), envoy)
    names = [f"team-{c}" for c in "abcdefg"]
    loop.apply(docs(CLASS, GATEWAY, *(route(n, "ok") for n in names)))
    converge(loop, envoy)
    assert served(envoy) == set(names)

    # two teams' routes Envoy rejects arrive with good changes of others
    loop.apply(docs(route("team-b", f"1 {BAD}"), route("team-c", "changed"), route("team-f", f"2 {BAD}"),
                    route("team-h", "new")))
    converge(loop, envoy)
    assert served(envoy) == {"team-a", "team-c", "team-d", "team-e", "team-g", "team-h"}
    assert accepted(loop, "team-b") == ("False", f"Incorrect configuration: 1 {BAD}")
    assert accepted(loop, "team-f") == ("False", f"Incorrect configuration: 2 {BAD}")
    assert accepted(loop, "team-c")[0] == "True" and accepted(loop, "team-h")[0] == "True"
    assert set(loop.quarantine.held) == {key_of(route("team-b", "")), key_of(route("team-f", ""))}

    # another team's later change is applied at once: one version, ACKed
    loop.apply(docs(route("team-d", "edited")))
    assert converge(loop, envoy) == 1
    assert envoy.answers[-1][1] == ""

    # the fix (a new generation) is translated again and served
    loop.apply(docs(route("team-b", "fixed")))
    converge(loop, envoy)
    assert "team-b" in served(envoy) and accepted(loop, "team-b")[0] == "True"
    assert accepted(loop, "team-f")[0] == "False"


def test_a_rejection_no_changed_route_explains_blames_none() -> None:
    """Envoy rejects the configuration without the changed routes too: nothing is left out,
    the search ends (no endless trials) and the configuration is held back as before."""
    envoy = Envoy()
    loop = ControlLoop(EmulatedStore(), host(), envoy)
    loop.apply(docs(CLASS, GATEWAY, route("team-a", "ok")))
    converge(loop, envoy)
    envoy.refuse_all = "listener: something else"
    loop.apply(docs(route("team-a", "changed"), route("team-b", "new")))
    pushes = converge(loop, envoy)
    assert pushes <= 3 and not loop.quarantine.held and loop.quarantine.search is None
    assert accepted(loop, "team-a")[0] == "True" and accepted(loop, "team-b")[0] == "True"
    assert converge(loop, envoy) == 0  # the same answer starts no new search


def test_the_translator_leaves_quarantined_routes_out_at_their_generation() -> None:
    loop = ControlLoop(EmulatedStore(), host(), Envoy())
    loop.apply(docs(CLASS, GATEWAY, route("team-a", "ok"), route("team-b", "ok")))
    base = loop.snapshot()
    key = key_of(route("team-a", ""))
    for generation, left_out in ((1, True), (2, False)):
        snap = copy.copy(base)
        object.__setattr__(snap, "quarantined", {key: Quarantined(generation, "Envoy says no")})
        object.__setattr__(snap, "memo", None)
        out = translate(snap)
        names = {r.name.split("/")[2] for li in out.ir.listeners for c in li.filter_chains if c.http
                 for vh in c.http.virtual_hosts for r in vh.routes if r.name.startswith("httproute/")}
        status = out.statuses[key]["parents"][0]["conditions"]
        cond = next(c for c in status if c["type"] == "Accepted")
        if left_out:
            assert names == {"team-b"} and (cond["status"], cond["reason"], cond["message"]) == (
                "False", "UnsupportedValue", "Envoy says no")
        else:
            assert names == {"team-a", "team-b"} and cond["status"] == "True"


def test_envoys_message_without_the_dump_of_the_resource() -> None:
    dump = "goo.gle/debugstr name: \"rc/vh\" routes { ... } " * 50
    message = f"still rejected: {dump}Proto constraint validation failed (Substitution: bad)"
    assert summary(message) == "Proto constraint validation failed (Substitution: bad)"
    assert len(summary("x" * 5000)) == 1024
