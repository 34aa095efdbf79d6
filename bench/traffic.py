"""5. Traffic: wrk through each proxy to one fast static backend, same route.

The backend is nginx (Debian) serving a small static file. wrk (Debian) loads,
at 1, 16 and 64 connections:
  direct      no proxy: the physical limit of this machine and load generator
  portico     `portico run` (its Envoy), an HTTPRoute for the wrk Host header
  envoy       a minimal hand-configured Envoy (static bootstrap: one listener,
              the router filter, one route, one cluster), the same binary
  nginx       nginx as a reverse proxy (upstream keepalive)
  haproxy     HAProxy (http-reuse always)
Each proxy keeps upstream connections alive and runs the same number of
workers (Envoy's default: one per core; nginx worker_processes, HAProxy
nbthread). Runs are interleaved over `rounds` rounds and the median is kept;
ratios are medians of per-round (back-to-back) ratios, and Portico against the
minimal Envoy gets `pairs` more back-to-back pairs per connection count. Besides
requests/s, each run measures the CPU seconds the proxy (with its workers) spent
per request: on a shared machine that moves far less than throughput.
Then an ablation at the highest connection count: the minimal Envoy with each
of Portico's settings added alone (request ids off, its HTTP filters, its
local-reply mapper, its other HCM options, its bootstrap's stats matcher and
overload manager, its cluster settings), all of them, and all of them with one
worker, to show which settings cost or gain throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import manifests as m
from bench import tools
from bench.common import (
    BenchError,
    Client,
    Portico,
    Process,
    Report,
    bin_path,
    children,
    free_port,
    proc_cpu_seconds,
    ratio,
    wait_until,
    workdir,
)

HOST = "traffic.default.bench"
BODY = b"portico bench: a small static body\n" * 3  # 105 bytes
WORKERS = os.cpu_count() or 2
TARGET_RATIO_TO_ENVOY = 0.95


# ---------------------------------------------------------------- servers


def nginx_conf(root: Path, name: str, server: str) -> Path:
    for d in ("tmp", "www"):
        (root / d).mkdir(exist_ok=True)
    conf = root / f"{name}.conf"
    temp = " ".join(f"{t}_temp_path {root}/tmp/{t};" for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf.write_text(f"""
