"""7. Envoy groups in standalone mode: one Envoy for every Gateway (the default,
xDS group `portico`) against one Envoy per Gateway (`--envoy-per-gateway`, as in
Kubernetes mode), for `gateways` Gateways with one HTTP listener and one route
each: time from start until every Gateway is Programmed, Envoy processes and
their memory, control-plane memory, and one route change until it serves
(Gateway 0's route gets a new path). Ratios are per-Gateway / one Envoy, same run.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from bench import manifests as m
from bench.common import (
    Client,
    Echo,
    Portico,
    Report,
    envoy_pids,
    proc_status,
    programmed,
    ratio,
    running,
    wait_until,
    workdir,
    write_docs,
)


def gateway_docs(count: int) -> list[dict[str, Any]]:
    docs = m.gateway_docs()[:1]
    for i in range(count):
        docs.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                     "metadata": {"name": f"gw{i}", "namespace": m.GATEWAY_NS},
                     "spec": {"gatewayClassName": m.CLASS, "listeners": [
                         {"name": "http", "protocol": "HTTP", "port": m.LISTENER_PORT,
                          "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    return docs


def route(i: int, path: str) -> dict[str, Any]:
    doc = m.http_route(f"r{i}", "default", m.hostname(i), [("echo", 1)], path)
    doc["spec"]["parentRefs"] = [{"name": f"gw{i}", "namespace": m.GATEWAY_NS}]
    return doc


def envoy_rss_mib(portico: Portico) -> tuple[int, float]:
    pids = envoy_pids(portico.pid)
    return len(pids), sum(proc_status(p, "VmRSS") for p in pids) / 2**20


def one_mode(count: int, per_gateway: bool) -> dict[str, Any]:
    with workdir("groups") as root:
        echo = Echo(root, "echo")
        manifests_dir = root / "manifests"
        write_docs(manifests_dir / "00-gateways.yaml", gateway_docs(count))
        write_docs(manifests_dir / "10-backend.yaml", m.service_docs("echo", "default", echo.port))
        write_docs(manifests_dir / "20-routes.yaml", [route(i, "/") for i in range(count)])
        portico = Portico(root, manifests_dir, extra_args=("--envoy-per-gateway",) if per_gateway else ())
        with running(echo, portico):
            start = portico.started

            def all_programmed() -> list[dict[str, Any]] | None:
                gws = [g for g in portico.objects("Gateway") if g["metadata"]["name"].startswith("gw")]
                return gws if len(gws) == count and all(programmed(g.get("status") or {}) for g in gws) else None

            gws = wait_until("every Gateway Programmed", all_programmed, 120, 0.05)
            ready_s = time.monotonic() - start
            address = next(g for g in gws if g["metadata"]["name"] == "gw0")["status"]["addresses"][0]["value"]
            client = Client(address, portico.listener_port)
            wait_until("gw0 serves", lambda: client.get("/", m.hostname(0))[0] == 200, 30)
            time.sleep(1.0)  # settle before memory is read
            envoys, envoy_mib = envoy_rss_mib(portico)
            cp_mib = proc_status(portico.pid, "VmRSS") / 2**20
            t0 = time.monotonic()
            write_docs(manifests_dir / "20-routes.yaml", [route(0, "/changed")] + [route(i, "/") for i in
                                                                                   range(1, count)])
            wait_until("the changed route serves", lambda: client.get("/changed", m.hostname(0))[0] == 200
                       and client.get("/", m.hostname(0))[0] == 404, 30, 0.005)
            change_ms = (time.monotonic() - t0) * 1e3
            client.close()
    return {"ready_s": ready_s, "envoys": envoys, "envoy_rss_mib": envoy_mib, "cp_rss_mib": cp_mib,
            "change_ms": change_ms}


def run(count: int) -> Report:
    report = Report("groups", f"7. Envoy groups ({count} Gateways): one Envoy vs one per Gateway",
                    ["mode", "all Programmed s", "Envoys", "Envoy RSS MiB", "MiB per Gateway", "CP RSS MiB",
                     "route change ms"])
    merged, per_gw = one_mode(count, False), one_mode(count, True)
    for label, r in (("one Envoy (default)", merged), ("one Envoy per Gateway", per_gw)):
        report.rows.append([label, r["ready_s"], r["envoys"], r["envoy_rss_mib"], r["envoy_rss_mib"] / count,
                            r["cp_rss_mib"], r["change_ms"]])
    report.rows.append(["ratio per-Gateway / one", ratio(per_gw["ready_s"], merged["ready_s"]), math.nan,
                        ratio(per_gw["envoy_rss_mib"], merged["envoy_rss_mib"]), math.nan,
                        ratio(per_gw["cp_rss_mib"], merged["cp_rss_mib"]), ratio(per_gw["change_ms"],
                                                                                 merged["change_ms"])])
    report.data = {"gateways": count, "merged": merged, "per_gateway": per_gw}
    report.summary = (f"{count} Gateways: one Envoy {merged['envoy_rss_mib']:.0f} MiB, Programmed in "
                      f"{merged['ready_s']:.2f} s; one per Gateway {per_gw['envoy_rss_mib']:.0f} MiB "
                      f"({ratio(per_gw['envoy_rss_mib'], merged['envoy_rss_mib']):.1f}x), "
                      f"{per_gw['ready_s']:.2f} s ({ratio(per_gw['ready_s'], merged['ready_s']):.1f}x); "
                      f"route change {merged['change_ms']:.0f} vs {per_gw['change_ms']:.0f} ms")
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench groups", description=__doc__)
    parser.add_argument("--gateways", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="4 Gateways")
    args = parser.parse_args(argv)
    report = run(4 if args.quick else args.gateways)
    report.emit()
    return report


if __name__ == "__main__":
    main()
