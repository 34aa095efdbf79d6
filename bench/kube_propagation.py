"""10. Route propagation in Kubernetes mode: from the API write of an HTTPRoute to its
first 200 through a real Envoy fed by the controller over mutual-TLS xDS.

`portico controller --data-plane kubernetes` (a subprocess, leader-elected) runs
against the API server double of tests/kube (kmock's emulator in this process, the
shipped RBAC in force, the controller authenticated as its ServiceAccount). With N
HTTPRoutes in the double, the controller applies the Gateway's ConfigMap and Secret;
the "pod" is an Envoy started here from that bootstrap and that client certificate,
reaching the controller's xDS server over mutual TLS on loopback. Then `additions`
HTTPRoutes are created one at a time through the double's HTTP API (a POST, as
`kubectl create` does), and each new hostname polled through Envoy every `poll_ms`
until it answers 200, in the two patterns of `bench.propagation` (paused: 100 ms
after each 200; back-to-back: the next one created the moment the previous answers).

Each addition's timeline, from the controller's JSON log (`change_applied`, time.
monotonic() stamps comparable to ours): watch (the API write until the controller's
informer received the watch event: the double's handling and the watch stream),
provider (the informer's batch window, admission, store), loop, translate, push,
ack (Envoy: delta xDS over mTLS, applied, ACK), client (ACK to the first 200). Only
additions whose batch of watch events their own event opened have a timeline (the
`timed` column): a batch opened by the echo of the controller's own status write
(the route's, the Gateway's attachedRoutes) starts before the API write.

Baseline, same run: `bench.propagation` (standalone `portico run`, a file written per
route) at the same N, additions and patterns; `ratio` = Kubernetes p50 / standalone
p50. The double is Python in this process: its share is in the watch phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench import manifests as m
from bench import propagation
from bench.common import BenchError, Echo, Report, bin_path, free_port, percentile, ratio, running, workdir
from bench.kube_sync import accepted, programmed

ROOT = Path(__file__).resolve().parents[1]
G = "gateway.networking.k8s.io"
NS = "default"
TARGET_P50_MS = 25.0  # issue 30: watch event to first 200 at 3000 routes
TARGET_AT = 3000
PHASES = ("watch", "provider", "loop", "translate", "push", "ack", "client")


def _objects(existing: int, listener_port: int, echo_port: int) -> list[dict[str, Any]]:
    gateway_class, gateway = m.gateway_docs(listener_port)
    docs = [gateway_class, m.namespace_doc(NS), m.namespace_doc(m.GATEWAY_NS), gateway,
            *m.service_docs("echo", NS, echo_port), *m.routes(existing)]
    return docs


def _route(prefix: str, k: int) -> tuple[str, dict[str, Any]]:
    host = f"{prefix}{k}.{NS}.bench"
    return host, m.http_route(f"{prefix}{k}", NS, host, [("echo", 1)])


class Pod:
    """The Gateway's Envoy as its Deployment would run it (as tests/kube/test_kubernetes_data_plane
    does): the container's args, the generated ConfigMap and Secret laid out as mounted, xDS
    reached on loopback instead of the Service's name."""

    def __init__(self, root: Path, api: Any, xds_port: int) -> None:
        self.root, self.api, self.xds_port = root, api, xds_port
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        from kube.volume import pod_volumes  # (tests/ on sys.path: `measure`)

        from portico.infra.kubernetes import ADMIN_DIR, BOOTSTRAP_MOUNT, XDS_MOUNT

        name = f"portico-{m.GATEWAY_NAME}"
        config = self.api.get("", "configmaps", m.GATEWAY_NS, name)
        secret = self.api.get("", "secrets", m.GATEWAY_NS, f"{name}-xds")
        deployment = self.api.get("apps", "deployments", m.GATEWAY_NS, name)
        if config is None or secret is None or deployment is None:
            raise BenchError("the controller did not apply the Gateway's ConfigMap, Secret and Deployment")
        (self.root / "admin").mkdir(exist_ok=True)  # the pod's memory emptyDir holding Envoy's admin socket
        # the ConfigMap (bootstrap, SDS files) and the Secret (client certificate) as the kubelet mounts them
        config_volume, _ = pod_volumes(config, secret, {BOOTSTRAP_MOUNT: self.root / "config",
                                                        XDS_MOUNT: self.root / "xds", ADMIN_DIR: self.root / "admin"})
        boot = json.loads((config_volume.path / "bootstrap.json").read_text())
        for listener in boot.get("static_resources", {}).get("listeners", []):  # the pod's health port
            listener["address"]["socket_address"].update(address="127.0.0.1", port_value=free_port())
        xds = boot["static_resources"]["clusters"][0]
        # the Service's name resolves to the controller's loopback listener here
        xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"].update(
            address="127.0.0.1", port_value=self.xds_port)
        xds["type"] = "STATIC"
        xds.pop("dns_lookup_family", None)
        (self.root / "bootstrap.json").write_text(json.dumps(boot))
        # the Envoy container as the kubelet starts it: its args, $(POD_NAME) from the downward API
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: "portico-gw-pod-0" for e in container.get("env", [])
               if e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"}
        args = [re.sub(r"\$\((\w+)\)", lambda v: env.get(v[1], v[0]), a)
                .replace(f"{BOOTSTRAP_MOUNT}/bootstrap.json", str(self.root / "bootstrap.json"))
                for a in container["args"]]
        log = (self.root / "envoy.log").open("w")
        self.proc = await asyncio.create_subprocess_exec(bin_path("envoy"), *args, "--base-id", str(free_port()),
                                                         stdout=log, stderr=log)
        log.close()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def _get(http: aiohttp.ClientSession, port: int, host: str) -> int:
    async with http.get(f"http://127.0.0.1:{port}/", headers={"Host": host}) as resp:
        await resp.read()
        return resp.status


