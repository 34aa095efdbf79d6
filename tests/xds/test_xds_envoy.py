"""Integration: XdsServer + the real Envoy from the wheel, real requests."""

from __future__ import annotations

import dataclasses
import json
import socket
import socketserver
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import xds_cases
from xds_harness import EchoBackend, Plane, TCPEcho, UDPEcho, free_port, request

from portico import ir
from portico.translator import translate

sys.path.insert(0, str(Path(__file__).parents[1] / "translator"))
from test_golden import TESTDATA as GOLDEN_CASES  # noqa: E402
from test_golden import load_snapshot  # noqa: E402

ADDRESS = "127.0.0.1"


def cluster(name: str, *backends: EchoBackend) -> ir.Cluster:
    return ir.Cluster(name, tuple(b.endpoint() for b in backends))


def route(name: str, prefix: str, *backends: ir.WeightedBackend, **action: object) -> ir.Route:
    return ir.Route(
        name,
        ir.RouteMatch(path=ir.PathMatch("Prefix", prefix)),
        ir.RouteAction(backends=backends, **action),  # type: ignore[arg-type]
    )


def to(cluster_name: str | None, weight: int = 1) -> ir.WeightedBackend:
    return ir.WeightedBackend(cluster_name, weight)


def http_ir(port: int, routes: list[ir.Route], clusters: list[ir.Cluster], domains: tuple[str, ...] = ("*",)) -> ir.IR:
    vh = ir.VirtualHost("vh", domains, tuple(routes))
    chain = ir.FilterChain("default/gw/http", http=ir.HTTPConfig(f"rc-{port}", (vh,)))
    listener = ir.Listener(f"{ADDRESS}:{port}/tcp", ADDRESS, port, filter_chains=(chain,))
    return ir.IR(listeners=(listener,), clusters=tuple(clusters))


def test_route_added_then_nack_keeps_serving(plane: Plane, echo: EchoBackend) -> None:
    port = free_port()
    svc = cluster("httproute/default/echo/80", echo)
    plane.push(http_ir(port, [route("a", "/a", to(svc.name))], [svc]))
    before = len(echo.requests)
    status, _, body = request(port, "/a/x")
    assert status == 200 and json.loads(body)["path"] == "/a/x"
    assert len(echo.requests) == before + 1
    assert request(port, "/b")[0] == 404

    plane.push(http_ir(port, [route("a", "/a", to(svc.name)), route("b", "/b", to(svc.name))], [svc]))
    assert request(port, "/b")[0] == 200

    bad = ir.Route("bad", ir.RouteMatch(path=ir.PathMatch("RegularExpression", "/(unclosed")), ir.RouteAction())
    message = plane.push_nacked(http_ir(port, [route("a", "/a", to(svc.name)), bad], [svc]))
    assert "missing )" in message
    assert request(port, "/b")[0] == 200  # the previous route configuration keeps serving

    # A version that leaves the rejected route table as it was is NACKed too.
    other = cluster("httproute/default/other/80", echo)
    message = plane.push_nacked(http_ir(port, [route("a", "/a", to(svc.name)), bad], [svc, other]))
    assert "missing )" in message

    # A later good version is ACKed again.
    plane.push(http_ir(port, [route("a", "/a", to(svc.name))], [svc]))
    assert request(port, "/b")[0] == 404


