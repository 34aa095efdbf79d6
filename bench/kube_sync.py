"""8. Kubernetes mode sync: `portico controller` (a subprocess, leader-elected,
data plane `local`) against the API server double of tests/kube (kmock's
emulator, in this process) holding `namespaces` x `routes` HTTPRoutes, one Gateway
and one Service per namespace: time from start until every route carries our
Accepted status and every Gateway is Programmed, status writes per object (and
during a quiet period after), and the controller's peak RSS. Baseline, same run:
one in-process translation of the same objects (`ratio` = sync / translation).
The emulator is Python too: its request handling is part of the sync time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import Report, bin_path, free_port, proc_status, ratio, workdir

ROOT = Path(__file__).resolve().parents[1]
G = "gateway.networking.k8s.io"


def objects(namespaces: int, routes: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [{"apiVersion": f"{G}/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
                                   "spec": {"controllerName": "portico.dev/gateway-controller"}}]
    for n in range(namespaces):
        ns = f"team-{n}"
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        docs.append({"apiVersion": f"{G}/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": ns},
                     "spec": {"gatewayClassName": "portico",
                              "listeners": [{"name": "http", "port": 18080, "protocol": "HTTP"}]}})
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
                     "spec": {"ports": [{"name": "http", "port": 80}]}})
        for r in range(routes):
            docs.append({"apiVersion": f"{G}/v1", "kind": "HTTPRoute", "metadata": {"name": f"r{r}", "namespace": ns},
                         "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [f"r{r}.{ns}.example.com"],
                                  "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}})
    return docs


def translate_once(docs: list[dict[str, Any]]) -> float:
    from portico.models import parse_object
    from portico.translator import Placement, Snapshot, translate

    parsed = {}
    for i, d in enumerate(docs):
        d = {**d, "metadata": {**d["metadata"], "creationTimestamp": f"2026-01-01T00:00:{i % 60:02d}Z"}}
        obj = parse_object(d)
        parsed[obj.key] = obj
    placements = {(k.namespace, k.name): Placement(f"127.20.{i // 250}.{i % 250 + 1}")
                  for i, k in enumerate(k for k in parsed if k.kind == "Gateway")}
    t0 = time.monotonic()
    translate(Snapshot(parsed, placements))
    return time.monotonic() - t0


def accepted(obj: dict[str, Any] | None) -> bool:
    for parent in ((obj or {}).get("status") or {}).get("parents", []):
        if parent.get("controllerName") == "portico.dev/gateway-controller":
            return any(c["type"] == "Accepted" and c["status"] == "True" for c in parent["conditions"])
    return False


def programmed(obj: dict[str, Any] | None) -> bool:
    return any(c["type"] == "Programmed" and c["status"] == "True"
               for c in ((obj or {}).get("status") or {}).get("conditions", []))


async def sync(namespaces: int, routes: int, quiet_s: float, timeout_s: float = 600) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    # the API server double as the tests set it up: the shipped RBAC in force, and the
    # controller authenticated as its ServiceAccount (an unknown token is 401, forever)
    from kube.support import CONTROLLER, running

    docs = objects(namespaces, routes)
    async with running() as (api, _client):
        for d in docs:
            api.put(d)
        with workdir("kube_sync") as root:
            kubeconfig = root / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "e",
                "clusters": [{"name": "e", "cluster": {"server": api.base_url}}],
                "users": [{"name": "u", "user": {"token": api.token("bench", CONTROLLER)}}],
                "contexts": [{"name": "e", "context": {"cluster": "e", "user": "u"}}]}))
            log = (root / "controller.log").open("w")
            start = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                bin_path("portico"), "controller", "--kubeconfig", str(kubeconfig), "--data-plane", "local",
                "--health-address", f"127.0.0.1:{free_port()}", "--state-dir", str(root / "state"),
                "--namespace", "portico-system", "--port-offset", "20000", "--log-level", "warning",
                stdout=log, stderr=log)
            try:
                keys = [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "HTTPRoute"]
                deadline = start + timeout_s
                while True:
                    done_routes = sum(accepted(api.get(G, "httproutes", ns, n)) for ns, n in keys)
                    done_gws = sum(programmed(api.get(G, "gateways", f"team-{i}", "gw")) for i in range(namespaces))
                    if done_routes == len(keys) and done_gws == namespaces:
                        break
                    if time.monotonic() > deadline or proc.returncode is not None:
                        log.flush()
                        tail = "".join((root / "controller.log").read_text().splitlines(keepends=True)[-20:])
                        raise RuntimeError(f"sync incomplete after {time.monotonic() - start:.0f} s (controller "
                                           f"exit code {proc.returncode}): {done_routes}/{len(keys)} routes, "
                                           f"{done_gws}/{namespaces} Gateways; the controller's log ends:\n{tail}")
                    await asyncio.sleep(0.2)
                sync_s = time.monotonic() - start
                writes = len(api.status_writes())
                await asyncio.sleep(quiet_s)
                quiet_writes = len(api.status_writes()) - writes
                rss = proc_status(proc.pid, "VmHWM") / 2**20
            finally:
                if proc.returncode is None:
                    proc.terminate()
                    try:
                        await asyncio.wait_for(proc.wait(), 30)
                    except TimeoutError:
                        proc.kill()  # a controller that does not stop on SIGTERM must not hang the bench
                        await proc.wait()
                        raise RuntimeError("the controller did not stop within 30 s of SIGTERM") from None
                log.close()
    status_objects = len(keys) + namespaces + 1  # routes, Gateways, the GatewayClass
    return {"objects": len(docs), "sync_s": sync_s, "status_writes": writes,
            "writes_per_object": writes / status_objects, "quiet_writes": quiet_writes, "cp_peak_rss_mib": rss}


def run(namespaces: int, routes: int, quiet_s: float = 2.0, timeout_s: float = 600) -> Report:
    baseline_s = translate_once(objects(namespaces, routes))
    r = asyncio.run(sync(namespaces, routes, quiet_s, timeout_s))
    report = Report("kube_sync", f"8. Kubernetes mode: {namespaces} namespaces x {routes} routes against the "
                                 "API server double",
                    ["objects", "all statuses s", "translation s (baseline)", "ratio", "status writes",
                     "writes per object", f"writes in {quiet_s:.0f} s quiet", "controller peak RSS MiB"])
    report.rows.append([r["objects"], r["sync_s"], baseline_s, ratio(r["sync_s"], baseline_s), r["status_writes"],
                        r["writes_per_object"], r["quiet_writes"], r["cp_peak_rss_mib"]])
    report.data = {"namespaces": namespaces, "routes": routes, "baseline_translation_s": baseline_s, **r}
    report.summary = (f"{namespaces}x{routes}: every status written in {r['sync_s']:.1f} s "
                      f"({ratio(r['sync_s'], baseline_s):.1f}x one translation), {r['writes_per_object']:.2f} "
                      f"writes per object, {r['quiet_writes']} while quiet, controller peak RSS "
                      f"{r['cp_peak_rss_mib']:.0f} MiB")
    report.target("no write storm", "0 writes while quiet", r["quiet_writes"], r["quiet_writes"] == 0)
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench kube_sync", description=__doc__)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--routes", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="5 namespaces x 10 routes")
    args = parser.parse_args(argv)
    report = run(5, 10) if args.quick else run(args.namespaces, args.routes)
    report.emit()
    return report


if __name__ == "__main__":
    main()