async def _until(what: str, check: Any, timeout: float, proc: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if proc.returncode is not None or time.monotonic() > deadline:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-20:])
            raise BenchError(f"{what}: not after {timeout:.0f} s (controller exit code {proc.returncode}); "
                             f"the controller's log ends:\n{tail}")
        await asyncio.sleep(0.05)


async def _add_routes(api: Any, http: aiohttp.ClientSession, port: int, log: Path, prefix: str, additions: int,
                      poll_ms: float, pause_s: float) -> dict[str, Any]:
    """`additions` HTTPRoutes created through the double's API, each polled until it answers 200."""
    url = f"{api.base_url}/apis/{G}/v1/namespaces/{NS}/httproutes"
    auth = {"Authorization": f"Bearer {api.token('bench')}"}
    latencies: list[float] = []
    windows: list[tuple[float, float]] = []
    unexpected: list[dict[str, Any]] = []
    timeouts = 0
    for k in range(additions):
        host, route = _route(prefix, k)
        start = time.monotonic()
        async with http.post(url, json=route, headers=auth) as resp:
            if resp.status != 201:
                raise BenchError(f"creating {route['metadata']['name']}: {resp.status} {await resp.text()}")
        deadline = start + 30
        while True:
            try:
                status = await _get(http, port, host)
            except (OSError, aiohttp.ClientError) as e:
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
            await asyncio.sleep(poll_ms / 1e3)
        if pause_s:
            await asyncio.sleep(pause_s)
    if len(latencies) < additions // 2:
        raise BenchError(f"only {len(latencies)} of {additions} routes were served")
    phases = [{("watch" if p == "watcher" else p): v for p, v in t.items()}
              for t in propagation.timelines(log, windows)]
    return {
        "timeline_ms": {p: percentile([t[p] for t in phases], 50) if phases else float("nan") for p in PHASES},
        "timelines": phases, "additions": additions, "served": len(latencies), "timeouts": timeouts,
        "p50_ms": percentile(latencies, 50), "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99), "max_ms": max(latencies), "unexpected": unexpected,
        "latencies_ms": latencies,
    }


