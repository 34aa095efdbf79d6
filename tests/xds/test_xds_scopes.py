"""Routes scoped by Host (`xds.scopes`) through a real Envoy: a connection manager whose
routes are all under exact hostnames finds them by Host, one scope per hostname; one with
a wildcard or catch-all route stays on VHDS."""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from xds_harness import EchoBackend, Plane, free_port, raw_request, request

from portico import ir
from portico.xds.resources import ROUTE, SCOPED, VHOST, build
from portico.xds.scopes import SCOPE_HEADER

ADDRESS = "127.0.0.1"
SVC = "httproute/default/echo/80"


def route(name: str, prefix: str, **action: object) -> ir.Route:
    return ir.Route(name, ir.RouteMatch(path=ir.PathMatch("Prefix", prefix)),
                    ir.RouteAction(backends=(ir.WeightedBackend(SVC, 1),), **action))  # type: ignore[arg-type]


def http_ir(port: int, hosts: dict[str, tuple[ir.Route, ...]], echo: EchoBackend, misdirected: bool = False,
            config: str = "") -> ir.IR:
    vhosts = tuple(ir.VirtualHost(d, (d,), routes) for d, routes in hosts.items())
    http = ir.HTTPConfig(config or f"rc-{port}", vhosts, misdirected_421=misdirected)
    chain = ir.FilterChain("default/gw/http", http=http)
    listener = ir.Listener(f"{ADDRESS}:{port}/tcp", ADDRESS, port, filter_chains=(chain,))
    return ir.IR(listeners=(listener,), clusters=(ir.Cluster(SVC, (echo.endpoint(),)),))


def manager(listener: Any) -> hcm.HttpConnectionManager:
    out = hcm.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(out)
    return out


def raw(port: int, target: str, host: str, extra: str = "") -> tuple[int, str, bytes]:
    """(status, Location, body) for one HTTP/1.1 request sent as written."""
    head = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    return raw_request(ADDRESS, port, head)


def test_exact_hostnames_only_are_scoped_one_scope_each(echo: EchoBackend) -> None:
    model = http_ir(1, {"a.example": (route("a", "/"),), "b.example": (route("b", "/"),), "*": ()}, echo)
    out = build(model)
    assert sorted(out.scopes) == ["rc-1/a.example", "rc-1/b.example"]
    assert not out.routes and not out.virtual_hosts
    scope = out.scopes["rc-1/a.example"].message()
    assert [f.string_key for f in scope.key.fragments] == ["rc-1", "a.example"]
    assert scope.route_configuration.virtual_hosts[0].domains == ["a.example"]
    assert manager(out.listeners[f"{ADDRESS}:1/tcp"]).WhichOneof("route_specifier") == "scoped_routes"
    # a catch-all or wildcard route: the whole configuration on VHDS
    for other in ("*", "*.example"):
        out = build(http_ir(1, {"a.example": (route("a", "/"),), other: (route("c", "/"),)}, echo))
        assert not out.scopes and out.routes["rc-1"].HasField("vhds") and "rc-1/a.example" in out.virtual_hosts
        assert manager(out.listeners[f"{ADDRESS}:1/tcp"]).WhichOneof("route_specifier") == "rds"
    # no route at all: VHDS too (Gateways are mostly created before their routes)
    assert not build(http_ir(1, {"a.example": (), "*": ()}, echo)).scopes
    # a route with error pages: VHDS (custom_response's redirect looks the error page's route
    # up in the connection manager's route configuration: tests/integration/test_ingress_error_pages.py)
    pages = ir.ErrorPages((503,), "k", cluster=SVC)
    assert not build(http_ir(1, {"a.example": (route("a", "/", error_pages=pages),)}, echo)).scopes


