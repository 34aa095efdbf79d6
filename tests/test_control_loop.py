"""The control loop: batching, Programmed held until ACK per Envoy group, failures,
placements from the host infrastructure."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from portico.control import ControlLoop
from portico.diagnostics import Diagnostics
from portico.infra.addresses import AddressPool
from portico.infra.host import MERGED_GROUP, HostInfrastructure
from portico.ir import IR, GatewayInfra, Listener
from portico.objects import key_of
from portico.provider import Document, ProviderEvent, Source
from portico.provider.apiserver import APIServerEmulation
from portico.status import held_back
from portico.store import Store
from portico.translator import GatewayOutput, Snapshot, Translation

CLASS: dict[str, Any] = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                         "metadata": {"name": "portico"},
                         "spec": {"controllerName": "portico.dev/gateway-controller"}}
GATEWAY: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
    "metadata": {"name": "gw", "namespace": "ns"},
    "spec": {"gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
}
GW_KEY = key_of(GATEWAY)


class EmulatedStore(Store):
    """Fed through the API-server emulation, as in `portico run` (uids, generations)."""

    def __init__(self) -> None:
        self.api = APIServerEmulation()
        super().__init__(next_resource_version=self.api.next_resource_version)

    def apply(self, event: ProviderEvent) -> bool:
        return super().apply(self.api.admit(event))


def host(offset: int = 0, per_gateway: bool = False) -> HostInfrastructure:
    return HostInfrastructure(AddressPool(), port_offset=offset, per_gateway=per_gateway)


def docs(*raws: dict[str, Any]) -> ProviderEvent:
    return ProviderEvent(upserts=tuple(Document(key_of(r), copy.deepcopy(r), Source("f", 1)) for r in raws))


class FakeTranslator:
    """One listener per Gateway at its assigned address; Programmed=True."""

    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []
        self.fail = False

    def __call__(self, snapshot: Snapshot) -> Translation:
        self.snapshots.append(snapshot)
        if self.fail:
            raise RuntimeError("boom")
        gateways, statuses = {}, {}
        for key, obj in snapshot.objects.items():
            if key.kind != "Gateway" or (key.namespace, key.name) not in snapshot.placements:
                continue
            place = snapshot.placements[(key.namespace, key.name)]
            address = place.bind_address
            assert address is not None
            ports = [ls["port"] for ls in obj.model_dump(by_alias=True)["spec"]["listeners"]]
            names = tuple(f"{address}:{p + place.bind_port_offset}/tcp" for p in ports)
            listeners = tuple(Listener(n, address, int(n.split(":")[1].split("/")[0])) for n in names)
            owners = ((("Gateway", key.namespace, key.name), names),)
            gateways[key] = GatewayOutput(IR(listeners=listeners, gateway_listeners=owners),
                                          GatewayInfra(key.namespace, key.name, "portico"))
            cond = {"type": "Programmed", "status": "True", "reason": "Programmed",
                    "lastTransitionTime": "1970-01-01T00:00:00Z"}
            statuses[key] = {"addresses": [{"value": address}], "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted"}, cond],
                "listeners": [{"name": "http", "conditions": [dict(cond)]}]}
        return Translation(gateways, statuses)


class FakeXds:
    def __init__(self) -> None:
        self.pushed: list[IR] = []
        self.by_group: dict[str, list[IR]] = {}
        self.removed: list[str] = []
        self.broken = False

    def update(self, group: str, ir: IR) -> int:
        if self.broken:
            raise ValueError("cannot build")
        self.pushed.append(ir)
        self.by_group.setdefault(group, []).append(ir)
        return len(self.by_group[group])

    def remove(self, group: str) -> None:
        self.removed.append(group)


def programmed(store: Store) -> tuple[str, str]:
    obj = store.get(GW_KEY)
    assert obj is not None
    cond = next(c for c in obj.status["conditions"] if c["type"] == "Programmed")
    listener_cond = obj.status["listeners"][0]["conditions"][0]
    assert listener_cond["status"] == cond["status"]
    return cond["status"], cond["reason"]


def make_loop(offset: int = 0) -> tuple[ControlLoop, FakeTranslator, FakeXds]:
    translator, xds = FakeTranslator(), FakeXds()
    loop = ControlLoop(EmulatedStore(), host(offset), xds, translator=translator)
    return loop, translator, xds


def test_programmed_only_after_ack() -> None:
    loop, _, xds = make_loop()
    loop.apply(docs(CLASS, GATEWAY))
    assert loop.sync()
    assert len(xds.pushed) == 1
    assert programmed(loop.store) == ("False", "Pending")
    obj = loop.store.get(GW_KEY)
    assert obj is not None and obj.status["conditions"][0]["type"] == "Accepted"  # other conditions kept
    loop.on_nack(MERGED_GROUP, 1, "bad listener")
    assert programmed(loop.store) == ("False", "Pending")
    loop.on_ack(MERGED_GROUP, 1)
    assert programmed(loop.store) == ("True", "Programmed")


def test_readiness_follows_every_groups_ack() -> None:
    loop, _, _ = make_loop()
    view = Diagnostics(loop, loop.infra.groups)  # what /readyz reads
    assert view.readiness()[0] is False  # nothing translated yet
    loop.apply(docs(CLASS, GATEWAY))
    loop.sync()
    assert view.readiness() == (False, {"groups": {MERGED_GROUP: "waiting for version 1"}})
    loop.on_ack(MERGED_GROUP, 1)
    assert view.readiness() == (True, {"groups": {MERGED_GROUP: "ready"}})


def test_unchanged_listeners_stay_programmed_and_new_ones_wait() -> None:
    loop, _, xds = make_loop()
    loop.apply(docs(CLASS, GATEWAY))
    loop.sync()
    loop.on_ack(MERGED_GROUP, 1)
    loop.apply(docs({**GATEWAY, "metadata": {**GATEWAY["metadata"], "labels": {"a": "b"}}}))
    loop.sync()
    assert len(xds.pushed) == 1  # same IR: nothing pushed
    assert programmed(loop.store) == ("True", "Programmed")
    more = copy.deepcopy(GATEWAY)
    more["spec"]["listeners"].append({"name": "other", "port": 81, "protocol": "HTTP"})
    loop.apply(docs(more))
    loop.sync()
    assert programmed(loop.store) == ("False", "Pending")
    loop.on_ack(MERGED_GROUP, 1)
    assert programmed(loop.store) == ("False", "Pending")
    loop.on_ack(MERGED_GROUP, 2)
    assert programmed(loop.store) == ("True", "Programmed")


def test_placements_reach_the_translator() -> None:
    loop, translator, _ = make_loop(offset=10000)
    other_class = {**GATEWAY, "metadata": {"name": "foreign", "namespace": "ns"},
                   "spec": {**GATEWAY["spec"], "gatewayClassName": "someone-else"}}
    loop.apply(docs(CLASS, GATEWAY, other_class))
    loop.sync()
    snapshot = translator.snapshots[-1]
    assert list(snapshot.placements) == [("ns", "gw")]
    place = snapshot.placements[("ns", "gw")]
    assert place.bind_port_offset == 10000
    assert place.bind_address is not None and place.bind_address.startswith("127.10.")
    static = copy.deepcopy(GATEWAY)
    static["spec"]["addresses"] = [{"type": "IPAddress", "value": "127.0.0.250"}]
    loop.apply(docs(static))
    loop.sync()
    assert translator.snapshots[-1].placements[("ns", "gw")].bind_address == "127.0.0.250"
    static["spec"]["addresses"] = [{"type": "IPAddress", "value": "192.0.2.1"}]
    loop.apply(docs(static))
    loop.sync()
    place = translator.snapshots[-1].placements[("ns", "gw")]
    assert place.bind_address is None and "not a loopback" in place.address_problem


def test_translation_failure_keeps_the_last_good_config() -> None:
    loop, translator, xds = make_loop()
    loop.apply(docs(CLASS, GATEWAY))
    loop.sync()
    loop.on_ack(MERGED_GROUP, 1)
    translator.fail = True
    changed = {**GATEWAY["spec"]["listeners"][0], "port": 8081}
    loop.apply(docs({**GATEWAY, "spec": {**GATEWAY["spec"], "listeners": [changed]}}))
    assert not loop.sync()
    assert len(xds.pushed) == 1
    assert programmed(loop.store) == ("True", "Programmed")


def test_push_failure_keeps_the_last_good_config() -> None:
    loop, _, xds = make_loop()
    loop.apply(docs(CLASS, GATEWAY))
    loop.sync()

    xds.broken = True
    changed = {**GATEWAY["spec"]["listeners"][0], "port": 8081}
    loop.apply(docs({**GATEWAY, "spec": {**GATEWAY["spec"], "listeners": [changed]}}))
    assert not loop.sync()
    assert loop.last_irs == {MERGED_GROUP: xds.pushed[0]}


def test_statuses_no_longer_owned_are_released() -> None:
    loop, _, _ = make_loop()
    loop.apply(docs(CLASS, GATEWAY))
    loop.sync()
    loop.apply(ProviderEvent(deletes=(key_of(CLASS),)))
    loop.sync()  # the fake translates every Gateway; drop the class: the pool releases it
    assert isinstance(loop.infra, HostInfrastructure) and loop.infra.pool.assigned() == {}


def test_held_back_keeps_other_fields() -> None:
    status = {"addresses": [1], "conditions": [{"type": "Programmed", "status": "True", "reason": "Programmed"}],
              "listeners": [{"name": "a", "attachedRoutes": 2,
                             "conditions": [{"type": "Programmed", "status": "True"}]}]}
    held = held_back(status, "wait")
    assert held["addresses"] == [1]
    assert held["conditions"][0] == {"type": "Programmed", "status": "False", "reason": "Pending", "message": "wait"}
    assert held["listeners"][0]["attachedRoutes"] == 2
    assert status["conditions"][0]["status"] == "True"  # input untouched


class FrozenClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock never advances: no timer ever fires (`asyncio.sleep(x)`
    with x > 0 never returns), so whatever the control loop does here, it does without
    waiting for one. Threads (the translation) and ready callbacks run as usual."""

    def time(self) -> float:
        return 0.0