def test_virtual_hosts_added_changed_and_removed_by_vhds(plane: Plane, echo: EchoBackend) -> None:
    """Each virtual host is a VHDS resource: a host added, one changed and one removed reach
    Envoy while the route configuration itself stays the same; a Host no longer served
    answers 404 (the closing virtual host), a malformed one 400."""
    port = free_port()
    svc = cluster("httproute/default/echo/80", echo)

    def model(*hosts: tuple[str, str]) -> ir.IR:
        vhosts = tuple(ir.VirtualHost(h, (h,), (route(f"{h}{p}", p, to(svc.name)),)) for h, p in hosts)
        chain = ir.FilterChain("default/gw/http", http=ir.HTTPConfig(f"rc-{port}", vhosts))
        listener = ir.Listener(f"{ADDRESS}:{port}/tcp", ADDRESS, port, filter_chains=(chain,))
        return ir.IR(listeners=(listener,), clusters=(svc,))

    plane.push(model(("a.example.com", "/"), ("b.example.com", "/")))
    assert request(port, "/", "a.example.com")[0] == 200 and request(port, "/", "b.example.com")[0] == 200
    plane.push(model(("a.example.com", "/"), ("b.example.com", "/b"), ("c.example.com", "/")))
    assert request(port, "/", "b.example.com")[0] == 404 and request(port, "/b/x", "b.example.com")[0] == 200
    assert request(port, "/", "c.example.com")[0] == 200
    plane.push(model(("c.example.com", "/")))
    assert [request(port, "/", h)[0] for h in ("a.example.com", "b.example.com", "c.example.com")] == [404, 404, 200]
    assert request(port, "/", "user@a.example.com")[0] == 400


@pytest.mark.parametrize("case", sorted(xds_cases.CASES))
def test_golden_cases_accepted_by_envoy(plane: Plane, case: str) -> None:
    plane.push(xds_cases.CASES[case]())


def test_invalid_backend_share_answers_500(plane: Plane, echo: EchoBackend) -> None:
    port = free_port()
    svc = cluster("httproute/default/echo/80", echo)
    empty = ir.Cluster("httproute/default/empty/80", ())
    routes = [
        route("mixed", "/mixed", to(svc.name), to(None)),
        route("invalid", "/invalid", to(None)),
        route("empty", "/empty", to(empty.name)),
    ]
    plane.push(http_ir(port, routes, [svc, empty]))
    statuses = {request(port, "/mixed")[0] for _ in range(60)}
    assert statuses == {200, 500}
    assert request(port, "/invalid")[0] == 500
    assert request(port, "/empty")[0] == 503  # a Service with no endpoints: 503


def test_header_modifiers(plane: Plane, echo: EchoBackend) -> None:
    port = free_port()
    svc = cluster("httproute/default/echo/80", echo)
    backend = ir.WeightedBackend(
        svc.name,
        1,
        request_headers=ir.HeaderModifier(set=(ir.HeaderValue("x-backend", "b"),)),
        response_headers=ir.HeaderModifier(set=(ir.HeaderValue("x-backend-resp", "r"),)),
    )
    r = route(
        "mods",
        "/",
        backend,
        request_headers=ir.HeaderModifier(
            set=(ir.HeaderValue("x-set", "new"),), add=(ir.HeaderValue("x-add", "more"),), remove=("x-remove",)
        ),
        response_headers=ir.HeaderModifier(add=(ir.HeaderValue("x-resp", "1"),)),
    )
    plane.push(http_ir(port, [r], [svc]))
    status, headers, body = request(port, "/", headers={"x-set": "old", "x-add": "first", "x-remove": "gone"})
    seen = json.loads(body)["headers"]
    assert status == 200
    assert seen["x-set"] == "new" and seen["x-backend"] == "b" and "x-remove" not in seen
    assert "first" in seen["x-add"] and "more" in seen["x-add"]
    assert headers["x-resp"] == "1" and headers["x-backend-resp"] == "r"


