"""A patched EndpointSlice change leaves the memo (`RuleMemo`) as the pipeline would: a later
full translation over the same objects reuses the unchanged routes' rules, and the clusters
they registered are the new ones (issue 30)."""

from __future__ import annotations

import dataclasses
from typing import Any

from portico.models import parse_object
from portico.translator import Placement, Snapshot, translate
from portico.translator.incremental import Incremental

API = "gateway.networking.k8s.io/v1"


def objects(*addresses: str) -> dict[Any, Any]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": API, "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": API, "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "default"},
         "spec": {"ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "svc", "namespace": "default", "labels": {"kubernetes.io/service-name": "svc"}},
         "addressType": "IPv4", "endpoints": [{"addresses": [a]} for a in addresses],
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
    ]
    docs += [{"apiVersion": API, "kind": "HTTPRoute", "metadata": {"name": f"r{i}", "namespace": "default"},
              "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [f"r{i}.example.com"],
                       "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]}} for i in range(3)]
    return {o.key: o for o in map(parse_object, docs)}


def test_a_full_translation_after_a_patched_slice_change_reuses_the_memo_with_the_new_clusters() -> None:
    memo = Incremental()
    first = objects("10.0.0.1")
    translate(Snapshot(first, {("default", "gw"): Placement("127.10.0.1")}, memo=memo))
    changed = {k: (v if k.kind != "EndpointSlice" else objects("10.0.0.1", "10.0.0.2")[k]) for k, v in first.items()}
    patched = translate(Snapshot(changed, {("default", "gw"): Placement("127.10.0.1")}, memo=memo))
    assert memo.patches == 1
    assert [e.address for c in patched.ir.clusters for e in c.endpoints] == ["10.0.0.1", "10.0.0.2"]
    # another placement: the pipeline runs over the same objects
    moved = Snapshot(changed, {("default", "gw"): Placement("127.10.0.2")}, memo=memo)
    full = translate(moved)
    assert memo.patches == 1 and memo.rules.hits == 3  # every route's rules reused
    assert full == translate(dataclasses.replace(moved, memo=None))
