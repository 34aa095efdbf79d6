"""9. Cold start: time from `portico run` to every route served.

For each N, the manifests are written first (Gateway, one Service, N HTTPRoutes
in Lists of 1000), then `portico run` starts and the clock with it. Measured:
the admin API answering (/healthz), the Gateway Programmed with N attached
routes (admin API polled), and every route served: a sample of 100 routes
spread over all of them, and the last one, each polled through the Gateway until
it answers 200; the last of them to answer is the time. Then, untimed, every one
of the N routes is requested once: all must answer 200. Control-plane CPU
seconds and peak RSS at that point. The baseline is the same at the first N
(the Gateway alone by default) in the same run; each phase of the start comes
from Portico's JSON log (seconds since start of the first line of each kind).
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import manifests as m
from bench.common import (
    BenchError,
    Client,
    Echo,
    Portico,
    Report,
    attached_routes,
    programmed,
    ratio,
    running,
    workdir,
    write_docs,
)

TARGET_AT = 10_000
TARGET_S = 5.0
SAMPLE = 100
# log lines that mark the phases of a start (the first line whose message contains it)
MARKS = {"xds_up": "ADS server listening", "pushed": ": configuration version ",
         "envoy_connected": "xds: Envoy connected", "acked": " ACKed"}


def sample(count: int) -> list[int]:
    """Route indexes polled for "every route served": spread over all, and the last."""
    if count == 0:
        return []
    step = max(1, count // SAMPLE)
    return sorted({*range(0, count, step), count - 1})


def log_marks(log: Path, wall_start: float) -> dict[str, float]:
    """Seconds from start to the first JSON log line of each of MARKS."""
    out: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or "message" not in entry:
            continue
        for name, prefix in MARKS.items():
            if name not in out and prefix in str(entry["message"]):
                out[name] = datetime.fromisoformat(entry["time"]).timestamp() - wall_start
    return out


def measure(root: Path, echo: Echo, count: int, timeout: float) -> dict[str, Any]:
    manifests_dir = root / f"manifests-{count}"
    write_docs(manifests_dir / "00-gateway.yaml", m.gateway_docs())
    write_docs(manifests_dir / "10-backend.yaml", m.service_docs("echo", "default", echo.port))
    routes = m.routes(count)
    for i in range(0, count, 1000):
        write_docs(manifests_dir / f"20-routes-{i // 1000:02d}.yaml", [m.as_list(routes[i:i + 1000])])
    wall_start = time.time()
    portico = Portico(root, manifests_dir, log_level="info", log_format="json")
    start = portico.started
    times: dict[str, float] = {}
    with running(portico):
        portico.wait_ready(timeout)
        times["healthz_s"] = time.monotonic() - start
        pending = {m.hostname(i) for i in sample(count)}
        client: Client | None = None
        deadline = start + timeout
        while "programmed_s" not in times or pending:
            if time.monotonic() > deadline:
                raise BenchError(f"{count} routes not served after {timeout:.0f} s ({len(pending)} of the sample "
                                 f"left, {times}); log:\n{portico.tail()}")
            if "programmed_s" not in times:
                status = portico.gateway().get("status") or {}
                if client is None and status.get("addresses"):
                    client = Client(status["addresses"][0]["value"], portico.listener_port)
                if programmed(status) and attached_routes(status) == count:
                    times["programmed_s"] = time.monotonic() - start
            for host in sorted(pending):
                if client is None:
                    break
                try:
                    ok = client.get("/", host)[0] == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                if not ok:
                    break  # not there yet: the rest of the sample most likely neither
                pending.discard(host)
            if not pending and client is not None:
                times.setdefault("served_s", time.monotonic() - start)
            time.sleep(0.02)
        if count == 0:  # nothing to serve: the baseline is the Gateway Programmed
            times["served_s"] = times["programmed_s"]
        stats = portico.stats()
        failures = 0
        if client is not None:
            for i in range(count):  # untimed: every route, once
                try:
                    failures += client.get("/", m.hostname(i))[0] != 200
                except (OSError, http.client.HTTPException):
                    failures += 1
            client.close()
    return {"routes": count, **times, **stats, "failures": failures, "marks": log_marks(portico.log, wall_start)}


def run(sizes: list[int], timeout: float = 300) -> Report:
    report = Report("coldstart", "9. Cold start (`portico run` to every route served)",
                    ["routes", "healthz s", "Programmed s", "all served s", "x baseline", "xDS up s",
                     "first push s", "Envoy connected s", "first ACK s", "CP CPU s", "CP peak RSS MiB",
                     "failures"])
    results = []
    with workdir("coldstart") as root:
        echo = Echo(root, "echo")
        with running(echo):
            for n in sizes:
                results.append(measure(root, echo, n, timeout))
    base = results[0]
    for r in results:
        marks = r["marks"]
        report.rows.append([r["routes"], r["healthz_s"], r["programmed_s"], r["served_s"],
                            ratio(r["served_s"], base["served_s"]),
                            *(marks.get(k, float("nan")) for k in ("xds_up", "pushed", "envoy_connected", "acked")),
                            r["cp_cpu_s"], r["cp_peak_rss_mib"], r["failures"]])
    report.data = {"runs": results, "baseline_routes": base["routes"]}
    at = next((r for r in results if r["routes"] == TARGET_AT), results[-1])
    report.target(f"cold start to all {at['routes']:,} routes served", f"<= {TARGET_S:g} s", at["served_s"],
                  at["served_s"] <= TARGET_S)
    failures = sum(r["failures"] for r in results)
    report.target("routes not answering 200 once served", "0", failures, failures == 0)
    report.summary = (f"{at['routes']:,} routes served {at['served_s']:.1f} s after `portico run` "
                      f"({ratio(at['served_s'], base['served_s']):.1f}x {base['routes']:,} routes; Programmed "
                      f"{at['programmed_s']:.1f} s), {failures} failures")
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench coldstart", description=__doc__)
    parser.add_argument("--sizes", help="route counts, the first the baseline (default 0,1000,10000,30000, "
                        "as issue 30 asks; with --quick 0,1000)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per size")
    parser.add_argument("--quick", action="store_true", help="sizes 0,1000")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("0,1000" if args.quick else "0,1000,10000,30000")).split(",")]
    report = run(sizes, args.timeout)
    report.emit()
    return report


if __name__ == "__main__":
    main()
