"""A cluster's fallback (BackendTrafficPolicy `fallback`) in its EDS ClusterLoadAssignment:
priority 0 the cluster's endpoints (present even when there are none), priority 1 the
fallback's, and an overprovisioning factor under which one healthy endpoint of priority 0
keeps all the load there. Without a fallback the assignment is as before."""

from __future__ import annotations

from portico import ir
from portico.xds.clusters import FALLBACK_OVERPROVISIONING, build_load_assignment

APP = (ir.Endpoint("10.0.0.1", 80), ir.Endpoint("10.0.0.2", 80))
FALLBACK = (ir.Endpoint("10.0.0.9", 8080),)


def addresses(lle: object) -> list[tuple[str, int]]:
    return [(e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
            for e in lle.lb_endpoints]  # type: ignore[attr-defined]


def test_fallback_is_priority_one_of_the_same_assignment() -> None:
    cla = build_load_assignment(ir.Cluster("c", APP, fallback="ns/errors/80", fallback_endpoints=FALLBACK))
    assert cla.cluster_name == "c"
    assert [(lle.priority, addresses(lle)) for lle in cla.endpoints] == [
        (0, [("10.0.0.1", 80), ("10.0.0.2", 80)]), (1, [("10.0.0.9", 8080)])]
    # min(100, factor x healthy / all): 1 healthy of 10,000 endpoints is still 100%
    assert cla.policy.overprovisioning_factor.value == FALLBACK_OVERPROVISIONING
    assert min(100, FALLBACK_OVERPROVISIONING * 1 // 10_000) == 100
    assert FALLBACK_OVERPROVISIONING < 2**32  # Envoy keeps the product under uint32 after the division


def test_empty_priority_zero_sends_everything_to_the_fallback() -> None:
    cla = build_load_assignment(ir.Cluster("c", (), fallback="ns/errors/80", fallback_endpoints=FALLBACK))
    assert [(lle.priority, addresses(lle)) for lle in cla.endpoints] == [(0, []), (1, [("10.0.0.9", 8080)])]


def test_fallback_without_endpoints_keeps_both_priorities() -> None:
    cla = build_load_assignment(ir.Cluster("c", APP, fallback="ns/errors/80"))
    assert [(lle.priority, len(lle.lb_endpoints)) for lle in cla.endpoints] == [(0, 2), (1, 0)]


def test_without_fallback_nothing_changes() -> None:
    cla = build_load_assignment(ir.Cluster("c", APP))
    assert [(lle.priority, len(lle.lb_endpoints)) for lle in cla.endpoints] == [(0, 2)]
    assert not cla.HasField("policy")
    assert list(build_load_assignment(ir.Cluster("c", ())).endpoints) == []
