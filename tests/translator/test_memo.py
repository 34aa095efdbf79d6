"""Incremental translation (RuleMemo): the same result as translating from scratch,
with unchanged routes' rules reused and any change of another kind invalidating them."""

from __future__ import annotations

import dataclasses
from typing import Any

from test_golden import CASES, TESTDATA, load_snapshot

from portico.models import parse_object
from portico.translator import Placement, Snapshot, translate
from portico.translator.backends import RuleMemo


def test_every_golden_case_translates_the_same_with_a_memo() -> None:
    for case in CASES:
        snap = load_snapshot(TESTDATA / case / "in.yaml")
        memo = RuleMemo()
        plain = translate(snap)
        assert translate(dataclasses.replace(snap, memo=memo)) == plain, case
        assert translate(dataclasses.replace(snap, memo=memo)) == plain, case  # from the memo


def doc(kind: str, name: str, spec: dict[str, Any], api: str = "gateway.networking.k8s.io/v1",
        namespace: str = "default", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "creationTimestamp": "2026-01-01T00:00:00Z"}
    return {"apiVersion": api, "kind": kind, "metadata": meta, **({"spec": spec} if spec else {}), **extra}


def route(name: str, service: str, path: str = "/") -> dict[str, Any]:
    return doc("HTTPRoute", name, {"parentRefs": [{"name": "gw"}], "hostnames": [f"{name}.example.com"],
                                   "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                                              "backendRefs": [{"name": service, "port": 80}]}]})


def service(name: str, port: int) -> list[dict[str, Any]]:
    return [doc("Service", name, {"ports": [{"name": "http", "port": 80}]}, api="v1"),
            doc("EndpointSlice", name, {}, api="discovery.k8s.io/v1", addressType="IPv4",
                endpoints=[{"addresses": ["127.0.0.1"]}], ports=[{"name": "http", "port": port}])
            | {"metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z",
                            "labels": {"kubernetes.io/service-name": name}}}]


def snapshot(docs: list[dict[str, Any]], memo: RuleMemo | None) -> Snapshot:
    objects = {}
    for d in docs:
        obj = parse_object(d)
        objects[obj.key] = obj
    return Snapshot(objects, {("default", "gw"): Placement("127.10.0.1")}, memo=memo)


def with_objects(snap: Snapshot, docs: list[dict[str, Any]]) -> Snapshot:
    """`snap` with `docs` replaced (new objects), every other object the same instance (as the store does)."""
    objects = dict(snap.objects)
    for d in docs:
        obj = parse_object(d)
        objects[obj.key] = obj
    return dataclasses.replace(snap, objects=objects)


def test_reuse_and_invalidation() -> None:
    base = [doc("GatewayClass", "portico", {"controllerName": "portico.dev/gateway-controller"}, namespace=""),
            doc("Gateway", "gw", {"gatewayClassName": "portico",
                                  "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]})]
    docs = base + service("a", 9001) + service("b", 9002) + [route("r1", "a"), route("r2", "b"), route("r3", "a")]
    memo = RuleMemo()
    snap = snapshot(docs, memo)
    assert translate(snap) == translate(dataclasses.replace(snap, memo=None))
    assert memo.hits == 0

    assert translate(snap) == translate(dataclasses.replace(snap, memo=None))
    assert memo.hits == 3  # nothing changed: every route from the memo

    changed = with_objects(snap, [route("r2", "a", "/v2")])  # one route changed
    out = translate(changed)
    assert out == translate(dataclasses.replace(changed, memo=None))
    assert memo.hits == 2

    moved = with_objects(changed, service("a", 9009))  # a Service's endpoints changed: nothing reused
    out = translate(moved)
    assert out == translate(dataclasses.replace(moved, memo=None))
    assert memo.hits == 0
    endpoints = {c.name: c.endpoints for c in out.ir.clusters}
    assert [e.port for e in endpoints["default/a/80"]] == [9009]

    gone = dataclasses.replace(moved, objects={k: v for k, v in moved.objects.items() if k.name != "r1"})
    out = translate(gone)  # a route deleted: the others reused, its rules forgotten
    assert out == translate(dataclasses.replace(gone, memo=None))
    assert memo.hits == 2 and len(memo.current) == 2


def test_unchanged_routes_keep_their_ir_objects() -> None:
    base = [doc("GatewayClass", "portico", {"controllerName": "portico.dev/gateway-controller"}, namespace=""),
            doc("Gateway", "gw", {"gatewayClassName": "portico",
                                  "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]})]
    snap = snapshot(base + service("a", 9001) + [route("r1", "a"), route("r2", "a")], RuleMemo())
    first, second = translate(snap), translate(with_objects(snap, [route("r2", "a", "/v2")]))

    def routes(ir: Any) -> dict[str, Any]:
        return {r.name: r for li in ir.listeners for c in li.filter_chains if c.http
                for vh in c.http.virtual_hosts for r in vh.routes}

    before, after = routes(first.ir), routes(second.ir)
    r1 = next(n for n in before if "/r1/" in n)
    r2 = next(n for n in before if "/r2/" in n)
    assert after[r1] is before[r1]  # unchanged: the very same object (cheap IR comparison)
    assert after[r2] != before[r2]
