"""Path and Host handling a security-sensitive gateway needs, by traffic through real
Envoy (README, "Path and Host handling"): a route that answers /admin with 403 must
not be bypassed by dot segments, encoded dots or slashes, or backslashes; a trailing
dot in Host is the same host; two Host headers or userinfo in Host are rejected (400) on
every virtual host, also behind a "port"."""

from __future__ import annotations

import json
import socket

import pytest
from test_xds_envoy import cluster, http_ir, route, to
from xds_harness import EchoBackend, Plane, free_port, raw_request


def raw(port: int, target: str, *hosts: str) -> tuple[int, str, str]:
    """(status, Location, path the backend saw) for one HTTP/1.1 request sent as written."""
    head = f"GET {target} HTTP/1.1\r\n" + "".join(f"Host: {h}\r\n" for h in hosts) + "Connection: close\r\n\r\n"
    status, location, body = raw_request("127.0.0.1", port, head)
    seen = json.loads(body).get("path", "") if body.startswith(b"{") else ""
    return status, location, seen


@pytest.fixture(scope="module")
def port(plane: Plane, echo: EchoBackend) -> int:
    port = free_port()
    svc = cluster("httproute/default/echo/80", echo)
    routes = [route("admin", "/admin", direct_status=403), route("all", "/", to(svc.name))]
    plane.push(http_ir(port, routes, [svc], domains=("example.com", "*.wild.example.com")))
    return port


@pytest.mark.parametrize(("target", "expected"), [
    ("/x", (200, "", "/x")),
    ("/admin", (403, "", "")),
    ("/x/../admin", (403, "", "")),  # dot segments removed (RFC 3986 5.2.4)
    ("/x/%2e%2e/admin", (403, "", "")),  # encoded dots too
    ("/x\\..\\admin", (403, "", "")),  # backslashes are slashes
    ("/x/%2e%2e%2fadmin", (307, "/admin", "")),  # an encoded slash: redirected to the decoded path
    ("/admin%2fx", (307, "/admin/x", "")),
    ("/x%5c..%5cadmin", (307, "/admin", "")),
])
def test_paths_cannot_bypass_a_route(port: int, target: str, expected: tuple[int, str, str]) -> None:
    assert raw(port, target, "example.com") == expected


@pytest.mark.parametrize(("hosts", "status"), [
    (("example.com.",), 200),  # a trailing dot names the same host
    (("a.wild.example.com.",), 200),
    (("example.com", "evil.example"), 400),  # two Host headers
    (("a.wild.example.com", "evil.example"), 400),  # also where a wildcard would match the joined value
    (("user@example.com",), 400),  # userinfo hides the authority
    (("evil.example",), 404),  # a host no listener serves
    (("evil.example", "other.example"), 400),
    (("a.wild.example.com:80@evil.example",), 400),
])
def test_hosts(port: int, hosts: tuple[str, ...], status: int) -> None:
    assert raw(port, "/x", *hosts)[0] == status


@pytest.fixture(scope="module")
def exact_port(plane: Plane, echo: EchoBackend) -> int:
    """A listener whose only virtual host names one exact host (no wildcard domain)."""
    port = free_port()
    svc = cluster("httproute/default/echo/80", echo)
    plane.push(http_ir(port, [route("all", "/", to(svc.name))], [svc], domains=("internal.example",)))
    return port


@pytest.mark.parametrize(("hosts", "status"), [
    (("internal.example",), 200),
    (("internal.example:8080",), 200),  # the port is ignored
    (("public.example",), 404),
    # issue 23: matching ignores the port by cutting the Host at its last ':' whatever follows,
    # so these were internal.example's (200) where no wildcard domain added the check
    (("internal.example:80@public.example",), 400),
    (("internal.example:1", "public.example"), 400),  # joined "internal.example:1,public.example"
    (("user@internal.example",), 400),
    (("public.example:80@internal.example",), 400),
])
def test_malformed_hosts_are_refused_on_exact_virtual_hosts(exact_port: int, hosts: tuple[str, ...],
                                                             status: int) -> None:
    assert raw(exact_port, "/x", *hosts)[0] == status


def test_a_malformed_host_is_refused_before_any_virtual_host(exact_port: int) -> None:
    """The 400 comes from the connection manager's first filter, which says why, not from a
    route in each virtual host (one check per listener: bench/vhds_cost.py)."""
    head = "GET /x HTTP/1.1\r\nHost: user@internal.example\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", exact_port), timeout=5) as s:
        s.sendall(head.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 ")
    assert data.endswith(b"\r\n\r\ninvalid Host\n")
