"""Condition reasons that depend on what the infrastructure reports (Placement), which
the golden cases (one address per Gateway, every port free) cannot show: a Gateway
without an address (Programmed=False AddressNotAssigned), and a port the data plane
could not bind, on a Gateway listener and on a ListenerSet listener (PortUnavailable)."""

from __future__ import annotations

from typing import Any

from portico.models import parse_object
from portico.translator import Placement, Snapshot, translate

GW = "gateway.networking.k8s.io/v1"


def snapshot(placement: Placement) -> Snapshot:
    docs: list[dict[str, Any]] = [
        {"apiVersion": GW, "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": GW, "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "portico", "allowedListeners": {"namespaces": {"from": "Same"}},
                  "listeners": [{"name": "taken", "port": 80, "protocol": "HTTP"},
                                {"name": "free", "port": 81, "protocol": "HTTP"}]}},
        {"apiVersion": GW, "kind": "ListenerSet", "metadata": {"name": "extra", "namespace": "default"},
         "spec": {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
                  "listeners": [{"name": "also-taken", "port": 8080, "protocol": "HTTP"}]}},
    ]
    objects = {}
    for i, doc in enumerate(docs):
        doc["metadata"]["creationTimestamp"] = f"2026-01-01T00:00:{i:02d}Z"
        obj = parse_object(doc)
        objects[obj.key] = obj
    return Snapshot(objects, placements={("default", "gw"): placement})


def reasons(conditions: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in conditions}


def statuses(placement: Placement) -> dict[str, dict[str, Any]]:
    return {f"{k.kind}/{k.name}": v for k, v in translate(snapshot(placement)).statuses.items()}


def test_ports_the_data_plane_cannot_bind_are_port_unavailable() -> None:
    out = statuses(Placement("127.10.0.1", unavailable=frozenset({(80, "tcp"), (8080, "tcp")})))
    listeners = {ls["name"]: reasons(ls["conditions"]) for ls in out["Gateway/gw"]["listeners"]}
    assert listeners["taken"]["Accepted"] == ("False", "PortUnavailable")
    assert listeners["free"]["Accepted"] == ("True", "Accepted")
    [entry] = out["ListenerSet/extra"]["listeners"]
    assert reasons(entry["conditions"])["Accepted"] == ("False", "PortUnavailable")


def test_a_gateway_without_an_address_is_address_not_assigned() -> None:
    out = statuses(Placement(None))
    assert reasons(out["Gateway/gw"]["conditions"])["Programmed"] == ("False", "AddressNotAssigned")