class GatedTranslator(FakeTranslator):
    """Each translation waits, in the loop's worker thread, for a permit from the test:
    the test decides how long a translation is in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.permits = threading.Semaphore(0)
        self.started = 0
        self.in_flight = 0
        self.most_in_flight = 0

    def __call__(self, snapshot: Snapshot) -> Translation:
        self.started += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            assert self.permits.acquire(timeout=30)
            return super().__call__(snapshot)
        finally:
            self.in_flight -= 1


async def settle(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    """Let the event loop run until `condition` holds. The bound is real time (the loop's
    clock may be frozen): nothing is timed, a loop that never gets there fails."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0)
        if not condition():
            time.sleep(0.001)  # (the worker thread's turn)


def routes_in(snapshot: Snapshot) -> int:
    return sum(1 for key in snapshot.objects if key.kind == "HTTPRoute")


def run_with_gated_translator(scenario: Callable[[ControlLoop, GatedTranslator, Callable[[ProviderEvent], None]],
                                                 Any]) -> None:
    """`scenario(loop, translator, send)` against a running `ControlLoop.run` whose initial
    sync is done, on an event loop whose clock is frozen (`FrozenClockLoop`)."""

    async def main() -> None:
        translator = GatedTranslator()
        loop = ControlLoop(EmulatedStore(), host(), FakeXds(), translator=translator)
        queue: asyncio.Queue[ProviderEvent] = asyncio.Queue()

        async def events() -> AsyncIterator[ProviderEvent]:
            while True:
                yield await queue.get()

        ready = asyncio.Event()
        task = asyncio.create_task(loop.run(events(), ready.set))
        translator.permits.release()
        queue.put_nowait(dataclasses.replace(docs(CLASS, GATEWAY), initial=True))
        await settle(ready.is_set, "the initial sync")
        try:
            await scenario(loop, translator, queue.put_nowait)
        finally:
            task.cancel()
            for _ in range(100):  # a translation still waiting for a permit ends
                translator.permits.release()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    with asyncio.Runner(loop_factory=FrozenClockLoop) as runner:
        runner.run(main())