worker_processes {1 if name == 'backend' else WORKERS};
daemon off;
pid {root}/{name}.pid;
error_log {root}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {temp}
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  {server}
}}
""")
    return conf


def start_nginx(root: Path, name: str, server: str, port: int) -> Process:
    path = tools.which("nginx")
    assert path is not None
    conf = nginx_conf(root, name, server)
    proc = Process([path, "-p", str(root), "-c", str(conf), "-e", str(root / f"{name}-error.log")],
                   root / f"{name}.log")
    proc.ready(f"nginx {name}", lambda: _get("127.0.0.1", port) == 200, 20)
    return proc


def start_backend(root: Path) -> tuple[Process, int]:
    port = free_port()
    (root / "www").mkdir(exist_ok=True)
    (root / "www" / "index.html").write_bytes(BODY)
    for path in (root, root / "www", root / "www" / "index.html"):  # nginx workers run as nobody
        path.chmod(0o755)
    server = f"""server {{ listen 127.0.0.1:{port} reuseport backlog=4096; root {root}/www;
      location / {{ index index.html; }} }}"""
    return start_nginx(root, "backend", server, port), port


def start_nginx_proxy(root: Path, backend: int) -> tuple[Process, int]:
    port = free_port()
    server = f"""upstream backend {{ server 127.0.0.1:{backend}; keepalive 256; keepalive_requests 10000000; }}
  server {{ listen 127.0.0.1:{port} backlog=4096;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}"""
    return start_nginx(root, "nginx-proxy", server, port), port


def start_haproxy(root: Path, backend: int) -> tuple[Process, int]:
    port = free_port()
    conf = root / "haproxy.cfg"
    conf.write_text(f"""
global
  nbthread {WORKERS}
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  server s1 127.0.0.1:{backend} maxconn 4096
""")
    path = tools.which("haproxy")
    assert path is not None
    proc = Process([path, "-f", str(conf), "-db"], root / "haproxy.log")
    proc.ready("haproxy", lambda: _get("127.0.0.1", port) == 200, 20)
    return proc, port


# Envoy settings Portico uses that a minimal configuration does not (see envoy_bootstrap)
FEATURES = ("no_request_id", "filters", "filters_disabled", "local_reply", "hcm_options", "bootstrap", "eds_cluster")
PORTICO = frozenset(FEATURES) - {"filters"}  # its CORS and session filters are disabled unless a route enables them
# The ablation: (name, features, workers), each run beside the others in interleaved rounds
VARIANTS: tuple[tuple[str, frozenset[str], int], ...] = (
    ("minimal (Envoy defaults)", frozenset(), WORKERS),
    ("+ request ids off", frozenset({"no_request_id"}), WORKERS),
    ("+ CORS and stateful-session filters, enabled (Portico before)", frozenset({"filters"}), WORKERS),
    ("+ the same filters, disabled unless a route enables them", frozenset({"filters_disabled"}), WORKERS),
    ("+ local-reply mapper", frozenset({"local_reply"}), WORKERS),
    ("+ other HCM options", frozenset({"hcm_options"}), WORKERS),
    ("+ stats matcher and overload manager", frozenset({"bootstrap"}), WORKERS),
    ("+ circuit breakers, per-host vhost", frozenset({"eds_cluster"}), WORKERS),
    ("all of Portico's settings", PORTICO, WORKERS),
    ("all of Portico's settings, 1 worker", PORTICO, 1),
)


def envoy_bootstrap(port: int, backend: int, features: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A static Envoy bootstrap: one listener, one route to one cluster. `features` adds
    Portico's settings: `no_request_id` (generate_request_id off), `filters` (CORS and
    stateful-session HTTP filters before the router), `local_reply` (its local-reply mapper),
    `filters_disabled` (the same filters with `disabled: true`, as Portico has them),
    `hcm_options` (use_remote_address, normalize_path, strip_any_host_port, server header
    passed through, WebSocket upgrade config), `bootstrap` (its stats matcher and overload
    manager), `eds_cluster` (circuit breakers raised, a per-host vhost)."""
    from portico.infra.envoy import bootstrap as portico_bootstrap

    router = {"name": "envoy.filters.http.router",
              "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    filters: list[dict[str, Any]] = []
    if "filters" in features:
        filters = [
            {"name": "envoy.filters.http.cors",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            {"name": "envoy.filters.http.stateful_session", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession"}},
        ]
    if "filters_disabled" in features:  # present, but off unless a route enables them
        filters = [{**f, "disabled": True} for f in filters] or [
            {"name": "envoy.filters.http.cors", "disabled": True,
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            {"name": "envoy.filters.http.stateful_session", "disabled": True, "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession"}},
        ]
    domains = [HOST] if "eds_cluster" in features else ["*"]
    hcm: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                 "HttpConnectionManager",
        "stat_prefix": "bench", "codec_type": "AUTO",
        "route_config": {"name": "local", "virtual_hosts": [{"name": "b", "domains": domains, "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]},
        "http_filters": [*filters, router],
    }
    if "hcm_options" in features:
        hcm.update({"use_remote_address": True, "normalize_path": True, "merge_slashes": False,
                    "server_header_transformation": "PASS_THROUGH", "strip_any_host_port": True,
                    "upgrade_configs": [{"upgrade_type": "websocket", "enabled": False}]})
    if "no_request_id" in features:
        hcm["generate_request_id"] = False
    if "local_reply" in features:
        hcm["local_reply_config"] = {"mappers": [{
            "filter": {"and_filter": {"filters": [
                {"response_flag_filter": {"flags": ["UH"]}},
                {"header_filter": {"header": {"name": "x-portico-invalid-backend", "present_match": True}}}]}},
            "status_code": 500}]}
    cluster: dict[str, Any] = {
        "name": "backend", "type": "STATIC", "connect_timeout": "10s",
        "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": backend}}}}]}]},
    }
    if "eds_cluster" in features:
        limit = 100_000
        cluster["circuit_breakers"] = {"thresholds": [
            {"max_connections": limit, "max_pending_requests": limit, "max_requests": limit}]}
    out: dict[str, Any] = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{"name": "bench", "address": {"socket_address": {"address": "127.0.0.1",
                                                                            "port_value": port}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": [cluster],
        },
    }
    if "bootstrap" in features:
        ours = portico_bootstrap("127.0.0.1", 1)
        out["stats_config"] = ours["stats_config"]
        out["overload_manager"] = ours["overload_manager"]
    return out