def test_header_values_are_literal_and_host_set_rewrites(plane: Plane, echo: EchoBackend) -> None:
    """Issue 31: Envoy reads header values as substitution formats. `50%`, `a%20b` and
    `%FOO(%` were NACKed (freezing every later change of the route table) and `%START_TIME%`
    was expanded; a `set` of Host was NACKed too. All are now sent as written, on the rule
    and on a backend, request and response; setting Host rewrites the authority."""
    port = free_port()
    svc = cluster("httproute/default/echo/80", echo)
    values = {"x-pct": "50%", "x-enc": "a%20b", "x-odd": "%FOO(%", "x-time": "%START_TIME%"}
    sets = tuple(ir.HeaderValue(k, v) for k, v in values.items())
    backend = ir.WeightedBackend(svc.name, 1, request_headers=ir.HeaderModifier(
        set=(ir.HeaderValue("x-backend", "100%"), ir.HeaderValue("Host", "backend.example"))))
    rule_host = route("host", "/host", to(svc.name),
                      request_headers=ir.HeaderModifier(set=(ir.HeaderValue("Host", "rewritten.example"),)))
    r = route("pct", "/pct", backend, request_headers=ir.HeaderModifier(set=sets, add=(ir.HeaderValue("x-add", "%%"),)),
              response_headers=ir.HeaderModifier(set=(ir.HeaderValue("x-resp", "%REQ(host)%"),)))
    plane.push(http_ir(port, [r, rule_host], [svc]))
    status, headers, body = request(port, "/pct")
    seen = json.loads(body)["headers"]
    assert status == 200
    assert {k: seen[k] for k in values} == values
    assert seen["x-add"] == "%%" and seen["x-backend"] == "100%" and seen["host"] == "backend.example"
    assert headers["x-resp"] == "%REQ(host)%"
    status, _, body = request(port, "/host")
    assert status == 200 and json.loads(body)["headers"]["host"] == "rewritten.example"


@pytest.mark.parametrize(
    ("prefix", "replacement", "path", "expected"),
    [
        ("/foo", "/xyz", "/foo/bar", "/xyz/bar"),
        ("/foo", "/xyz/", "/foo/bar", "/xyz/bar"),
        ("/foo/", "/xyz", "/foo/bar", "/xyz/bar"),
        ("/foo", "/xyz", "/foo", "/xyz"),
        ("/foo", "/xyz", "/foo/", "/xyz/"),
        ("/foo", "/", "/foo/bar", "/bar"),
        ("/foo", "/", "/foo", "/"),
        ("/foo", "/", "/foo/", "/"),
        ("/foo", "/xyz", "/foo/bar?q=1", "/xyz/bar?q=1"),
        ("/", "/xyz", "/bar", "/xyz/bar"),
    ],
)
def test_replace_prefix_match(
    plane: Plane, echo: EchoBackend, prefix: str, replacement: str, path: str, expected: str
) -> None:
    """Gateway API ReplacePrefixMatch table (HTTPPathModifier)."""
    port = free_port()
    svc = cluster("httproute/default/echo/80", echo)
    r = route("rw", prefix, to(svc.name), rewrite=ir.URLRewrite(path_prefix=replacement))
    plane.push(http_ir(port, [r], [svc]))
    status, _, body = request(port, path)
    assert status == 200 and json.loads(body)["path"] == expected


def test_rewrite_full_path_and_host(plane: Plane, echo: EchoBackend) -> None:
    port = free_port()
    svc = cluster("httproute/default/echo/80", echo)
    r = route("rw", "/", to(svc.name), rewrite=ir.URLRewrite(hostname="rewritten.example", path_full="/full"))
    plane.push(http_ir(port, [r], [svc]))
    _, _, body = request(port, "/some/path?x=1")
    seen = json.loads(body)
    assert seen["path"] == "/full?x=1" and seen["headers"]["host"] == "rewritten.example"


def test_redirects(plane: Plane) -> None:
    port = free_port()
    routes = [
        ir.Route(
            "https",
            ir.RouteMatch(path=ir.PathMatch("Prefix", "/secure")),
            ir.RouteAction(redirect=ir.Redirect(scheme="https", strip_port=True, status_code=301)),
        ),
        ir.Route(
            "prefix",
            ir.RouteMatch(path=ir.PathMatch("Prefix", "/old")),
            ir.RouteAction(redirect=ir.Redirect(hostname="new.example", port=8080, path_prefix="/new")),
        ),
    ]
    plane.push(http_ir(port, routes, []))
    status, headers, _ = request(port, "/secure/a", host="example.com")
    assert (status, headers["location"]) == (301, "https://example.com/secure/a")
    # A Host with a port keeps it (the translator adds a twin route for that case).
    status, headers, _ = request(port, "/secure/a", host=f"example.com:{port}")
    assert (status, headers["location"]) == (301, f"https://example.com:{port}/secure/a")
    status, headers, _ = request(port, "/old/page?q=1")
    assert (status, headers["location"]) == (302, "http://new.example:8080/new/page?q=1")