def test_a_change_that_arrives_while_idle_is_translated_at_once() -> None:
    """No coalescing timer before a change's translation: on an event loop whose clock
    never advances, a change made after the loop went idle is still translated."""

    async def scenario(loop: ControlLoop, translator: GatedTranslator, send: Callable[[ProviderEvent], None]) -> None:
        def started(count: int) -> Callable[[], bool]:
            return lambda: translator.started == count

        def published(routes: int) -> Callable[[], bool]:
            return lambda: routes_in(translator.snapshots[-1]) == routes

        for n in range(1, 4):  # idle, a change, idle again, the next one: each translated
            send(docs(route(f"r{n}", f"r{n}.example.com")))
            await settle(started(1 + n), f"change {n} translated")
            translator.permits.release()
            await settle(published(n), f"change {n} translated and published")

    run_with_gated_translator(scenario)


def test_a_burst_of_changes_costs_one_translation_per_translation_in_flight() -> None:
    """1000 changes, one at a time, while translations take the time the test gives
    them (one permit per 250 changes): at most one translation is in flight, every change
    that arrives meanwhile waits for the next one, and the burst costs a handful of
    translations, not one per change. The clock is frozen: no timer does the batching."""

    async def scenario(loop: ControlLoop, translator: GatedTranslator, send: Callable[[ProviderEvent], None]) -> None:
        before = translator.started
        for i in range(1000):
            send(docs(route(f"r{i}", f"r{i}.example.com")))
            await asyncio.sleep(0)  # the loop's consumer applies it now, mid-translation
            if i % 250 == 249:
                translator.permits.release()
        for _ in range(10):  # the burst is over: translations are quick again
            translator.permits.release()
        await settle(lambda: routes_in(translator.snapshots[-1]) == 1000, "every change translated")
        await settle(lambda: translator.in_flight == 0, "the last translation done")
        burst = translator.started - before
        assert 2 <= burst <= 6, burst  # 4 permits in the burst, then what was left
        assert translator.most_in_flight == 1

    run_with_gated_translator(scenario)


