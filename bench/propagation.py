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
import json
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

TARGET_P50_MS = 15.0
TARGET_P99_MS = 40.0
TARGET_AT = 3000
# the timeline of each change (medians): from the file written to the first 200
PHASES = ("watcher", "provider", "loop", "translate", "push", "ack", "client")


def timelines(log: Path, windows: list[tuple[float, float]]) -> list[dict[str, float]]:
    """Each addition's timeline, from portico's `change_applied` log lines (JSON, with
    time.monotonic() stamps comparable to ours): the change whose file event falls in
    the addition's window (file written .. first 200). Phases in ms: watcher (written
    to file event: the watcher's quiet period), provider (parse, admission, store), loop
    (waiting for the control loop), translate, push (IR compare, xDS build, statuses),
    ack (Envoy: delta xDS, applied, ACK), client (ACK to the first 200: the poll)."""
    applied = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "change_applied" and "observed_at" in entry:
            applied.append(entry)
    out = []
    for start, end in windows:
        entry = next((e for e in applied if start <= e["observed_at"] <= end), None)
        if entry is None:
            continue
        out.append({"watcher": (entry["observed_at"] - start) * 1e3, "provider": entry["provider_ms"],
                    "loop": entry["started_ms"], "translate": entry["translated_ms"] - entry["started_ms"],
                    "push": entry["pushed_ms"] - entry["translated_ms"],
                    "ack": entry["acked_ms"] - entry["pushed_ms"], "client": (end - entry["acked_at"]) * 1e3})
    return out


def measure(root: Path, echo: Echo, existing: int, additions: int, poll_ms: float, pause_s: float) -> dict[str, Any]:
    manifests_dir = root / f"manifests-{existing}"
    write_docs(manifests_dir / "00-gateway.yaml", m.gateway_docs())
    write_docs(manifests_dir / "10-backend.yaml", m.service_docs("echo", "default", echo.port))
    # in Lists of 1000 (one List of 10,000 routes is 3.7 MB: above the loader's 3 MiB
    # per document, as above what an API server stores in one object)
    routes = m.routes(existing)
    for i in range(0, existing, 1000):
        write_docs(manifests_dir / f"20-existing-{i // 1000:02d}.yaml", [m.as_list(routes[i:i + 1000])])
    portico = Portico(root, manifests_dir, log_level="info", log_format="json")
    latencies: list[float] = []
    windows: list[tuple[float, float]] = []
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
                    windows.append((start, now))
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
    phases = timelines(portico.log, windows)
    return {
        "timeline_ms": {p: percentile([t[p] for t in phases], 50) if phases else float("nan") for p in PHASES},
        "timelines": phases,
        "existing": existing, "additions": additions, "served": len(latencies), "timeouts": timeouts,
        "p50_ms": percentile(latencies, 50), "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99), "max_ms": max(latencies), "unexpected": unexpected,
        "latencies_ms": latencies, **stats,
    }


def run(sizes: list[int], additions: int, poll_ms: float = 5, pause_s: float = 0.1) -> Report:
    report = Report("propagation", f"1. Route propagation ({additions} additions, polled every {poll_ms:g} ms)",
                    ["existing routes", "p50 ms", "p90 ms", "p99 ms", "max ms", "p99 / N=0", "non-404/200",
                     "timeouts", *(f"{p} ms" for p in PHASES)])
    results = []
    with workdir("propagation") as root:
        echo = Echo(root, "echo")
        with running(echo):
            for n in sizes:
                results.append(measure(root, echo, n, additions, poll_ms, pause_s))
    base = results[0]
    for r in results:
        report.rows.append([r["existing"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"],
                            ratio(r["p99_ms"], base["p99_ms"]), len(r["unexpected"]), r["timeouts"],
                            *(r["timeline_ms"][p] for p in PHASES)])
    report.data = {"baseline_existing": base["existing"], "runs": results, "poll_ms": poll_ms}
    errors = sum(len(r["unexpected"]) + r["timeouts"] for r in results)
    at = next((r for r in results if r["existing"] == TARGET_AT), results[-1])
    report.target(f"p50 at {at['existing']} existing routes", f"<= {TARGET_P50_MS:g} ms", at["p50_ms"],
                  at["p50_ms"] <= TARGET_P50_MS)
    report.target(f"p99 at {at['existing']} existing routes", f"<= {TARGET_P99_MS:g} ms", at["p99_ms"],
                  at["p99_ms"] <= TARGET_P99_MS)
    report.target("responses other than 404/200, and timeouts", "0", errors, errors == 0)
    report.summary = (f"p99 {at['p99_ms']:.0f} ms at {at['existing']} existing routes "
                      f"({ratio(at['p99_ms'], base['p99_ms']):.1f}x N={base['existing']}), "
                      f"p50 {at['p50_ms']:.0f} ms, {errors} errors")
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench propagation", description=__doc__)
    parser.add_argument("--sizes", default="0,1000,3000,10000",
                        help="existing route counts (the first is the baseline)")
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
