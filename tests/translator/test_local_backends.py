"""Backends on this machine (loopback, localhost, Unix sockets) are served in standalone
mode and refused in Kubernetes mode, where the Envoy pod's loopback is Envoy's own admin
interface (Placement.local_backends)."""

from __future__ import annotations

import dataclasses
from typing import Any

from portico.models import parse_object
from portico.objects import ObjectKey
from portico.translator import Placement, Snapshot, translate

GW = ("default", "gw")


def meta(name: str) -> dict[str, str]:
    return {"name": name, "namespace": "default"}


PORTICO, X = "gateway.portico.dev/v1alpha1", "gateway.networking.x-k8s.io/v1alpha1"


def objects() -> dict[ObjectKey, Any]:
    docs = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": meta("gw"),
         "spec": {"gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        {"apiVersion": PORTICO, "kind": "Backend", "metadata": meta("sock"),
         "spec": {"endpoints": [{"unix": {"path": "/run/admin.sock"}}]}},
        {"apiVersion": PORTICO, "kind": "Backend", "metadata": meta("lo"),
         "spec": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": 9901}}]}},
        {"apiVersion": X, "kind": "XBackend", "metadata": meta("host"),
         "spec": {"type": "ExternalHostname", "externalHostname": {"hostname": "localhost"}, "port": {"port": 9901}}},
        {"apiVersion": PORTICO, "kind": "Backend", "metadata": meta("far"),
         "spec": {"endpoints": [{"ip": {"address": "10.0.0.7", "port": 80}}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": meta("r"),
         "spec": {"parentRefs": [{"name": "gw"}], "rules": [
             {"matches": [{"path": {"type": "PathPrefix", "value": f"/{n}"}}],
              "backendRefs": [{"group": g, "kind": k, "name": n}]}
             for g, k, n in (("gateway.portico.dev", "Backend", "sock"), ("gateway.portico.dev", "Backend", "lo"),
                             ("gateway.networking.x-k8s.io", "XBackend", "host"),
                             ("gateway.portico.dev", "Backend", "far"))]}},
    ]
    parsed = [parse_object(d) for d in docs]
    return {o.key: o for o in parsed}


def clusters(placement: Placement) -> set[str]:
    out = translate(Snapshot(objects(), {GW: placement}))
    return {c.name for g in out.gateways.values() for c in g.xds.clusters}


def test_kubernetes_mode_refuses_local_backends() -> None:
    standalone = Placement("127.10.0.1")
    assert clusters(standalone) == {"backend/default/sock", "backend/default/lo", "xbackend/default/host/9901",
                                    "backend/default/far"}
    kubernetes = dataclasses.replace(standalone, local_backends=False)
    assert clusters(kubernetes) == {"backend/default/far"}
    status = translate(Snapshot(objects(), {GW: kubernetes})).statuses
    route = next(v for k, v in status.items() if k.kind == "HTTPRoute")
    refs = next(c for c in route["parents"][0]["conditions"] if c["type"] == "ResolvedRefs")
    assert refs["status"] == "False" and refs["reason"] == "UnsupportedValue"
    assert "refused in Kubernetes mode" in refs["message"]