def test_unchanged_statuses_are_not_rewritten_but_recreated_objects_get_theirs() -> None:
    route: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "ns"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": []}]},
    }
    key = key_of(route)
    loop = ControlLoop(EmulatedStore(), host(), FakeXds())  # the real translator
    loop.apply(docs(CLASS, GATEWAY, route))
    assert loop.sync()
    obj = loop.store.get(key)
    assert obj is not None and obj.status["parents"]
    version = obj.raw["metadata"]["resourceVersion"]
    assert loop.sync()  # nothing changed: the route's status is not written again
    obj = loop.store.get(key)
    assert obj is not None and obj.raw["metadata"]["resourceVersion"] == version
    loop.apply(ProviderEvent(deletes=(key,)))
    loop.apply(docs(route))  # re-created before the next sync: same status, new object
    assert loop.sync()
    obj = loop.store.get(key)
    assert obj is not None and obj.status["parents"]


def status_of(store: Store, raw: dict[str, Any]) -> tuple[str, str]:
    obj = store.get(key_of(raw))
    assert obj is not None
    cond = next(c for c in obj.status["conditions"] if c["type"] == "Programmed")
    return cond["status"], cond["reason"]


LISTENER_SET: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
    "metadata": {"name": "extra", "namespace": "ns"},
    "spec": {"parentRef": {"name": "gw"},
             "listeners": [{"name": "extra", "port": 80, "protocol": "HTTP", "hostname": "extra.example"}]},
}


def test_real_translator_holds_gateways_and_listener_sets_until_ack() -> None:
    """With the real translator: a listener added later, or a ListenerSet listener
    joining a port already bound, is Programmed only after Envoy ACKs it."""
    xds = FakeXds()
    loop = ControlLoop(EmulatedStore(), host(), xds)
    gateway = copy.deepcopy(GATEWAY)
    gateway["spec"]["allowedListeners"] = {"namespaces": {"from": "Same"}}
    loop.apply(docs(CLASS, gateway))
    loop.sync()
    assert status_of(loop.store, gateway) == ("False", "Pending")
    loop.on_ack(MERGED_GROUP, 1)
    assert status_of(loop.store, gateway) == ("True", "Programmed")

    gateway["spec"]["listeners"].append({"name": "more", "port": 81, "protocol": "HTTP"})
    loop.apply(docs(gateway))
    loop.sync()
    assert status_of(loop.store, gateway) == ("False", "Pending")
    loop.on_ack(MERGED_GROUP, 2)
    assert status_of(loop.store, gateway) == ("True", "Programmed")

    loop.apply(docs(LISTENER_SET))
    loop.sync()
    assert status_of(loop.store, LISTENER_SET) == ("False", "Pending")
    assert status_of(loop.store, gateway) == ("True", "Programmed")  # its own listeners did not change
    loop.on_ack(MERGED_GROUP, 3)
    assert status_of(loop.store, LISTENER_SET) == ("True", "Programmed")


def test_a_socket_envoy_cannot_bind_makes_its_listener_port_unavailable() -> None:
    xds = FakeXds()
    loop = ControlLoop(EmulatedStore(), host(), xds)
    gateway = copy.deepcopy(GATEWAY)
    gateway["spec"]["listeners"].append({"name": "other", "port": 81, "protocol": "HTTP"})
    loop.apply(docs(CLASS, gateway))
    loop.sync()
    [bad] = [li.name for li in xds.pushed[-1].listeners if li.port == 80]
    message = f"Error adding/updating listener(s) {bad}: cannot bind '{bad[:-4]}': Address already in use"
    loop.on_nack(MERGED_GROUP, 1, message)
    loop.sync()
    assert [li.port for li in xds.pushed[-1].listeners] == [81]  # the rest can be accepted
    obj = loop.store.get(GW_KEY)
    assert obj is not None
    http = next(ls for ls in obj.status["listeners"] if ls["name"] == "http")
    assert {(c["type"], c["status"], c["reason"]) for c in http["conditions"]} >= {
        ("Accepted", "False", "PortUnavailable"), ("Programmed", "False", "PortUnavailable")}
    loop.on_ack(MERGED_GROUP, 2)
    assert status_of(loop.store, gateway) == ("True", "Programmed")