def test_https_sni_and_misdirected(plane: Plane, echo: EchoBackend) -> None:
    port = free_port()
    svc = cluster("httproute/default/echo/80", echo)
    cert = ir.TLSCertificate("default/cert", xds_cases.pem("server.pem"), xds_cases.pem("server.key"))
    vh = ir.VirtualHost("vh", ("example.com",), (route("all", "/", to(svc.name)),))
    chain = ir.FilterChain(
        "default/gw/https",
        server_names=("example.com",),
        tls=ir.DownstreamTLS((cert,), alpn=("http/1.1",)),
        http=ir.HTTPConfig(f"rc-{port}", (vh,), misdirected_421=True),
    )
    listener = ir.Listener(f"{ADDRESS}:{port}/tcp", ADDRESS, port, filter_chains=(chain,))
    plane.push(ir.IR(listeners=(listener,), clusters=(svc,)))
    ctx = ssl.create_default_context(cafile=str(xds_cases.TESTDATA / "ca.pem"))

    def get_sni(host: str) -> int:
        raw = socket.create_connection((ADDRESS, port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="example.com") as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
        return int(data.split(b" ", 2)[1])

    assert get_sni("example.com") == 200
    assert get_sni("other.example.com") == 421


def test_tcp_proxy(plane: Plane) -> None:
    backend = TCPEcho("tcp")
    try:
        port = free_port()
        c = ir.Cluster("tcproute/default/echo/9000", (ir.Endpoint(ADDRESS, backend.port),), protocol="tcp")
        chain = ir.FilterChain("default/gw/tcp", tcp=ir.TCPConfig((to(c.name),)))
        listener = ir.Listener(f"{ADDRESS}:{port}/tcp", ADDRESS, port, filter_chains=(chain,))
        plane.push(ir.IR(listeners=(listener,), clusters=(c,)))
        with socket.create_connection((ADDRESS, port), timeout=10) as s:
            s.sendall(b"ping")
            assert s.recv(100) == b"tcp:ping"
    finally:
        backend.close()


def test_udp_proxy(plane: Plane) -> None:
    low, high = UDPEcho("low"), UDPEcho("high")
    try:
        port = free_port(kind=socket.SOCK_DGRAM)
        clusters = (
            ir.Cluster("udproute/default/low/53", (ir.Endpoint(ADDRESS, low.port),), protocol="udp"),
            ir.Cluster("udproute/default/high/53", (ir.Endpoint(ADDRESS, high.port),), protocol="udp"),
        )
        listener = ir.Listener(
            f"{ADDRESS}:{port}/udp",
            ADDRESS,
            port,
            transport="udp",
            udp_backends=(to(clusters[0].name, 1), to(clusters[1].name, 5)),
        )
        plane.push(ir.IR(listeners=(listener,), clusters=clusters))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            for _ in range(20):  # the listener may take a moment to bind after the ACK
                s.sendto(b"hi", (ADDRESS, port))
                try:
                    assert s.recv(100) == b"high:hi"
                    break
                except TimeoutError:
                    continue
            else:
                pytest.fail("no UDP answer through Envoy")
    finally:
        low.close()
        high.close()


def test_no_errors_while_backends_change(plane: Plane, echo: EchoBackend, echo2: EchoBackend) -> None:
    """ARCHITECTURE "No errors on change": clusters come before the routes using them and
    leave after; a route switching between fresh clusters never answers 5xx."""
    port = free_port()
    stop = threading.Event()
    failures: list[int] = []
    count = [0]

    def hammer() -> None:
        while not stop.is_set():
            status = request(port, "/svc")[0]
            count[0] += 1
            if status != 200:
                failures.append(status)

    def version(i: int) -> ir.IR:
        c = cluster(f"httproute/default/svc-{i}/80", echo if i % 2 else echo2)
        return http_ir(port, [route("svc", "/svc", to(c.name))], [c])

    plane.push(version(0))
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 12):
            plane.push(version(i))
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert count[0] > 50
    assert failures == []


