"""Property tests: the translator never raises on well-typed input, and route
status has exactly one entry per (parentRef, our controller); parents are
Gateways or ListenerSets (whose parent Gateway is ours)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portico import CONTROLLER_NAME
from portico.models import parse_object
from portico.objects import ObjectKey
from portico.translator import Placement, Snapshot, translate

GW = "gateway.networking.k8s.io/v1"
NAMESPACES = ["a", "b"]
HOSTNAMES = [None, "example.com", "*.example.com", "foo.example.com", "other.org"]
PROTOCOLS = ["HTTP", "HTTPS", "TLS", "TCP", "UDP", "BOGUS"]

# route kinds the translator implements (each gets status for our parents)
ROUTE_KINDS = ["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"]

names = st.sampled_from(["x", "y", "z"])
hostname = st.sampled_from(HOSTNAMES)


@st.composite
def listener(draw: st.DrawFn, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f"l{i}", "port": draw(st.sampled_from([80, 443, 8080])),
                           "protocol": draw(st.sampled_from(PROTOCOLS))}
    h = draw(hostname)
    if h:
        out["hostname"] = h
    if out["protocol"] in ("HTTPS", "TLS"):
        out["tls"] = {"mode": draw(st.sampled_from(["Terminate", "Passthrough"])),
                      "certificateRefs": [{"name": draw(names), "namespace": draw(st.sampled_from(NAMESPACES))}]}
    out["allowedRoutes"] = {"namespaces": {"from": draw(st.sampled_from(["Same", "All", "Selector"])),
                                           "selector": {"matchLabels": {"team": draw(names)}}},
                            **draw(st.sampled_from([{}, {"kinds": [{"kind": "HTTPRoute"}, {"kind": "Bogus"}]}]))}
    return out


@st.composite
def gateway(draw: st.DrawFn, name: str) -> dict[str, Any]:
    count = draw(st.integers(0, 4))
    spec: dict[str, Any] = {"gatewayClassName": draw(st.sampled_from(["portico", "other"])),
                            "listeners": [draw(listener(i)) for i in range(count)]}
    allowed = draw(st.sampled_from([None, "None", "Same", "All", "Selector"]))
    if allowed:
        spec["allowedListeners"] = {"namespaces": {"from": allowed, "selector": {"matchLabels": {"team": "x"}}}}
    return {"apiVersion": GW, "kind": "Gateway",
            "metadata": {"name": name, "namespace": draw(st.sampled_from(NAMESPACES))}, "spec": spec}


@st.composite
def listener_set(draw: st.DrawFn, name: str) -> dict[str, Any]:
    parent = {"name": draw(st.sampled_from(["g1", "g2"])),
              **draw(st.sampled_from([{}] + [{"namespace": ns} for ns in NAMESPACES]))}
    return {"apiVersion": GW, "kind": "ListenerSet",
            "metadata": {"name": name, "namespace": draw(st.sampled_from(NAMESPACES))},
            "spec": {"parentRef": parent, "listeners": [draw(listener(i)) for i in range(draw(st.integers(1, 3)))]}}


@st.composite
def backend_ref(draw: st.DrawFn) -> dict[str, Any]:
    return {"name": draw(names), "namespace": draw(st.sampled_from(NAMESPACES)),
            "port": draw(st.sampled_from([80, 8080])), "weight": draw(st.integers(0, 3)),
            **draw(st.sampled_from([{}, {"group": "example.com", "kind": "Thing"}]))}


@st.composite
def route(draw: st.DrawFn, kind: str, name: str) -> dict[str, Any]:
    refs = draw(st.lists(st.tuples(st.sampled_from(["g1", "g2", "s1", "s2"]), st.sampled_from(NAMESPACES),
                                   st.sampled_from([None, "l0", "l1"]), st.sampled_from([None, 80, 443])),
                         max_size=3, unique=True))
    parent_refs = [{"name": n, "namespace": ns, **({"kind": "ListenerSet"} if n.startswith("s") else {}),
                    **({"sectionName": s} if s else {}), **({"port": p} if p else {})}
                   for n, ns, s, p in refs]
    rule: dict[str, Any] = {"backendRefs": draw(st.lists(backend_ref(), max_size=3))}
    if kind == "HTTPRoute":
        rule["matches"] = [{"path": {"type": draw(st.sampled_from(["PathPrefix", "Exact"])), "value": "/a"}}]
    spec: dict[str, Any] = {"parentRefs": parent_refs, "rules": [rule]}
    if kind in ("HTTPRoute", "GRPCRoute", "TLSRoute"):
        spec["hostnames"] = [h for h in draw(st.lists(hostname, max_size=2, unique=True)) if h]
    return {"apiVersion": GW, "kind": kind,
            "metadata": {"name": name, "namespace": draw(st.sampled_from(NAMESPACES))}, "spec": spec}


@st.composite
def snapshot(draw: st.DrawFn) -> Snapshot:
    docs: list[dict[str, Any]] = [
        {"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": CONTROLLER_NAME}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b", "labels": {"team": "x"}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "a"},
         "spec": {"ports": [{"port": 80}, {"port": 8080, "appProtocol": draw(st.sampled_from(["http", "bogus"]))}]}},
        {"apiVersion": GW, "kind": "ReferenceGrant", "metadata": {"name": "g", "namespace": "a"},
         "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "b"}],
                  "to": [{"group": "", "kind": "Service"}]}},
    ]
    docs += [draw(gateway(n)) for n in ("g1", "g2")]
    docs += [draw(listener_set(n)) for n in ("s1", "s2")]
    for i, kind in enumerate(draw(st.lists(st.sampled_from(ROUTE_KINDS), max_size=4))):
        docs.append(draw(route(kind, f"r{i}")))
    objects = {}
    for doc in docs:
        obj = parse_object(doc)
        objects[obj.key] = obj
    addresses = {("a", "g1"): "127.10.0.1", ("b", "g1"): "127.10.0.2", ("a", "g2"): "127.10.0.3",
                 ("b", "g2"): "127.10.0.4"}
    return Snapshot(objects, {gw: Placement(a) for gw, a in addresses.items()})


def our_gateways(snap: Snapshot) -> set[ObjectKey]:
    return {k for k, o in snap.objects.items() if k.kind == "Gateway" and o.model_dump()["spec"]
            ["gateway_class_name"] == "portico"}


def parent_is_ours(snap: Snapshot, route_ns: str, ref: dict[str, Any]) -> bool:
    key = ObjectKey("gateway.networking.k8s.io", ref.get("kind", "Gateway"), ref.get("namespace") or route_ns,
                    ref["name"])
    if key.kind == "ListenerSet":
        lset = snap.objects.get(key)
        if lset is None:
            return False
        parent = lset.model_dump(by_alias=True)["spec"]["parentRef"]
        key = ObjectKey("gateway.networking.k8s.io", "Gateway", parent.get("namespace") or key.namespace,
                        parent["name"])
    return key in our_gateways(snap)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshot())
def test_translator_total_and_one_status_entry_per_parent(snap: Snapshot) -> None:
    out = translate(snap)
    for key, obj in snap.objects.items():
        if not key.kind.endswith("Route"):
            continue
        expected = []
        for ref in obj.model_dump(by_alias=True)["spec"]["parentRefs"]:
            if parent_is_ours(snap, key.namespace, ref):
                expected.append((ref["name"], ref.get("namespace"), ref.get("sectionName"), ref.get("port")))
        parents = [p for p in out.statuses.get(key, {}).get("parents", [])
                   if p["controllerName"] == CONTROLLER_NAME]
        got = [(p["parentRef"]["name"], p["parentRef"].get("namespace"), p["parentRef"].get("sectionName"),
                p["parentRef"].get("port")) for p in parents]
        assert sorted(got, key=str) == sorted(expected, key=str), key
        for p in parents:
            types = [c["type"] for c in p["conditions"]]
            assert len(types) == len(set(types)) and {"Accepted", "ResolvedRefs"} <= set(types)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshot())
def test_listener_sets_status_and_unique_filter_chains(snap: Snapshot) -> None:
    """A ListenerSet of our Gateway has Accepted and one listener entry per spec
    listener; the Gateway counts the Accepted ones; filter chain names are
    unique per socket (listener names repeat across a Gateway and its sets)."""
    out = translate(snap)
    attached: dict[ObjectKey, int] = {}
    for key, obj in snap.objects.items():
        if key.kind != "ListenerSet":
            continue
        spec = obj.model_dump(by_alias=True)["spec"]
        parent = ObjectKey("gateway.networking.k8s.io", "Gateway", spec["parentRef"].get("namespace") or key.namespace,
                           spec["parentRef"]["name"])
        status = out.statuses.get(key)
        assert (status is not None) == (parent in our_gateways(snap)), key
        if status is None:
            continue
        assert [ls["name"] for ls in status["listeners"]] == [ls["name"] for ls in spec["listeners"]]
        accepted = next(c for c in status["conditions"] if c["type"] == "Accepted")
        attached[parent] = attached.get(parent, 0) + (accepted["status"] == "True")
    for gw in our_gateways(snap):
        assert out.statuses[gw].get("attachedListenerSets", 0) == attached.get(gw, 0), gw
    for li in out.ir.listeners:
        names = [fc.name for fc in li.filter_chains]
        assert len(names) == len(set(names)), li.name
