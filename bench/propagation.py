"""1. Route propagation: with N existing routes, add one HTTPRoute file and poll
until it answers 200.

For each N, a fresh `portico run` serves N routes (Lists of 1000); then
`additions` new routes are added one at a time, each in its own file, and the
new hostname is polled every `poll_ms` through the Gateway until it answers
200, in two patterns (issue 30):

  paused        a pause after each 200: every addition starts from a quiet
                control plane
  back-to-back  the next route is written the moment the previous one answers
                (`kubectl apply -f dir/`, GitOps syncs, CI pipelines): it meets
                whatever the control loop does after a sync (it used to sleep
                50 ms to coalesce)

Every answer other than 404 (not there yet) and 200 is recorded: there must be
none. The baseline is the same pattern at the first N (0) in the same run. Each
addition's timeline (Portico's JSON log) splits it into phases.
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

TARGET_P50_MS = 15.0  # paused additions (issue 11)
TARGET_P99_MS = 40.0
TARGET_B2B_P50_MS = 20.0  # back-to-back additions (issue 30)
TARGET_B2B_P99_MS = 40.0
TARGET_AT = 3000
PAUSED, BACK_TO_BACK = "paused", "back-to-back"
PATTERNS = (PAUSED, BACK_TO_BACK)
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


def add_routes(portico: Portico, client: Client, manifests_dir: Path, prefix: str, additions: int,
               poll_ms: float, pause_s: float) -> dict[str, Any]:
    """`additions` new routes, one file each, each polled until it answers 200; `pause_s`
    after each 200 (0: the next is written at once)."""
    latencies: list[float] = []
    windows: list[tuple[float, float]] = []
    unexpected: list[dict[str, Any]] = []
    timeouts = 0
    for k in range(additions):
        host = f"{prefix}{k}.default.bench"
        route = m.http_route(f"{prefix}{k}", "default", host, [("echo", 1)])
        start = time.monotonic()
        write_docs(manifests_dir / f"30-{prefix}-{k}.yaml", [route])
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
        if pause_s:
            time.sleep(pause_s)
    if len(latencies) < additions // 2:
        raise BenchError(f"only {len(latencies)} of {additions} routes were served; log:\n{portico.tail()}")
    phases = timelines(portico.log, windows)
    return {
        "timeline_ms": {p: percentile([t[p] for t in phases], 50) if phases else float("nan") for p in PHASES},
        "timelines": phases, "additions": additions, "served": len(latencies), "timeouts": timeouts,
        "p50_ms": percentile(latencies, 50), "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99), "max_ms": max(latencies), "unexpected": unexpected,
        "latencies_ms": latencies,
    }


def measure(root: Path, echo: Echo, existing: int, additions: int, poll_ms: float, pause_s: float,
            patterns: tuple[str, ...] = PATTERNS) -> list[dict[str, Any]]:
    """One `portico run` with `existing` routes; `additions` routes added in each pattern."""
    manifests_dir = root / f"manifests-{existing}"
    write_docs(manifests_dir / "00-gateway.yaml", m.gateway_docs())
    write_docs(manifests_dir / "10-backend.yaml", m.service_docs("echo", "default", echo.port))
    # in Lists of 1000 (one List of 10,000 routes is 3.7 MB: above the loader's 3 MiB
    # per document, as above what an API server stores in one object)
    routes = m.routes(existing)
    for i in range(0, existing, 1000):
        write_docs(manifests_dir / f"20-existing-{i // 1000:02d}.yaml", [m.as_list(routes[i:i + 1000])])
    portico = Portico(root, manifests_dir, log_level="info", log_format="json")
    out = []
    with running(portico):
        portico.wait_ready()
        portico.wait_programmed(existing, timeout=120 + existing * 0.05)
        client = Client(portico.address, portico.listener_port)
        if existing:
            wait_until("an existing route", lambda: client.get("/", m.hostname(0))[0] == 200, 30)
        for pattern in patterns:
            prefix = "paused" if pattern == PAUSED else "b2b"
            result = add_routes(portico, client, manifests_dir, prefix, additions, poll_ms,
                                pause_s if pattern == PAUSED else 0)
            out.append({"existing": existing, "pattern": pattern, **result})
            time.sleep(pause_s)  # the next pattern starts from a quiet control plane too
        client.close()
        stats = portico.stats()
    return [{**r, **stats} for r in out]


def run(sizes: list[int], additions: int, poll_ms: float = 5, pause_s: float = 0.1,
        patterns: tuple[str, ...] = PATTERNS) -> Report:
    report = Report("propagation", f"1. Route propagation ({additions} additions per pattern, polled every "
                    f"{poll_ms:g} ms; paused {pause_s * 1e3:g} ms after each, or back-to-back)",
                    ["existing routes", "pattern", "p50 ms", "p90 ms", "p99 ms", "max ms", "p50 / N=0", "p99 / N=0",
                     "non-404/200", "timeouts", *(f"{p} ms" for p in PHASES)])
    results: list[dict[str, Any]] = []
    with workdir("propagation") as root:
        echo = Echo(root, "echo")
        with running(echo):
            for n in sizes:
                results += measure(root, echo, n, additions, poll_ms, pause_s, patterns)
    # the baseline: the same pattern at the first size
    base = {p: next(r for r in results if r["pattern"] == p) for p in patterns}
    for r in sorted(results, key=lambda r: (patterns.index(r["pattern"]), r["existing"])):
        b = base[r["pattern"]]
        report.rows.append([r["existing"], r["pattern"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"],
                            ratio(r["p50_ms"], b["p50_ms"]), ratio(r["p99_ms"], b["p99_ms"]), len(r["unexpected"]),
                            r["timeouts"], *(r["timeline_ms"][p] for p in PHASES)])
    report.data = {"baseline_existing": sizes[0], "runs": results, "poll_ms": poll_ms, "pause_s": pause_s,
                   "patterns": list(patterns)}
    errors = sum(len(r["unexpected"]) + r["timeouts"] for r in results)
    summary = []
    for pattern, p50_goal, p99_goal in ((PAUSED, TARGET_P50_MS, TARGET_P99_MS),
                                        (BACK_TO_BACK, TARGET_B2B_P50_MS, TARGET_B2B_P99_MS)):
        runs = [r for r in results if r["pattern"] == pattern]
        if not runs:
            continue
        at = next((r for r in runs if r["existing"] == TARGET_AT), runs[-1])
        where = f"{pattern} at {at['existing']} existing routes"
        report.target(f"p50 {where}", f"<= {p50_goal:g} ms", at["p50_ms"], at["p50_ms"] <= p50_goal)
        report.target(f"p99 {where}", f"<= {p99_goal:g} ms", at["p99_ms"], at["p99_ms"] <= p99_goal)
        summary.append(f"{where}: p50 {at['p50_ms']:.0f} ms, p99 {at['p99_ms']:.0f} ms "
                       f"({ratio(at['p99_ms'], base[pattern]['p99_ms']):.1f}x N={sizes[0]})")
    report.target("responses other than 404/200, and timeouts", "0", errors, errors == 0)
    report.summary = "; ".join(summary) + f"; {errors} errors"
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench propagation", description=__doc__)
    parser.add_argument("--sizes", help="existing route counts, the first the baseline "
                        "(default 0,1000,3000,10000; with --quick 0,1000,3000)")
    parser.add_argument("--additions", type=int, help="per pattern and size (default 100; with --quick 20)")
    parser.add_argument("--poll-ms", type=float, default=5)
    parser.add_argument("--pause-ms", type=float, default=100, help="the pause after each paused addition")
    parser.add_argument("--patterns", default=",".join(PATTERNS), help=f"of {', '.join(PATTERNS)}")
    parser.add_argument("--quick", action="store_true", help="sizes 0,1000,3000 and 20 additions per pattern")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("0,1000,3000" if args.quick else "0,1000,3000,10000")).split(",")]
    additions = args.additions or (20 if args.quick else 100)
    patterns = tuple(args.patterns.split(","))
    if not set(patterns) <= set(PATTERNS):
        parser.error(f"--patterns: choose from {', '.join(PATTERNS)}")
    report = run(sizes, additions, args.poll_ms, args.pause_ms / 1e3, patterns)
    report.emit()
    return report


if __name__ == "__main__":
    main()