def test_hosts_served_by_scope(plane: Plane, echo: EchoBackend) -> None:
    port = free_port()
    hosts = {"api.example": (route("api", "/api"),), "www.example": (route("www", "/"),), "*": ()}
    plane.push(http_ir(port, hosts, echo))
    assert json.loads(request(port, "/api/x", host="api.example")[2])["path"] == "/api/x"
    assert request(port, "/other", host="api.example")[0] == 404  # the scope's routes only
    status, _, body = request(port, "/p", host=f"www.example:{port}")  # a Host with a port finds its scope
    assert status == 200 and json.loads(body)["headers"]["host"] == f"www.example:{port}"  # sent as it came
    assert raw(port, "/api/x", "api.example.")[0] == 200  # a trailing dot is ignored (strip_trailing_host_dot)
    assert request(port, "/", host="unknown.example")[0] == 404
    assert request(port, "/", host="127.0.0.1")[0] == 404
    assert raw(port, "/", "[::1]:80")[0] == 404
    # an upper-case Host is sent to its scope's lower-case name (the route's filters were
    # not created for it: Envoy creates them for the route found before any filter runs)
    assert raw(port, "/api/x?q=1", f"API.Example:{port}")[:2] == (308, f"http://api.example:{port}/api/x?q=1")
    assert raw(port, "/", "NOPE.example")[0] == 404


def test_a_client_cannot_choose_another_connection_managers_scope(plane: Plane, echo: EchoBackend) -> None:
    """Every scoped-RDS subscription of an Envoy is given every scope: the key's first
    fragment, written by the connection manager over the client's, keeps each to its own."""
    port, other = free_port(), free_port()
    first = http_ir(port, {"one.example": (route("one", "/"),)}, echo, config="first")
    second = http_ir(other, {"two.example": (route("two", "/"),)}, echo, config="second")
    plane.push(ir.IR(listeners=first.listeners + second.listeners, clusters=first.clusters))
    assert request(port, "/", host="one.example")[0] == 200
    assert request(port, "/", host="two.example")[0] == 404
    assert request(port, "/", host="two.example", headers={SCOPE_HEADER: "second"})[0] == 404
    assert request(other, "/", host="two.example")[0] == 200
    status, _, body = request(port, "/", host="one.example", headers={SCOPE_HEADER: "second"})
    assert status == 200 and SCOPE_HEADER not in json.loads(body)["headers"]  # never to a backend


def test_misdirected_hosts_answer_421(plane: Plane, echo: EchoBackend) -> None:
    port = free_port()
    misdirected = ir.Route("misdirected/b", ir.RouteMatch(), ir.RouteAction(direct_status=421))
    plane.push(http_ir(port, {"a.example": (route("a", "/"),), "b.example": (misdirected,)}, echo,
                       misdirected=True))
    assert request(port, "/", host="a.example")[0] == 200
    assert request(port, "/", host="b.example")[0] == 421  # another listener's hostname
    assert request(port, "/", host="c.example")[0] == 421  # another listener serves every other Host


def test_a_route_enabled_filter_runs_on_a_scoped_route(plane: Plane, echo: EchoBackend) -> None:
    """Portico's per-route filters (CORS here; SecurityPolicy's the same way) are disabled
    in the connection manager and enabled by the route: Envoy creates them for a request
    its scope serves."""
    port = free_port()
    cors = ir.CORS(allow_origins=("https://app.example",), allow_methods=("PUT",), max_age_s=60)
    plane.push(http_ir(port, {"api.example": (route("cors", "/", cors=cors),)}, echo))
    preflight = {"origin": "https://app.example", "access-control-request-method": "PUT"}
    status, headers, _ = request(port, "/x", host="api.example", method="OPTIONS", headers=preflight)
    assert status == 200 and headers["access-control-allow-origin"] == "https://app.example"
    status, headers, _ = request(port, "/x", host="API.example", method="OPTIONS", headers=preflight)
    assert status == 308 and headers["location"] == "http://api.example/x"