def test_per_gateway_groups_are_programmed_independently() -> None:
    """One xDS group per Gateway: a NACK of one Gateway's Envoy neither holds back nor
    changes another Gateway's status; a deleted Gateway's group is removed."""
    xds = FakeXds()
    loop = ControlLoop(EmulatedStore(), host(per_gateway=True), xds)
    other = copy.deepcopy(GATEWAY)
    other["metadata"]["name"] = "gw2"
    loop.apply(docs(CLASS, GATEWAY, other))
    loop.sync()
    assert sorted(xds.by_group) == ["ns/gw", "ns/gw2"]
    # each group's IR holds only its own Gateway's listeners
    assert [owner for owner, _ in xds.by_group["ns/gw"][-1].gateway_listeners] == [("Gateway", "ns", "gw")]
    loop.on_nack("ns/gw", 1, "something Envoy rejects")
    loop.on_ack("ns/gw2", 1)
    assert status_of(loop.store, other) == ("True", "Programmed")
    gw = loop.store.get(GW_KEY)
    assert gw is not None
    held = next(c for c in gw.status["conditions"] if c["type"] == "Programmed")
    assert (held["status"], held["reason"]) == ("False", "Pending") and "something Envoy rejects" in held["message"]
    loop.apply(ProviderEvent(deletes=(key_of(other),)))
    loop.sync()
    assert xds.removed == ["ns/gw2"]


def test_a_failing_provider_ends_the_loop_loudly() -> None:
    """A provider task that dies must not leave a control plane that looks healthy but
    never applies another change: the loop raises at once (the process exits)."""

    async def scenario() -> None:
        loop, _, _ = make_loop()

        async def events() -> AsyncIterator[ProviderEvent]:
            yield ProviderEvent(initial=True)
            await asyncio.sleep(0.2)
            raise KeyError("provider bug")

        try:
            await asyncio.wait_for(loop.run(events()), 5)
        except RuntimeError as e:
            assert "provider failed" in str(e) and "provider bug" in str(e)
        else:
            raise AssertionError("the loop went on without its provider")

    asyncio.run(scenario())


def test_documents_nothing_foresaw_are_reported_one_by_one() -> None:
    """Mapping keys that are not strings, recursive aliases: listed as errors, the other
    documents of the same sync are applied."""
    from portico.provider.manifests import parse_yaml

    text = "\n---\n".join([
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a, namespace: ns}\n"
        "spec: {null: 1}",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: ns}\ndata: &x [*x]",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: ns, labels: {1.5: x}}",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: ns}\ndata: {k: v}",
    ])
    result = parse_yaml(text, "f.yaml")
    loop, _, _ = make_loop()
    loop.apply(ProviderEvent(tuple(result.documents), errors=tuple(result.errors), initial=True))
    assert [k.name for k in loop.store.objects()] == ["ok"]
    messages = [e.message for e in loop.store.errors()]
    assert messages == ["invalid document: mapping key None is not a string",
                        "invalid document: a recursive alias (the document contains itself)",
                        "invalid document: mapping key 1.5 is not a string"]


def test_kinds_portico_does_not_serve_are_named_once(caplog: Any) -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "old", "namespace": "ns"},
                  "spec": {"replicas": 1}}
    second = {**deployment, "metadata": {"name": "older", "namespace": "ns"}}
    loop, _, _ = make_loop()
    with caplog.at_level("WARNING", logger="portico.control"):
        loop.apply(docs(CLASS, deployment, second))
    warnings = [r.getMessage() for r in caplog.records if "not served by Portico" in r.getMessage()]
    assert len(warnings) == 1 and "Deployment objects (apps)" in warnings[0] and "ns/old" in warnings[0]
    assert loop.store.get(key_of(deployment)) is not None  # still stored and listed