def start_envoy(root: Path, backend: int, features: frozenset[str] = frozenset(),
                name: str = "envoy", workers: int = WORKERS) -> tuple[Process, int]:
    port = free_port()
    conf = root / f"{name}.json"
    conf.write_text(json.dumps(envoy_bootstrap(port, backend, features)))
    proc = Process([bin_path("envoy"), "-c", str(conf), "--use-dynamic-base-id", "--log-level", "warning",
                    "--concurrency", str(workers)], root / f"{name}.log")
    proc.ready(name, lambda: _get("127.0.0.1", port) == 200, 30)
    return proc, port


def start_portico(root: Path, backend: int) -> tuple[Portico, int, str]:
    manifests_dir = root / "manifests"
    from bench.common import write_docs

    write_docs(manifests_dir / "00-gateway.yaml", m.gateway_docs())
    write_docs(manifests_dir / "10-backend.yaml", m.service_docs("static", "default", backend))
    write_docs(manifests_dir / "20-route.yaml", [m.http_route("traffic", "default", HOST, [("static", 1)])])
    portico = Portico(root, manifests_dir)
    try:
        portico.wait_ready()
        portico.wait_programmed(1)
        wait_until("portico route", lambda: _get(portico.address, portico.listener_port) == 200, 30)
    except BaseException:
        portico.stop()
        raise
    return portico, portico.listener_port, portico.address


def _get(host: str, port: int) -> int:
    client = Client(host, port, timeout=2)
    try:
        status, _, body = client.get("/", HOST)
        return status if body == BODY else -status
    finally:
        client.close()


# ---------------------------------------------------------------- wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(host: str, port: int, connections: int, seconds: float,
        cpu: Callable[[], float] | None = None, host_header: str = HOST,
        headers: tuple[str, ...] = ()) -> dict[str, Any]:
    """One wrk run; with `cpu` (the proxy's CPU seconds so far), also the proxy's CPU per request.
    `headers`: more request headers ("Name: value")."""
    path = tools.which("wrk")
    assert path is not None
    threads = min(connections, WORKERS)
    args = [path, "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--latency",
            "-H", f"Host: {host_header}", *(a for h in headers for a in ("-H", h)), f"http://{host}:{port}/"]
    cpu_before = cpu() if cpu else math.nan
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60).stdout
    cpu_used = cpu() - cpu_before if cpu else math.nan
    requests = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps is None:
        raise BenchError(f"wrk output not understood:\n{out}")
    lat = {p: float(v) * _UNITS[u] for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(g) for g in socket_errors.groups())
                                                        if socket_errors else 0)
    count = int(requests.group(1)) if requests else 0
    return {"rps": float(rps.group(1)), "p50_ms": lat.get("50", math.nan), "p99_ms": lat.get("99", math.nan),
            "errors": errors, "requests": count, "cpu_us_per_req": cpu_used / count * 1e6 if count else math.nan}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rps": statistics.median(r["rps"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "cpu_us_per_req": statistics.median(r["cpu_us_per_req"] for r in runs),
            "errors": sum(r["errors"] for r in runs), "runs": runs}


def tree_cpu(pid: int) -> Callable[[], float]:
    """CPU seconds of `pid` and its children (nginx workers), as a probe for `wrk`."""
    def probe() -> float:
        total = 0.0
        for p in [pid, *children(pid)]:
            with contextlib.suppress(OSError):
                total += proc_cpu_seconds(p)
        return total
    return probe