def test_rejected_cluster_in_a_batch_then_fixed(plane: Plane, echo: EchoBackend) -> None:
    """A NACKed CDS batch: the good clusters still serve, the bad one is pinpointed, and
    fixing it gets the next version ACKed."""
    port = free_port()
    good = cluster("httproute/default/good/80", echo)
    bad = ir.Cluster("httproute/default/bad/443", (), tls=ir.UpstreamTLS("bad.example", ca_pem="not a certificate"))
    routes = [route("good", "/good", to(good.name)), route("bad", "/bad", to(bad.name))]
    message = plane.push_nacked(http_ir(port, routes, [good, bad]))
    assert "httproute/default/bad/443" in message or "certificate" in message.lower()
    time.sleep(0.5)  # the rest of the version is still rolled out
    assert request(port, "/good")[0] == 200
    fixed = ir.Cluster(bad.name, (), tls=ir.UpstreamTLS("bad.example", ca_pem=xds_cases.pem("ca.pem")))
    plane.push(http_ir(port, routes, [good, fixed]))
    assert request(port, "/bad")[0] == 503  # no endpoints


def test_cluster_changed_in_place_under_load(plane: Plane, echo: EchoBackend) -> None:
    """A cluster modified with the same endpoints re-warms in Envoy (EDS cache): no errors."""
    port = free_port()
    stop = threading.Event()
    failures: list[int] = []

    def hammer() -> None:
        while not stop.is_set():
            status = request(port, "/svc")[0]
            if status != 200:
                failures.append(status)

    def version(i: int) -> ir.IR:
        c = ir.Cluster(
            "httproute/default/inplace/80",
            (echo.endpoint(),),
            lb_policy="round_robin" if i % 2 else "least_request",
            connect_timeout_ms=1000 + i,
        )
        return http_ir(port, [route("svc", "/svc", to(c.name))], [c])

    plane.push(version(0))
    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 8):
            plane.push(version(i), timeout=10)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []


def test_grpc_over_h2c_both_sides(plane: Plane) -> None:
    """Plaintext listener with HTTP/2 prior knowledge (codec AUTO) to an h2c cluster, grpc match."""
    import grpc

    def echo_handler(request: bytes, context: grpc.ServicerContext) -> bytes:
        return b"echo:" + request

    server = grpc.server(ThreadPoolExecutor(2))
    handler = grpc.unary_unary_rpc_method_handler(echo_handler)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {"Echo": handler}),))
    backend_port = server.add_insecure_port(f"{ADDRESS}:0")
    server.start()
    try:
        port = free_port()
        c = ir.Cluster("grpcroute/default/echo/50051", (ir.Endpoint(ADDRESS, backend_port),), protocol="h2c")
        r = ir.Route("grpc", ir.RouteMatch(grpc=True), ir.RouteAction(backends=(to(c.name),)))
        plane.push(http_ir(port, [r], [c]))
        with grpc.insecure_channel(f"{ADDRESS}:{port}") as channel:
            call = channel.unary_unary("/test.Echo/Echo")
            assert call(b"hi", timeout=10) == b"echo:hi"
        assert request(port, "/test.Echo/Echo", method="POST")[0] == 404  # not application/grpc
    finally:
        server.stop(None)


