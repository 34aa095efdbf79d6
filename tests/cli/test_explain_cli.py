"""`portico explain -f`: the answer, why, the backends, or the nearest routes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MANIFESTS = Path(__file__).resolve().parents[1] / "translator" / "testdata" / "simple-route" / "in.yaml"


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portico.cli", "explain", "-f", str(MANIFESTS), *args],
                          capture_output=True, text=True)


def test_a_matching_request_names_route_rule_and_backends() -> None:
    out = explain("--port", "80", "--host", "web.example.com", "--path", "/app/exact")
    assert out.returncode == 0, out.stderr
    assert "answer: forwarded" in out.stdout
    assert "route httproute/default/web/rule/1/match/0" in out.stdout  # Exact wins over the prefix
    assert "backend: default/api/80 weight 1/1, 1 ready endpoint(s)" in out.stdout and "127.0.0.21:9000" in out.stdout
    by_name = explain("--listener", "http", "--host", "web.example.com", "--path", "/app/exact", "--query", "a=1")
    assert "route httproute/default/web/rule/1/match/0" in by_name.stdout


def test_no_match_lists_the_nearest_routes() -> None:
    out = explain("--port", "80", "--host", "web.example.com", "--path", "/other")
    assert "answer: 404 (no route)" in out.stdout and "path is not under /app" in out.stdout
    wrong_host = explain("--port", "80", "--host", "nowhere.test")
    assert "no route is attached for host 'nowhere.test'" in wrong_host.stdout
    no_port = explain("--port", "81", "--host", "web.example.com")
    assert no_port.returncode == 1 and "no Gateway listens on port 81" in no_port.stderr


def test_against_a_running_instance() -> None:
    from test_admin import running

    from portico.admin import AdminServer
    from portico.standalone import offline

    translated = offline([str(MANIFESTS)])
    server = AdminServer(translated.store, diagnostics=translated.diagnostics)
    with running(server) as base:
        args = ["--admin-address", base.removeprefix("http://"), "--port", "80", "--host", "web.example.com"]
        out = subprocess.run([sys.executable, "-m", "portico.cli", "explain", *args, "--path", "/app/x",
                              "-H", "x-test:1"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "route httproute/default/web/rule/0/match/0" in out.stdout
        missing = subprocess.run([sys.executable, "-m", "portico.cli", "explain", *args[:2], "--port", "81",
                                  "--host", "x"], capture_output=True, text=True)
        assert missing.returncode == 1 and "no Gateway listens on port 81" in missing.stderr


def test_a_backend_share_route_says_it_takes_a_share_of_requests() -> None:
    from portico import ir
    from portico.explain import Request, explain

    share = ir.Route("httproute/default/r/rule/0/match/0/backend/0",
                     ir.RouteMatch(fraction_per_million=250_000), ir.RouteAction(redirect=ir.Redirect(hostname="x")))
    rest = ir.Route("httproute/default/r/rule/0/match/0/backend/1", ir.RouteMatch(), ir.RouteAction())
    chain = ir.FilterChain("default/gw/http", http=ir.HTTPConfig("rc", (ir.VirtualHost("vh", ("*",), (share, rest)),)))
    model = ir.IR(listeners=(ir.Listener("127.0.0.1:80/tcp", "127.0.0.1", 80, filter_chains=(chain,)),))
    answer = explain(model, Request(port=80, host="a.example.com", path="/"))
    assert answer.route == share.name
    assert any("25%" in why and "the next routes take the rest" in why for why in answer.why)


def test_a_backend_without_endpoints_names_its_fallback() -> None:
    """A BackendTrafficPolicy fallback: the rule's requests go there while its backend has no
    ready endpoint (not a 503)."""
    fallback = Path(__file__).resolve().parents[1] / "translator" / "testdata" / "traffic-fallback" / "in.yaml"
    out = subprocess.run([sys.executable, "-m", "portico.cli", "explain", "-f", str(fallback), "--port", "80",
                          "--host", "shop.example.com", "--path", "/app/x"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "0 ready endpoint(s) (none ready: the fallback)" in out.stdout
    assert "  fallback: Service default/errors/80 while none is healthy, 1 ready endpoint(s): 10.0.0.21:8080" \
        in out.stdout
    plain = subprocess.run([sys.executable, "-m", "portico.cli", "explain", "-f", str(fallback), "--port", "80",
                            "--host", "plain.example.com", "--path", "/"], capture_output=True, text=True)
    assert "backend: default/app/8080 weight 1/1, 0 ready endpoint(s) (none ready: 503)" in plain.stdout
    assert "fallback" not in plain.stdout