def test_ingress_objects_of_portico_are_served_with_their_address() -> None:
    """An Ingress of an IngressClass of Portico's becomes routes on a managed Gateway
    (`portico.ingress`); its status.loadBalancer is that Gateway's address."""
    ingress_class = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "portico"},
                     "spec": {"controller": "portico.dev/ingress-controller"}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "ns"},
               "spec": {"ports": [{"port": 80}]}}
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "shop", "namespace": "ns"},
               "spec": {"ingressClassName": "portico", "rules": [{"host": "shop.example.com", "http": {"paths": [
                   {"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}
    other = {**ingress, "metadata": {"name": "theirs", "namespace": "ns"},
             "spec": {**ingress["spec"], "ingressClassName": "nginx"}}
    xds = FakeXds()
    loop = ControlLoop(EmulatedStore(), host(), xds)  # the real translator
    malformed = {**ingress, "metadata": {"name": "malformed", "namespace": "ns"},
                 "spec": {"ingressClassName": "portico", "rules": ["not a rule"]}}
    loop.apply(docs(ingress_class, service, ingress, other, malformed))
    assert loop.sync()  # a malformed Ingress is reported; the others are served
    assert loop.last_translation is not None
    gateways = {f"{k.namespace}/{k.name}" for k in loop.last_translation.gateways}
    assert gateways == {"ns/ingress-portico"}
    routes = [r.name for ls in xds.pushed[-1].listeners for c in ls.filter_chains if c.http
              for vh in c.http.virtual_hosts for r in vh.routes]
    assert routes and all(name.startswith("httproute/ns/ingress-shop-") for name in routes)
    stored = loop.store.get(key_of(ingress))
    assert stored is not None and stored.status["loadBalancer"]["ingress"][0]["ip"].startswith("127.")
    theirs = loop.store.get(key_of(other))
    assert theirs is not None and not theirs.status  # another class: not ours to serve or to report on
    assert any("malformed" in note for _, note in loop.notices.ingress_notes)


def test_a_group_whose_replica_fails_to_start_is_stopped_whole() -> None:
    """No half-started group: the replicas that did start are stopped, the error is raised."""
    events: list[str] = []

    class Plane:
        def __init__(self, group: str, replica: int) -> None:
            self.name = f"{group}/{replica}"

        async def start(self) -> None:
            if self.name.endswith("/1"):
                raise RuntimeError("envoy exited at startup")
            events.append(f"started {self.name}")

        async def stop(self) -> None:
            events.append(f"stopped {self.name}")

    infra = HostInfrastructure(AddressPool(), Plane, replicas=2)

    async def scenario() -> None:
        try:
            await infra.reconcile({})
        except RuntimeError as e:
            assert "exited at startup" in str(e)
        else:
            raise AssertionError("the failure was swallowed")

    asyncio.run(scenario())
    assert "started portico/0" in events and "stopped portico/0" in events


def route(name: str, hostname: str, path: str = "/") -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [hostname],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                                "backendRefs": [{"name": "svc", "port": 80}]}]}}


def unstamped(status: Any) -> Any:
    """A status without lastTransitionTime (the store stamps it)."""
    if isinstance(status, dict):
        return {k: unstamped(v) for k, v in status.items() if k != "lastTransitionTime"}
    return [unstamped(v) for v in status] if isinstance(status, list) else status


def test_route_changes_are_patched_and_publish_what_a_fresh_loop_would() -> None:
    """Routes added, changed and deleted one sync at a time: the loop patches its last
    translation (translator.incremental) and writes only the statuses the patch names;
    statuses and IR then equal those of a loop that translates the same store afresh."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "ns"},
               "spec": {"ports": [{"port": 80}]}}
    store = EmulatedStore()
    loop = ControlLoop(store, host(), FakeXds())
    store.apply(docs(CLASS, GATEWAY, service, route("a", "a.example.com"), route("b", "b.example.com")))
    assert loop.sync()
    steps = [docs(route("c", "c.example.com")),
             docs(route("a", "a.example.com", "/v2")),
             ProviderEvent(deletes=(key_of(route("b", "b.example.com")),)),
             docs(route("d", "a.example.com", "/d"))]
    for event in steps:
        patches = loop._memo.patches
        store.apply(event)
        assert loop.sync()
        assert loop._memo.patches == patches + 1  # patched, not translated afresh
        written = {k: unstamped(o.status) for k, o in store.objects().items()}  # by the patching loop
        fresh = ControlLoop(store, host(), FakeXds())
        fresh.sync()
        assert loop.last_irs == fresh.last_irs
        assert loop.statuses.desired == fresh.statuses.desired
        routes = [k for k in fresh.statuses.desired if k.kind == "HTTPRoute"]  # (a Gateway's waits for an ACK)
        assert {k: written[k] for k in routes} == {k: unstamped(fresh.statuses.desired[k]) for k in routes}
    assert store.get(key_of(route("b", "b.example.com"))) is None
    gateway = store.get(GW_KEY)
    assert gateway is not None and gateway.status["listeners"][0]["attachedRoutes"] == 3
    assert [c["status"] for c in store.get(key_of(route("d", "a.example.com"))).status["parents"][0]["conditions"]
            if c["type"] == "Accepted"] == ["True"]


def endpoint_slice(*addresses: str) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "svc-1", "namespace": "ns", "labels": {"kubernetes.io/service-name": "svc"}},
            "addressType": "IPv4", "endpoints": [{"addresses": [a]} for a in addresses],
            "ports": [{"port": 8080, "protocol": "TCP"}]}


def test_endpointslice_changes_are_patched_and_publish_what_a_fresh_loop_would() -> None:
    """Issue 30: endpoints added and removed (pods scaled, rolled) patch the last translation:
    the Service's cluster gets its new endpoints, every other IR object stays the very same
    one; IR and statuses equal a fresh loop's. An endpoint the guardrails refuse (a metadata
    address) changes the route's ResolvedRefs: the pipeline runs."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "ns"},
               "spec": {"ports": [{"port": 80}]}}
    store = EmulatedStore()
    loop = ControlLoop(store, host(), FakeXds())
    store.apply(docs(CLASS, GATEWAY, service, endpoint_slice("10.0.0.1"), route("a", "a.example.com"),
                     route("b", "b.example.com")))
    assert loop.sync()
    for addresses in (("10.0.0.1", "10.0.0.2"), ("10.0.0.2",), ()):
        before = loop.last_irs[MERGED_GROUP]
        patches = loop._memo.patches
        store.apply(docs(endpoint_slice(*addresses)))
        assert loop.sync()
        assert loop._memo.patches == patches + 1  # patched, not translated afresh
        after = loop.last_irs[MERGED_GROUP]
        assert after.listeners is before.listeners  # routes and virtual hosts: the very same objects
        assert [(e.address, e.port) for c in after.clusters for e in c.endpoints] == [(a, 8080) for a in addresses]
        fresh = ControlLoop(store, host(), FakeXds())
        fresh.sync()
        assert loop.last_irs == fresh.last_irs
        assert loop.statuses.desired == fresh.statuses.desired
    patches = loop._memo.patches
    store.apply(docs(endpoint_slice("10.0.0.2", "169.254.169.254")))
    assert loop.sync()
    assert loop._memo.patches == patches  # the pipeline ran
    conds = store.get(key_of(route("a", "a.example.com"))).status["parents"][0]["conditions"]
    assert [(c["status"], c["reason"]) for c in conds if c["type"] == "ResolvedRefs"] == [("False", "RefNotPermitted")]