# ---------------------------------------------------------------- the benchmark


def paired(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> float:
    """Median of a[i][key] / b[i][key]: runs i of both were made back to back."""
    values = [ratio(x[key], y[key]) for x, y in zip(a, b, strict=False)]
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def run(connections: list[int], seconds: float, rounds: int, ablation: bool, pairs: int = 0) -> Report:
    paths = tools.ensure()
    report = Report("traffic", f"5. Traffic (wrk, {seconds:g} s x {rounds} rounds, median; {WORKERS} proxy workers)",
                    ["connections", "target", "requests/s", "p50 ms", "p99 ms", "errors", "x direct",
                     "Portico / it", "CPU µs/req", "its CPU / Portico's"])
    results: dict[tuple[int, str], dict[str, Any]] = {}
    ablation_results: dict[str, dict[str, Any]] = {}
    with workdir("traffic") as root, contextlib.ExitStack() as stack:
        def keep(started: tuple[Any, ...]) -> tuple[Any, ...]:
            stack.callback(started[0].stop)
            return started

        backend, backend_port = keep(start_backend(root))
        envoy, envoy_port = keep(start_envoy(root, backend_port))
        nginx, nginx_port = keep(start_nginx_proxy(root, backend_port))
        haproxy, haproxy_port = keep(start_haproxy(root, backend_port))
        portico, portico_port, portico_host = keep(start_portico(root, backend_port))
        portico_envoy = portico.envoy_pid()
        if portico_envoy is None:
            raise BenchError("portico's Envoy not found")
        # (host, port, CPU probe of the proxy; for direct, the backend itself)
        targets: dict[str, tuple[str, int, Callable[[], float]]] = {
            "direct": ("127.0.0.1", backend_port, tree_cpu(backend.pid)),
            "portico": (portico_host, portico_port, tree_cpu(portico_envoy)),
            "envoy": ("127.0.0.1", envoy_port, tree_cpu(envoy.pid)),
            "nginx": ("127.0.0.1", nginx_port, tree_cpu(nginx.pid)),
            "haproxy": ("127.0.0.1", haproxy_port, tree_cpu(haproxy.pid)),
        }
        for host, port, _ in targets.values():  # warm-up
            wrk(host, port, max(connections), 1)
        runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for _ in range(rounds):
            for c in connections:
                for name, (host, port, cpu) in targets.items():
                    runs.setdefault((c, name), []).append(wrk(host, port, c, seconds, cpu))
        # Portico against the minimal Envoy: extra back-to-back pairs (order alternating), so a
        # slow drift of the machine cancels out in each pair's ratio
        for c in connections:
            for i in range(pairs):
                order = ("portico", "envoy") if i % 2 == 0 else ("envoy", "portico")
                for name in order:
                    host, port, cpu = targets[name]
                    runs[(c, name)].append(wrk(host, port, c, seconds, cpu))
        results = {k: median_of(v) for k, v in runs.items()}
        if ablation:
            ablation_results = run_ablation(root, backend_port, max(connections), 2.0, max(rounds, 5))
    ratios: dict[int, dict[str, float]] = {}
    cpu_ratios: dict[int, dict[str, float]] = {}
    for c in connections:
        ours = runs[(c, "portico")]
        ratios[c] = {n: paired(ours, runs[(c, n)], "rps") for n in ("direct", "envoy", "nginx", "haproxy")}
        cpu_ratios[c] = {n: paired(runs[(c, n)], ours, "cpu_us_per_req") for n in ("envoy", "nginx", "haproxy")}
        for name in ("direct", "portico", "envoy", "nginx", "haproxy"):
            r = results[(c, name)]
            report.rows.append([c, name, r["rps"], r["p50_ms"], r["p99_ms"], r["errors"],
                                paired(runs[(c, name)], runs[(c, "direct")], "rps"),
                                "" if name == "portico" else ratios[c][name], r["cpu_us_per_req"],
                                "" if name in ("portico", "direct") else cpu_ratios[c][name]])
    top = max(connections)
    envoy_ratio = ratios[top]["envoy"]
    report.data = {"results": {f"{c}/{n}": r for (c, n), r in results.items()}, "portico_ratios": ratios,
                   "portico_cpu_ratios": cpu_ratios, "ablation": ablation_results, "workers": WORKERS,
                   "pairs": pairs, "versions": {t: tools.version(t, p) for t, p in paths.items()}}
    worst = min(ratios[c]["envoy"] for c in connections)
    report.target("Portico requests/s vs minimal Envoy (median of paired runs, worst connection count)",
                  f">= {TARGET_RATIO_TO_ENVOY:.2f}", worst, worst >= TARGET_RATIO_TO_ENVOY)
    efficiency = min(cpu_ratios[c]["envoy"] for c in connections)
    report.data["cpu_efficiency_vs_envoy"] = efficiency
    report.target("Envoy CPU per request, minimal / Portico's (median of paired runs, worst connection count)",
                  f">= {TARGET_RATIO_TO_ENVOY:.2f}", efficiency, efficiency >= TARGET_RATIO_TO_ENVOY)
    errors = sum(r["errors"] for r in results.values())
    report.summary = (f"at {top} connections Portico {results[(top, 'portico')]['rps']:,.0f} req/s = "
                      f"{envoy_ratio:.2f}x minimal Envoy, {ratios[top]['nginx']:.2f}x nginx, "
                      f"{ratios[top]['haproxy']:.2f}x HAProxy, {ratios[top]['direct']:.2f}x direct; "
                      f"worst ratio to Envoy {worst:.2f} (CPU per request {efficiency:.2f}); {errors} errors")
    return report


def run_ablation(root: Path, backend: int, connections: int, seconds: float, rounds: int) -> dict[str, dict[str, Any]]:
    """Each VARIANTS Envoy, run in interleaved rounds; ratios to the minimal one of the same round."""
    ports: dict[str, tuple[int, Callable[[], float]]] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        for i, (name, features, workers) in enumerate(VARIANTS):
            proc, port = start_envoy(root, backend, features, f"variant{i}", workers)
            stack.callback(proc.stop)
            ports[name] = (port, tree_cpu(proc.pid))
        for port, _ in ports.values():
            wrk("127.0.0.1", port, connections, 1)  # warm-up
        for _ in range(rounds):
            for name, (port, cpu) in ports.items():
                runs.setdefault(name, []).append(wrk("127.0.0.1", port, connections, seconds, cpu))
    out = {name: median_of(r) for name, r in runs.items()}
    base = runs[VARIANTS[0][0]]
    for name, r in out.items():  # per-round ratios (each round runs every variant once)
        r["x_minimal"] = paired(runs[name], base, "rps")
        r["cpu_x_minimal"] = paired(runs[name], base, "cpu_us_per_req")
    return out


def ablation_table(data: dict[str, dict[str, Any]]) -> str:
    lines = ["| Envoy configuration | requests/s | x minimal | p99 ms | Envoy CPU µs/req | CPU x minimal |",
             "|---|---|---|---|---|---|"]
    for name, r in data.items():
        lines.append(f"| {name} | {r['rps']:,.0f} | {r['x_minimal']:.3f} | {r['p99_ms']:.2f} | "
                     f"{r['cpu_us_per_req']:.1f} | {r['cpu_x_minimal']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench traffic", description=__doc__)
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=6, help="extra back-to-back Portico/Envoy runs per count")
    parser.add_argument("--no-ablation", action="store_true")
    parser.add_argument("--quick", action="store_true", help="2 s x 1 round, 2 pairs, no ablation")
    args = parser.parse_args(argv)
    report = run([int(c) for c in args.connections.split(",")], 2 if args.quick else args.seconds,
                 1 if args.quick else args.rounds, not (args.quick or args.no_ablation),
                 2 if args.quick else args.pairs)
    if report.data["ablation"]:
        print("\nablation (Portico's Envoy settings, each added alone to the minimal one):\n")
        print(ablation_table(report.data["ablation"]))
    report.emit()
    return report


if __name__ == "__main__":
    main()
