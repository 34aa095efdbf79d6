"""1. Route propagation: with N existing routes, add one HTTPRoute file and poll
until it answers 200.

For each N, a fresh `portico run` serves N routes (one List file); then
`additions` new routes are added one at a time, each in its own file, and the
new hostname is polled every `poll_ms` through the Gateway until it answers
200. Every answer other than 404 (not there yet) and 200 is recorded: there
must be none. The baseline is the same measurement at N=0 in the same run.
"""

from __future__ import annotations

import argparse
import http.client
import time
from pathlib import Path
from typing import Any

from bench import manifests as m
from bench.common import (
    BenchError,
    Client,
    Echo,
    Portico,
    Report,
    percentile,
    ratio,
    running,
    wait_until,
    workdir,
    write_docs,
)

TARGET_P99_MS = 100.0
TARGET_AT = 3000


def measure(root: Path, echo: Echo, existing: int, additions: int, poll_ms: float, pause_s: float) -> dict[str, Any]:
    manifests_dir = root / f"manifests-{existing}"
    write_docs(manifests_dir / "00-gateway.yaml", m.gateway_docs())
    write_docs(manifests_dir / "10-backend.yaml", m.service_docs("echo", "default", echo.port))
    if existing:
        write_docs(manifests_dir / "20-existing.yaml", [m.as_list(m.routes(existing))])
    portico = Portico(root, manifests_dir)
    latencies: list[float] = []
    unexpected: list[dict[str, Any]] = []
    timeouts = 0
    with running(portico):
        portico.wait_ready()
        portico.wait_programmed(existing, timeout=120 + existing * 0.05)
        client = Client(portico.address, portico.listener_port)
        if existing:
            wait_until("an existing route", lambda: client.get("/", m.hostname(0))[0] == 200, 30)
        for k in range(additions):
            host = f"new{k}.default.bench"
            route = m.http_route(f"new{k}", "default", host, [("echo", 1)])
            start = time.monotonic()
            write_docs(manifests_dir / f"30-new-{k}.yaml", [route])
            deadline = start + 30
            while True:
                try:
                    status = client.get("/", host)[0]
                except (OSError, http.client.HTTPException) as e:
                    unexpected.append({"addition": k, "error": repr(e), "at_ms": (time.monotonic() - start) * 1e3})
                    status = 0
                now = time.monotonic()
                if status == 200:
                    latencies.append((now - start) * 1e3)
                    break
                if status not in (0, 404):
                    unexpected.append({"addition": k, "status": status, "at_ms": (now - start) * 1e3})
                if now > deadline:
                    timeouts += 1
                    break
                time.sleep(poll_ms / 1e3)
            time.sleep(pause_s)  # each addition starts from a quiet control plane
        client.close()
        stats = portico.stats()
    if len(latencies) < additions // 2:
        raise BenchError(f"only {len(latencies)} of {additions} routes were served; log:\n{portico.tail()}")
    return {
        "existing": existing, "additions": additions, "served": len(latencies), "timeouts": timeouts,
        "p50_ms": percentile(latencies, 50), "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99), "max_ms": max(latencies), "unexpected": unexpected,
        "latencies_ms": latencies, **stats,
    }


def run(sizes: list[int], additions: int, poll_ms: float = 5, pause_s: float = 0.1) -> Report:
    report = Report("propagation", f"1. Route propagation ({additions} additions, polled every {poll_ms:g} ms)",
                    ["existing routes", "p50 ms", "p90 ms", "p99 ms", "max ms", "p99 / N=0", "non-404/200",
                     "timeouts"])
    results = []
    with workdir("propagation") as root:
        echo = Echo(root, "echo")
        with running(echo):
            for n in sizes:
                results.append(measure(root, echo, n, additions, poll_ms, pause_s))
    base = results[0]
    for r in results:
        report.rows.append([r["existing"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"],
                            ratio(r["p99_ms"], base["p99_ms"]), len(r["unexpected"]), r["timeouts"]])
    report.data = {"baseline_existing": base["existing"], "runs": results, "poll_ms": poll_ms}
    errors = sum(len(r["unexpected"]) + r["timeouts"] for r in results)
    at = next((r for r in results if r["existing"] == TARGET_AT), results[-1])
    report.target(f"p99 at {at['existing']} existing routes", f"< {TARGET_P99_MS:g} ms", at["p99_ms"],
                  at["p99_ms"] < TARGET_P99_MS)
    report.target("responses other than 404/200, and timeouts", "0", errors, errors == 0)
    report.summary = (f"p99 {at['p99_ms']:.0f} ms at {at['existing']} existing routes "
                      f"({ratio(at['p99_ms'], base['p99_ms']):.1f}x N={base['existing']}), "
                      f"p50 {at['p50_ms']:.0f} ms, {errors} errors")
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench propagation", description=__doc__)
    parser.add_argument("--sizes", default="0,1000,3000", help="existing route counts (the first is the baseline)")
    parser.add_argument("--additions", type=int, default=100)
    parser.add_argument("--poll-ms", type=float, default=5)
    parser.add_argument("--quick", action="store_true", help="sizes 0,300 and 20 additions")
    args = parser.parse_args(argv)
    sizes = [0, 300] if args.quick else [int(s) for s in args.sizes.split(",")]
    report = run(sizes, 20 if args.quick else args.additions, args.poll_ms)
    report.emit()
    return report


if __name__ == "__main__":
    main()