def test_a_change_of_a_few_routes_is_patched_on_the_event_loop(monkeypatch: Any) -> None:
    """Issue 30: a patch of a few routes is made where the loop runs, not handed to a
    thread (the thread waited 1-7 ms for the GIL while the event loop ran what was ready:
    most of Kubernetes mode's translate phase). The full pipeline, and a burst of more
    than PATCH_ON_LOOP routes, still go to a thread; the output is the same either way."""
    import portico.control

    handed: list[str] = []
    real = asyncio.to_thread

    async def to_thread(func: Callable[..., Any], *args: Any) -> Any:
        snapshot = args[0]
        handed.append("full" if snapshot.changes is None else f"{len(snapshot.changes[1])} changed")
        return await real(func, *args)

    monkeypatch.setattr(portico.control.asyncio, "to_thread", to_thread)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "ns"},
               "spec": {"ports": [{"port": 80}]}}
    store = EmulatedStore()
    loop = ControlLoop(store, host(), FakeXds())
    burst = [route(f"b{i}", f"b{i}.example.com") for i in range(ControlLoop.PATCH_ON_LOOP + 1)]

    async def scenario() -> None:
        store.apply(docs(CLASS, GATEWAY, service, route("a", "a.example.com")))
        assert await loop.sync_async()
        assert handed == ["full"]
        for step in (docs(route("c", "c.example.com")), docs(route("a", "a.example.com", "/v2")),
                     ProviderEvent(deletes=(key_of(route("c", "c.example.com")),))):
            patches = loop._memo.patches
            store.apply(step)
            assert await loop.sync_async()
            assert loop._memo.patches == patches + 1
        assert handed == ["full"]  # the three patches: none in a thread
        store.apply(docs(*burst))
        assert await loop.sync_async()
        assert handed == ["full", f"{len(burst)} changed"]

    asyncio.run(scenario())
    fresh = ControlLoop(store, host(), FakeXds())
    fresh.sync()
    assert loop.last_irs == fresh.last_irs
    assert loop.statuses.desired == fresh.statuses.desired


