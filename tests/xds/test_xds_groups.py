"""Envoy groups (one per Gateway in Kubernetes mode, or with `portico run
--envoy-per-gateway`): each Envoy is served only its own group's resources, and
a NACK from one group's Envoy neither holds back nor changes another group."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from test_xds_envoy import cluster, http_ir, route, to
from xds_harness import EchoBackend, Plane, free_port, request

from portico import ir


@pytest.fixture(scope="module")
def two() -> Iterator[Plane]:
    p = Plane(groups=("ns/a", "ns/b"))
    try:
        yield p
    finally:
        p.close()


def config_dump(plane: Plane, group: str) -> dict[str, object]:
    status, body = plane.envoys[group].admin_get("/config_dump?include_eds")
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


def test_a_nack_in_one_group_leaves_the_other_serving_and_acked(two: Plane, echo: EchoBackend) -> None:
    port_a, port_b = free_port(), free_port()
    svc_a, svc_b = cluster("httproute/ns/a-svc/80", echo), cluster("httproute/ns/b-svc/80", echo)
    two.push(http_ir(port_a, [route("a", "/a", to(svc_a.name))], [svc_a]), group="ns/a")
    two.push(http_ir(port_b, [route("b", "/b", to(svc_b.name))], [svc_b]), group="ns/b")
    assert request(port_a, "/a")[0] == 200 and request(port_b, "/b")[0] == 200

    # each Envoy holds only its own group's clusters and listeners
    dump_a = json.dumps(config_dump(two, "ns/a"))
    assert "ns/a-svc" in dump_a and "ns/b-svc" not in dump_a and f":{port_b}" not in dump_a

    bad = ir.Route("bad", ir.RouteMatch(path=ir.PathMatch("RegularExpression", "/(unclosed")), ir.RouteAction())
    message = two.push_nacked(http_ir(port_a, [route("a", "/a", to(svc_a.name)), bad], [svc_a]), group="ns/a")
    assert "missing )" in message
    # group b: a new version is ACKed while group a's newest stays NACKed; both keep serving
    acked_a = two.xds.acked_version("ns/a")
    two.push(http_ir(port_b, [route("b", "/b", to(svc_b.name)), route("c", "/c", to(svc_b.name))], [svc_b]),
             group="ns/b")
    assert request(port_b, "/c")[0] == 200
    assert request(port_a, "/a")[0] == 200
    assert two.xds.acked_version("ns/a") == acked_a < two.xds.version("ns/a")
    assert all(g == "ns/a" for g, _, _ in two.nacks)