def test_one_hostnames_change_sends_one_scope(plane: Plane, echo: EchoBackend,
                                              caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    hosts = {f"h{i}.example": (route(f"h{i}", "/"),) for i in range(50)}
    plane.push(http_ir(port, hosts, echo))
    caplog.set_level(logging.DEBUG, logger="portico.xds")
    caplog.clear()
    hosts["h7.example"] = (route("h7", "/"), route("h7-api", "/api"))
    plane.push(http_ir(port, hosts, echo))
    pushes = [r.getMessage() for r in caplog.records if " push v" in r.getMessage()]
    scopes = [m for m in pushes if "ScopedRouteConfiguration" in m]
    assert len(scopes) == 1 and re.search(r"ScopedRouteConfiguration \+1 -0$", scopes[0]), pushes
    assert not [m for m in pushes if re.search(r"(Listener|RouteConfiguration|VirtualHost) \+", m)
                and "Scoped" not in m], pushes
    assert request(port, "/api", host="h7.example")[0] == 200
    caplog.clear()
    del hosts["h9.example"]
    plane.push(http_ir(port, hosts, echo))
    pushes = [r.getMessage() for r in caplog.records if "ScopedRouteConfiguration" in r.getMessage()]
    assert any(re.search(r"\+0 -1$", m) for m in pushes), pushes
    assert request(port, "/", host="h9.example")[0] == 404


def test_a_catch_all_route_moves_the_connection_manager_to_vhds_and_back(plane: Plane, echo: EchoBackend) -> None:
    port = free_port()
    exact = {"a.example": (route("a", "/a"),)}
    plane.push(http_ir(port, {**exact, "*": ()}, echo))
    model = http_ir(port, {**exact, "*": (route("any", "/any"),)}, echo)
    assert build(model).virtual_hosts and not build(model).scopes
    plane.push(model)
    assert request(port, "/a", host="a.example")[0] == 200
    assert request(port, "/any", host="whatever.example")[0] == 200
    assert request(port, "/a", host="A.EXAMPLE")[0] == 200  # (VHDS: domains match any case)
    plane.push(http_ir(port, {**exact, "*": ()}, echo))
    assert request(port, "/a", host="a.example")[0] == 200
    assert request(port, "/any", host="whatever.example")[0] == 404
    assert {ROUTE, VHOST, SCOPED} <= set(build(model).wire())


def kept_connection_served(port: int, path: str, host: str, change: Callable[[], None]) -> None:
    """A kept-alive connection is answered 200 before `change` and, on the same socket (the
    connection manager `change` replaces drains with it), 200 after."""
    conn = http.client.HTTPConnection(ADDRESS, port, timeout=5)
    try:
        conn.request("GET", path, headers={"host": host})
        first = conn.getresponse()
        first.read()
        assert first.status == 200
        kept = conn.sock
        assert kept is not None  # (kept alive)
        change()
        conn.request("GET", path, headers={"host": host})
        assert conn.sock is kept  # the drained connection manager's connection
        again = conn.getresponse()
        again.read()
        assert again.status == 200
    finally:
        conn.close()


def test_a_draining_scoped_connection_manager_keeps_its_scopes(plane: Plane, echo: EchoBackend) -> None:
    """Scoped -> VHDS changes the listener; the old connection manager drains with its
    scopes: a kept-alive connection's next request is still served. They stay while the
    configuration is on VHDS and go once it is scoped again (replaced) or not served."""
    port = free_port()
    exact = {"a.example": (route("a", "/a"),), "b.example": (route("b", "/b"),)}
    plane.push(http_ir(port, {**exact, "*": ()}, echo))
    kept_connection_served(port, "/a", "a.example",  # now VHDS:
                           lambda: plane.push(http_ir(port, {**exact, "*": (route("any", "/any"),)}, echo)))
    scopes = plane.xds._groups[plane.group].snapshot.resources[SCOPED]
    assert {f"rc-{port}/a.example", f"rc-{port}/b.example"} <= set(scopes)
    plane.push(http_ir(port, {"a.example": (route("a", "/a"),), "*": ()}, echo))  # scoped again, b gone
    scopes = plane.xds._groups[plane.group].snapshot.resources[SCOPED]
    assert f"rc-{port}/a.example" in scopes and f"rc-{port}/b.example" not in scopes
    assert request(port, "/b", host="b.example")[0] == 404
    plane.push(http_ir(port, {**exact, "*": (route("any", "/any"),)}, echo))
    plane.push(http_ir(free_port(), {"c.example": (route("c", "/"),)}, echo))  # the listener gone
    assert not [n for n in plane.xds._groups[plane.group].snapshot.resources[SCOPED] if n.startswith(f"rc-{port}/")]


def test_a_draining_vhds_connection_manager_keeps_its_virtual_hosts(plane: Plane, echo: EchoBackend) -> None:
    """VHDS -> scoped (the last catch-all route removed) changes the listener; the old
    connection manager drains with its route configuration and virtual hosts: a kept-alive
    connection's next request is still served. They are held, out of the new version, for
    as long as Envoy subscribes to that route configuration (until the drained listener is
    destroyed), and never hold back "version applied"."""
    port = free_port()
    exact = {"a.example": (route("a", "/a"),)}
    plane.push(http_ir(port, {**exact, "*": (route("any", "/any"),)}, echo))  # VHDS
    config = f"rc-{port}"
    # now scoped: "version applied" is not held back
    kept_connection_served(port, "/a", "a.example", lambda: plane.push(http_ir(port, {**exact, "*": ()}, echo)))
    assert request(port, "/a", host="a.example")[0] == 200  # a new connection: the scoped one
    assert request(port, "/any", host="whatever.example")[0] == 404
    snapshot = plane.xds._groups[plane.group].snapshot
    assert config not in snapshot.resources[ROUTE] and not [n for n in snapshot.resources[VHOST]
                                                            if n.startswith(f"{config}/")]
    # held for the draining listener, out of the version: its route configuration and virtual hosts in Envoy
    assert f"{config}/a.example" in held(plane, config)
    assert "a.example" in dynamic_route_configs(plane)[config]
    plane.push(http_ir(port, {"a.example": (route("a", "/a"), route("b", "/b"))}, echo))  # applied meanwhile
    assert request(port, "/b", host="a.example")[0] == 200
    # Once the drained listener is destroyed (Envoy's drain time), Envoy no longer
    # subscribes to the route configuration: nothing of it is held, on the server or in Envoy.
    deadline = time.monotonic() + 30
    while held(plane, config) or config in dynamic_route_configs(plane):
        assert time.monotonic() < deadline, (held(plane, config), dynamic_route_configs(plane))
        time.sleep(0.2)
    plane.push(http_ir(port, {"a.example": (route("a", "/a"), route("c", "/c"))}, echo))
    assert request(port, "/c", host="a.example")[0] == 200


def held(plane: Plane, config: str) -> list[str]:
    """What the server still serves of `config` to the group's Envoys beside the newest version."""
    async def look() -> list[str]:
        return [n for c in plane.xds._connections for n in c.draining_virtual_hosts() if n.startswith(f"{config}/")]
    out: list[str] = plane.run(look())
    return out


def dynamic_route_configs(plane: Plane) -> dict[str, list[str]]:
    """Envoy's route configurations from RDS: name -> the domains of its virtual hosts (VHDS's too)."""
    status, body = plane.envoy.admin_get("/config_dump?resource=dynamic_route_configs")
    assert status == 200
    return {c["route_config"]["name"]: [d for vh in c["route_config"].get("virtual_hosts", []) for d in vh["domains"]]
            for c in json.loads(body).get("configs", [])}


def test_a_removed_vhds_listener_drains_with_its_virtual_hosts(plane: Plane, echo: EchoBackend) -> None:
    """A listener removed entirely drains too: its route configuration's virtual hosts stay
    while Envoy subscribes to it, so a kept-alive connection's next request is served."""
    port = free_port()
    plane.push(http_ir(port, {"a.example": (route("a", "/a"),), "*": (route("any", "/any"),)}, echo))  # VHDS
    kept_connection_served(port, "/any", "whatever.example",  # the listener gone:
                           lambda: plane.push(http_ir(free_port(), {"c.example": (route("c", "/"),)}, echo)))
    deadline = time.monotonic() + 30
    while held(plane, f"rc-{port}"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