def test_an_unwritable_state_directory_does_not_stop_changes(tmp_path: Path) -> None:
    """Issue 31 item 2: the addresses file cannot be written (here its directory is a
    file; disk full or read-only alike): Gateways are still placed and pushed, the
    addresses kept in memory, and the problem is reported (infra.problems, /healthz)."""
    blocked = tmp_path / "state"
    blocked.write_text("")  # a file where the state directory should be
    infra = HostInfrastructure(AddressPool(in_use=set), addresses_file=blocked / "addresses.json")
    translator, xds = FakeTranslator(), FakeXds()
    loop = ControlLoop(EmulatedStore(), infra, xds, translator=translator)
    loop.apply(docs(CLASS, GATEWAY))
    assert loop.sync()
    assert [len(ir.listeners) for ir in xds.pushed] == [1]
    other = copy.deepcopy(GATEWAY)
    other["metadata"]["name"] = "gw2"
    loop.apply(docs(other))
    assert loop.sync()
    assert [len(ir.listeners) for ir in xds.pushed] == [1, 2]  # the second Gateway is served too
    assert len(infra.pool.assigned()) == 2
    [problem] = infra.problems()
    assert "addresses.json" in problem and "kept in memory" in problem


def test_status_is_composed_once_where_it_is_stored() -> None:
    """The translator renders only Portico's route parents; the store's writer merges them
    with the stored entries (another controller's kept in its place) and stamps the times."""
    from portico.translator import translate

    theirs = {"parentRef": {"name": "elsewhere"}, "controllerName": "other.example/ctrl",
              "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                              "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "r", "namespace": "ns"},
             "spec": {"parentRefs": [{"name": "elsewhere"}, {"name": "gw"}]}, "status": {"parents": [theirs]}}
    store = EmulatedStore()
    loop = ControlLoop(store, host(), FakeXds(), translator=translate)
    loop.apply(docs(CLASS, GATEWAY, route))
    assert loop.sync()
    assert loop.last_translation is not None
    rendered = loop.last_translation.statuses[key_of(route)]["parents"]
    assert [p["controllerName"] for p in rendered] == ["portico.dev/gateway-controller"]  # ours only
    stored = store.get(key_of(route))
    assert stored is not None
    assert stored.status["parents"][0] == theirs  # kept in place, untouched
    [ours] = stored.status["parents"][1:]
    assert ours["parentRef"]["name"] == "gw"
    assert all(c["lastTransitionTime"] != "1970-01-01T00:00:00Z" for c in ours["conditions"])  # stamped


def test_the_xds_streams_send_a_new_configuration_before_the_infrastructure_is_reconciled() -> None:
    """Reconciling the infrastructure after a push (Kubernetes mode renders every Gateway's
    objects: 1.3-8 ms at 3000 routes) waits for a turn of the event loop in which the xDS
    streams, woken by the push as `XdsServer.update` wakes them, send the new version:
    Envoy's update no longer waits for the reconciliation (issue 30)."""

    async def main() -> None:
        wakes: asyncio.Queue[int] = asyncio.Queue()
        sent: list[int] = []  # versions the stream sent
        sent_at_reconcile: list[list[int]] = []

        class WakingXds(FakeXds):
            def update(self, group: str, ir: IR) -> int:
                version = super().update(group, ir)
                wakes.put_nowait(version)  # (a Stream's queue: `Stream.wake`)
                return version

        async def stream() -> None:
            while True:
                sent.append(await wakes.get())

        class RecordingInfrastructure(HostInfrastructure):
            async def reconcile(self, outputs: Any) -> None:
                sent_at_reconcile.append(list(sent))
                await super().reconcile(outputs)

        loop = ControlLoop(EmulatedStore(), RecordingInfrastructure(AddressPool()), WakingXds(),
                           translator=FakeTranslator())
        queue: asyncio.Queue[ProviderEvent] = asyncio.Queue()

        async def events() -> AsyncIterator[ProviderEvent]:
            while True:
                yield await queue.get()

        streaming = asyncio.create_task(stream())
        ready = asyncio.Event()
        task = asyncio.create_task(loop.run(events(), ready.set))
        queue.put_nowait(dataclasses.replace(docs(CLASS, GATEWAY), initial=True))
        try:
            await settle(ready.is_set, "the initial sync")
            assert sent_at_reconcile == [[1]]
        finally:
            for t in (task, streaming):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    asyncio.run(main())


def test_answered_is_clear_while_a_pushed_version_awaits_its_answer() -> None:
    """The event a mode's status writer waits for (Kubernetes mode: status writes after
    Envoy's answer, `KubernetesStatusWriter.hold`) is the loop's: cleared by a push, set
    once every group answered it (ACK or NACK)."""
    answered = asyncio.Event()
    translator, xds = FakeTranslator(), FakeXds()
    loop = ControlLoop(EmulatedStore(), host(), xds, translator=translator, answered=answered)
    assert answered.is_set()
    loop.apply(docs(CLASS, GATEWAY))
    loop.sync()
    assert not answered.is_set()
    loop.on_ack(next(iter(xds.by_group)), 1)
    assert answered.is_set()