def test_websocket_upgrade(plane: Plane) -> None:
    class Upgrade(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data = b""
            while b"\r\n\r\n" not in data:
                data += self.request.recv(4096)
            self.request.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n"
            )
            while chunk := self.request.recv(4096):
                self.request.sendall(chunk)

    backend = socketserver.ThreadingTCPServer((ADDRESS, 0), Upgrade)
    backend.daemon_threads = True
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    try:
        port = free_port()
        c = ir.Cluster("httproute/default/ws/80", (ir.Endpoint(ADDRESS, backend.server_address[1]),), protocol="ws")
        plane.push(http_ir(port, [route("ws", "/ws", to(c.name), websocket=True)], [c]))
        with socket.create_connection((ADDRESS, port), timeout=10) as s:
            s.sendall(
                b"GET /ws HTTP/1.1\r\nhost: example.com\r\nconnection: Upgrade\r\nupgrade: websocket\r\n"
                b"sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            assert head.startswith(b"HTTP/1.1 101")
            s.sendall(b"frame")
            assert s.recv(100) == b"frame"
    finally:
        backend.shutdown()
        backend.server_close()


def test_cors_session_and_mirror(plane: Plane, echo: EchoBackend, echo2: EchoBackend) -> None:
    port = free_port()
    svc, mirror = cluster("httproute/default/echo/80", echo), cluster("httproute/default/echo2/80", echo2)
    cors = ir.CORS(allow_origins=("https://*.example.org",), allow_methods=("GET", "PUT"), max_age_s=60)
    routes = [
        route("cors", "/cors", to(svc.name), cors=cors),
        route("sticky", "/sticky", to(svc.name), session_persistence=ir.SessionPersistence("Cookie", "sticky")),
        route("mirror", "/mirror", to(svc.name), mirrors=(ir.Mirror(mirror.name),)),
    ]
    plane.push(http_ir(port, routes, [svc, mirror]))
    preflight = {"origin": "https://a.b.example.org", "access-control-request-method": "PUT"}
    status, headers, _ = request(port, "/cors", method="OPTIONS", headers=preflight)
    assert status == 200 and headers["access-control-allow-origin"] == "https://a.b.example.org"
    assert "PUT" in headers["access-control-allow-methods"]
    _, headers, _ = request(port, "/cors", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in headers

    _, headers, _ = request(port, "/sticky")
    assert headers["set-cookie"].startswith("sticky=")

    before = len(echo2.requests)
    assert request(port, "/mirror/x")[0] == 200
    deadline = time.monotonic() + 5
    while len(echo2.requests) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert echo2.requests[-1]["path"] == "/mirror/x"


def test_mutual_tls_required(plane: Plane, echo: EchoBackend) -> None:
    port = free_port()
    svc = cluster("httproute/default/echo/80", echo)
    cert = ir.TLSCertificate("default/cert", xds_cases.pem("server.pem"), xds_cases.pem("server.key"))
    vh = ir.VirtualHost("vh", ("*",), (route("all", "/", to(svc.name)),))
    chain = ir.FilterChain(
        "default/gw/mtls",
        tls=ir.DownstreamTLS((cert,), client_validation=ir.ClientValidation(xds_cases.pem("ca.pem")), alpn=()),
        http=ir.HTTPConfig(f"rc-{port}", (vh,)),
    )
    plane.push(
        ir.IR(listeners=(ir.Listener(f"{ADDRESS}:{port}/tcp", ADDRESS, port, filter_chains=(chain,)),), clusters=(svc,))
    )

    def get(with_cert: bool) -> bytes:
        ctx = ssl.create_default_context(cafile=str(xds_cases.TESTDATA / "ca.pem"))
        if with_cert:
            ctx.load_cert_chain(xds_cases.TESTDATA / "client.pem", xds_cases.TESTDATA / "client.key")
        with socket.create_connection((ADDRESS, port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="example.com") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
                return data

    assert get(True).startswith(b"HTTP/1.1 200")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        get(False)


@pytest.mark.parametrize("case", ["route-policies", "traffic-policies", "client-policies"])
def test_policy_golden_cases_accepted_by_envoy(plane: Plane, case: str) -> None:
    """Every policy field of the translator goldens, as Envoy receives it, is ACKed (the
    goldens' ports moved to free ones: the cases use 80 and 443)."""
    out = translate(load_snapshot(GOLDEN_CASES / case / "in.yaml"))
    model = ir.merge(g.xds for g in out.gateways.values())
    listeners = tuple(dataclasses.replace(li, port=free_port()) for li in model.listeners)
    plane.push(dataclasses.replace(model, listeners=listeners))
