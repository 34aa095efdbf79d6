"""4. Scale and churn: `namespaces` x `per_ns` HTTPRoutes, each with its own
Service and EndpointSlice (one file per namespace).

First the baseline: `portico run` with the Gateway alone; then a fresh
`portico run` with everything: time from start to the Gateway Programmed with
every route attached, control-plane CPU seconds and peak RSS, Envoy RSS (each
as a ratio to the baseline). Then `rounds` rounds of churn on the same
`churn_ns` namespaces: every round changes each of their routes' path and adds
or removes an endpoint in each of their EndpointSlices; a round ends when the
last changed route reports the new generation as observed in its status. RSS
is sampled after each round: memory must not grow round over round (the trend
over the second half of the rounds; the first ones replace the initially
loaded objects and fill caches).
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

from bench import manifests as m
from bench.common import Echo, Portico, Report, ratio, running, wait_until, workdir, write_docs

TARGET_GROWTH_MIB_PER_ROUND = 1.0  # "flat": the trend over the rounds, not one sample


def namespace_docs(ns: str, per_ns: int, port: int, round_: int) -> list[dict[str, Any]]:
    """Namespace `ns` at churn round `round_`: paths and endpoints differ from round to round."""
    docs: list[dict[str, Any]] = [m.namespace_doc(ns)]
    extra = ("127.0.0.2",) if round_ % 2 else ()
    for i in range(per_ns):
        svc = f"svc{i}"
        docs += m.service_docs(svc, ns, port, ("127.0.0.1", *extra))
        path = "/" if round_ == 0 else f"/v{round_}"
        docs.append(m.http_route(f"r{i}", ns, m.hostname(i, ns), [(svc, 1)], path))
    return docs


def start(root: Path, name: str, files: dict[str, list[dict[str, Any]]], attached: int,
          timeout: float) -> tuple[Portico, float, Path]:
    manifests_dir = root / name
    for file, docs in files.items():
        write_docs(manifests_dir / file, [m.as_list(docs)])
    portico = Portico(root, manifests_dir)
    try:
        portico.wait_ready(timeout)
        portico.wait_programmed(attached, timeout, interval=0.1)
    except BaseException:
        portico.stop()
        raise
    return portico, time.monotonic() - portico.started, manifests_dir


def route_generation_seen(portico: Portico, ns: str, name: str, generation: int) -> bool:
    [route] = portico.objects("HTTPRoute", name, ns)
    if route["metadata"]["generation"] != generation:
        return False
    parents = (route.get("status") or {}).get("parents") or []
    return bool(parents) and all(c.get("observedGeneration") == generation
                                 for p in parents for c in p.get("conditions", []))


def run(namespaces: int, per_ns: int, rounds: int, churn_ns: int) -> Report:
    total = namespaces * per_ns
    report = Report("scale", f"4. Scale and churn ({namespaces} namespaces x {per_ns} routes, {rounds} churn rounds)",
                    ["config", "time to Programmed s", "CP CPU s", "CP peak RSS MiB", "CP RSS MiB",
                     "Envoy RSS MiB"])
    names = [f"ns{i:03d}" for i in range(namespaces)]
    samples: list[dict[str, float]] = []
    with workdir("scale") as root:
        echo = Echo(root, "echo")
        with running(echo):
            base, base_s, _ = start(root, "empty", {"00-gateway.yaml": m.gateway_docs()}, 0, 60)
            with running(base):
                time.sleep(1)
                base_stats = base.stats()
            files = {"00-gateway.yaml": m.gateway_docs()}
            files.update({f"{ns}.yaml": namespace_docs(ns, per_ns, echo.port, 0) for ns in names})
            portico, full_s, manifests_dir = start(root, "full", files, total, 600)
            with running(portico):
                full_stats = portico.stats()
                time.sleep(1)
                settled = portico.stats()
                round_s: list[float] = []
                churned = dict.fromkeys(names, 0)
                for r in range(1, rounds + 1):
                    changed = names[:churn_ns]
                    t0 = time.monotonic()
                    for ns in changed:
                        churned[ns] += 1
                        write_docs(manifests_dir / f"{ns}.yaml", [m.as_list(namespace_docs(ns, per_ns, echo.port, r))])
                    last = changed[-1]
                    generation = 1 + churned[last]  # every churn changes each route's path
                    wait_until(f"round {r} applied", functools.partial(
                        route_generation_seen, portico, last, f"r{per_ns - 1}", generation), 300, 0.05)
                    round_s.append(time.monotonic() - t0)
                    time.sleep(0.5)
                    samples.append(portico.stats())
    report.rows = [
        ["Gateway only (baseline)", base_s, base_stats["cp_cpu_s"], base_stats["cp_peak_rss_mib"],
         base_stats["cp_rss_mib"], base_stats["envoy_rss_mib"]],
        [f"{total:,} routes", full_s, full_stats["cp_cpu_s"], full_stats["cp_peak_rss_mib"],
         settled["cp_rss_mib"], settled["envoy_rss_mib"]],
        ["ratio", ratio(full_s, base_s), ratio(full_stats["cp_cpu_s"], base_stats["cp_cpu_s"]),
         ratio(full_stats["cp_peak_rss_mib"], base_stats["cp_peak_rss_mib"]),
         ratio(settled["cp_rss_mib"], base_stats["cp_rss_mib"]),
         ratio(settled["envoy_rss_mib"], base_stats["envoy_rss_mib"])],
    ]
    for i, s in enumerate(samples, 1):
        report.rows.append([f"after churn round {i} ({round_s[i - 1]:.1f} s)", "", s["cp_cpu_s"],
                            s["cp_peak_rss_mib"], s["cp_rss_mib"], s["envoy_rss_mib"]])
    # growth: least-squares slope over the second half of the rounds (the first ones warm caches up)
    tail = samples[len(samples) // 2:] if len(samples) >= 4 else samples
    cp_slope = slope([s["cp_rss_mib"] for s in tail])
    envoy_slope = slope([s["envoy_rss_mib"] for s in tail])
    report.data = {"baseline": base_stats, "loaded": full_stats, "settled": settled, "rounds": samples,
                   "round_seconds": round_s, "cp_rss_slope_mib_per_round": cp_slope,
                   "envoy_rss_slope_mib_per_round": envoy_slope, "routes": total,
                   "time_to_programmed_s": full_s, "baseline_time_to_programmed_s": base_s}
    report.target("control-plane RSS growth per churn round (second half)",
                  f"< {TARGET_GROWTH_MIB_PER_ROUND:g} MiB", cp_slope, cp_slope < TARGET_GROWTH_MIB_PER_ROUND)
    report.target("Envoy RSS growth per churn round (second half)", f"< {TARGET_GROWTH_MIB_PER_ROUND:g} MiB",
                  envoy_slope, envoy_slope < TARGET_GROWTH_MIB_PER_ROUND)
    report.summary = (f"{total:,} routes Programmed in {full_s:.1f} s ({ratio(full_s, base_s):.1f}x empty), "
                      f"CP {full_stats['cp_cpu_s']:.0f} CPU s, peak RSS {full_stats['cp_peak_rss_mib']:.0f} MiB, "
                      f"Envoy {settled['envoy_rss_mib']:.0f} MiB; churn RSS slope CP {cp_slope:+.2f} "
                      f"MiB/round, Envoy {envoy_slope:+.2f} MiB/round")
    return report


def slope(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(values) / n
    den = sum((i - mx) ** 2 for i in range(n))
    return sum((i - mx) * (v - my) for i, v in enumerate(values)) / den


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--routes-per-namespace", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--churn-namespaces", type=int, default=5, help="namespaces changed in every round")
    parser.add_argument("--quick", action="store_true", help="10 x 50 routes, 6 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        report = run(10, 50, 6, 2)
    else:
        report = run(args.namespaces, args.routes_per_namespace, args.rounds, args.churn_namespaces)
    report.emit()
    return report


if __name__ == "__main__":
    main()