async def measure(root: Path, echo_port: int, existing: int, additions: int, poll_ms: float, pause_s: float,
                  patterns: tuple[str, ...]) -> list[dict[str, Any]]:
    """One controller and one Envoy pod with `existing` routes; `additions` created in each pattern."""
    sys.path.insert(0, str(ROOT / "tests"))
    from kube.support import CONTROLLER
    from kube.support import running as double

    listener_port, xds_port = free_port(), free_port()
    out: list[dict[str, Any]] = []
    async with double() as (api, _client):
        for d in _objects(existing, listener_port, echo_port):
            api.put(d)
        kubeconfig = root / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "e",
            "clusters": [{"name": "e", "cluster": {"server": api.base_url}}],
            "users": [{"name": "u", "user": {"token": api.token("controller", CONTROLLER)}}],
            "contexts": [{"name": "e", "context": {"cluster": "e", "user": "u"}}]}))
        log_path = root / "controller.log"
        log = log_path.open("w")
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            bin_path("portico"), "controller", "--kubeconfig", str(kubeconfig), "--data-plane", "kubernetes",
            "--xds-address", f"127.0.0.1:{xds_port}", "--health-address", f"127.0.0.1:{free_port()}",
            "--state-dir", str(root / "state"), "--namespace", "portico-system", "--log-level", "info",
            "--log-format", "json", stdout=log, stderr=log)
        pod = Pod(root, api, xds_port)
        try:
            service = f"portico-{m.GATEWAY_NAME}"
            await _until("the Gateway's Service applied", _sync(lambda: api.get("", "services", m.GATEWAY_NS,
                                                                                 service) is not None),
                         120 + existing * 0.05, proc, log_path)
            svc = api.get("", "services", m.GATEWAY_NS, service)
            api.put({**svc, "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}})
            await pod.start()
            async with aiohttp.ClientSession() as http:
                last = m.hostname(existing - 1) if existing else None

                async def served() -> bool:
                    try:
                        if last is None:  # no route yet: Envoy's listener answers (404)
                            return await _get(http, listener_port, "nothing.bench") == 404
                        return await _get(http, listener_port, last) == 200
                    except (OSError, aiohttp.ClientError):
                        return False

                await _until("every existing route served", served, 120 + existing * 0.05, proc, log_path)
                ready_s = time.monotonic() - started
                # the start's status writes (every route's, then the Gateway's) done, and their
                # echoes through the watch taken in, before the first addition
                keys = [d["metadata"]["name"] for d in m.routes(existing)]
                await _until("every existing route's status", _sync(lambda: all(
                    accepted(api.get(G, "httproutes", NS, n)) for n in keys) and programmed(
                    api.get(G, "gateways", m.GATEWAY_NS, m.GATEWAY_NAME))), 120 + existing * 0.05, proc, log_path)
                await _quiet(api, proc, log_path)
                for pattern in patterns:
                    prefix = "paused" if pattern == propagation.PAUSED else "b2b"
                    result = await _add_routes(api, http, listener_port, log_path, prefix, additions, poll_ms,
                                               pause_s if pattern == propagation.PAUSED else 0)
                    out.append({"existing": existing, "pattern": pattern, "ready_s": ready_s, **result})
                    await asyncio.sleep(pause_s)
        finally:
            await pod.stop()
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            log.close()
    return out


async def _quiet(api: Any, proc: asyncio.subprocess.Process, log: Path, quiet_s: float = 1.0,
                 timeout: float = 120) -> None:
    """Until no status write for `quiet_s`."""
    deadline = time.monotonic() + timeout
    while True:
        writes = len(api.status_writes())
        await asyncio.sleep(quiet_s)
        if len(api.status_writes()) == writes:
            return
        if proc.returncode is not None or time.monotonic() > deadline:
            raise BenchError(f"status writes went on for {timeout:.0f} s; the controller's log: {log}")


def _sync(check: Any) -> Any:
    async def wrapped() -> bool:
        return bool(check())
    return wrapped


def run(sizes: list[int], additions: int, poll_ms: float = 5, pause_s: float = 0.1,
        patterns: tuple[str, ...] = propagation.PATTERNS) -> Report:
    report = Report("kube_propagation", f"10. Route propagation in Kubernetes mode ({additions} HTTPRoutes created "
                    f"per pattern through the API server double, polled every {poll_ms:g} ms through the Envoy pod; "
                    "baseline: standalone, same run)",
                    ["existing routes", "pattern", "p50 ms", "p90 ms", "p99 ms", "max ms", "standalone p50 ms",
                     "standalone p99 ms", "p50 / standalone", "p99 / standalone", "non-404/200", "timeouts",
                     "timed", *(f"{p} ms" for p in PHASES)])
    kube: list[dict[str, Any]] = []
    standalone: list[dict[str, Any]] = []
    with workdir("kube_propagation") as root:
        echo = Echo(root, "echo")
        with running(echo):
            for n in sizes:
                standalone += propagation.measure(root, echo, n, additions, poll_ms, pause_s, patterns)
                (root / f"kube-{n}").mkdir()
                kube += asyncio.run(measure(root / f"kube-{n}", echo.port, n, additions, poll_ms, pause_s,
                                            patterns))
    base = {(r["existing"], r["pattern"]): r for r in standalone}
    for r in sorted(kube, key=lambda r: (patterns.index(r["pattern"]), r["existing"])):
        b = base[(r["existing"], r["pattern"])]
        report.rows.append([r["existing"], r["pattern"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"],
                            b["p50_ms"], b["p99_ms"], ratio(r["p50_ms"], b["p50_ms"]), ratio(r["p99_ms"], b["p99_ms"]),
                            len(r["unexpected"]), r["timeouts"], len(r["timelines"]),
                            *(r["timeline_ms"][p] for p in PHASES)])
    report.data = {"runs": kube, "standalone": [{k: v for k, v in r.items() if k != "timelines"} for r in standalone],
                   "poll_ms": poll_ms, "pause_s": pause_s, "patterns": list(patterns)}
    errors = sum(len(r["unexpected"]) + r["timeouts"] for r in kube)
    summary = []
    for pattern in patterns:
        runs = [r for r in kube if r["pattern"] == pattern]
        at = next((r for r in runs if r["existing"] == TARGET_AT), runs[-1])
        b = base[(at["existing"], pattern)]
        where = f"{pattern} at {at['existing']} existing routes"
        report.target(f"p50 {where}, API write to first 200", f"<= {TARGET_P50_MS:g} ms", at["p50_ms"],
                      at["p50_ms"] <= TARGET_P50_MS)
        summary.append(f"{where}: p50 {at['p50_ms']:.0f} ms, p99 {at['p99_ms']:.0f} ms "
                       f"({ratio(at['p50_ms'], b['p50_ms']):.1f}x standalone's p50 {b['p50_ms']:.0f} ms)")
    report.target("responses other than 404/200, and timeouts", "0", errors, errors == 0)
    report.summary = "; ".join(summary) + f"; {errors} errors"
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench kube_propagation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0,3000", help="existing route counts (default 0,3000)")
    parser.add_argument("--additions", type=int, help="per pattern and size (default 100; with --quick 20)")
    parser.add_argument("--poll-ms", type=float, default=5)
    parser.add_argument("--pause-ms", type=float, default=100, help="the pause after each paused addition")
    parser.add_argument("--patterns", default=",".join(propagation.PATTERNS),
                        help=f"of {', '.join(propagation.PATTERNS)}")
    parser.add_argument("--quick", action="store_true", help="20 additions per pattern")
    args = parser.parse_args(argv)
    patterns = tuple(args.patterns.split(","))
    if not set(patterns) <= set(propagation.PATTERNS):
        parser.error(f"--patterns: choose from {', '.join(propagation.PATTERNS)}")
    additions = args.additions or (20 if args.quick else 100)
    report = run([int(s) for s in args.sizes.split(",")], additions, args.poll_ms, args.pause_ms / 1e3, patterns)
    report.emit()
    return report


if __name__ == "__main__":
    main()
