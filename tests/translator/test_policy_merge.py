"""The BackendTrafficPolicy merge rule, field by field: route > Service > Gateway; a
Service's policy also holds for the TLS variant a BackendTLSPolicy makes of its cluster."""

from __future__ import annotations

from typing import Any

from portico.models import parse_object
from portico.translator import Placement, Snapshot, translate

API, PORTICO = "gateway.networking.k8s.io/v1", "gateway.portico.dev/v1alpha1"


def doc(api: str, kind: str, name: str, spec: dict[str, Any], namespace: str | None = "default") -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {}),
            "creationTimestamp": "2026-01-01T00:00:00Z"}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def used_cluster(extra: list[dict[str, Any]]) -> Any:
    docs = [
        doc(API, "GatewayClass", "portico", {"controllerName": "portico.dev/gateway-controller"}, None),
        doc(API, "Gateway", "gw", {"gatewayClassName": "portico",
                                   "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"ports": [{"name": "http", "port": 80}]}},
        doc(API, "HTTPRoute", "r", {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "web",
                                                                                              "port": 80}]}]}),
        doc(PORTICO, "BackendTrafficPolicy", "service", {
            "targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
            "loadBalancer": {"type": "LeastRequest"}, "timeout": {"connect": "2s"}}),
        doc(PORTICO, "BackendTrafficPolicy", "gateway", {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
            "loadBalancer": {"type": "Random"}, "timeout": {"connect": "5s", "idle": "7s"},
            "circuitBreaker": {"maxConnections": 7}}),
        *extra,
    ]
    objects = {o.key: o for o in map(parse_object, docs)}
    out = translate(Snapshot(objects, {("default", "gw"): Placement("127.10.0.1")}))
    xds = next(iter(out.gateways.values())).xds
    route = xds.listeners[0].filter_chains[0].http.virtual_hosts[0].routes[-1]
    clusters = {c.name: c for c in xds.clusters}
    return route.action, clusters[route.action.backends[0].cluster]


def test_service_fields_win_over_the_gateways_and_the_gateway_fills_the_rest() -> None:
    action, cluster = used_cluster([])
    assert cluster.lb_policy == "least_request" and cluster.connect_timeout_ms == 2000  # the Service's
    assert cluster.circuit_breaker.max_connections == 7 and action.idle_timeout_ms == 7000  # the Gateway's


def test_the_services_policy_holds_for_its_tls_variant() -> None:
    tls = doc("gateway.networking.k8s.io/v1", "BackendTLSPolicy", "tls", {
        "targetRefs": [{"group": "", "kind": "Service", "name": "web"}],
        "validation": {"hostname": "web.example.com", "wellKnownCACertificates": "System"}})
    _, cluster = used_cluster([tls])
    assert cluster.tls is not None and "/tls" in cluster.name
    assert cluster.lb_policy == "least_request" and cluster.connect_timeout_ms == 2000
    assert cluster.circuit_breaker.max_connections == 7


def test_a_route_policy_wins_over_both() -> None:
    route = doc(PORTICO, "BackendTrafficPolicy", "route", {
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r"}],
        "loadBalancer": {"type": "Maglev", "hashOn": {"sourceIP": {}}}})
    action, cluster = used_cluster([route])
    assert cluster.lb_policy == "maglev" and cluster.connect_timeout_ms == 2000  # route, then Service
    assert cluster.circuit_breaker.max_connections == 100_000 and action.idle_timeout_ms is None  # no Gateway
