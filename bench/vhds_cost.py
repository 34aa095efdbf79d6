"""What in Portico's virtual hosts makes Envoy's VHDS update expensive (issue 30 item 4).

`bench.rds_split` compares ways to split a synthetic route table. This one takes the
table Portico really sends: the bench manifests (one Gateway, N HTTPRoutes, one
hostname each) translated offline (`portico config-dump --xds -f DIR`), every
resource of the xDS group (listener, clusters, endpoints, ECDS filter configurations,
the route configuration and its N+1 virtual hosts) served to one Envoy by
`bench.rds_split`'s minimal delta ADS + VHDS server, with Portico's bootstrap
(`infra.envoy.bootstrap`: stats matcher, overload manager). Then `changes` virtual
hosts are replaced one at a time and `additions` added, and Envoy's own time per
update read from its debug log (received to accepted, on its main thread). Last,
Envoy's CPU per request (/proc ticks over `requests` requests on one connection) for
a Host no virtual host names (404 from Envoy, no upstream): what the Host check costs
each request, as a filter or as routes.

Variants remove one part at a time, to find what the rebuild pays for:

  portico          as Portico sends it
  per-vhost-400    Portico's before the check of the Host moved to one filter per
                   connection manager (`xds.listeners.bad_authority_filter`): no such
                   filter, two routes first in every virtual host answering 400 to a
                   Host with '@' or ','

  bare             one route per virtual host (prefix, cluster), nothing else
  plain-bootstrap  as sent, Envoy without Portico's stats matcher and overload manager

    python -m bench.vhds_cost --routes 3000 --changes 30 --additions 10 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.route.v3 import rds_pb2_grpc
from google.protobuf import any_pb2, json_format
from google.protobuf import symbol_database as _symbol_database

from bench import manifests as m
from bench.common import bin_path, free_port, percentile, write_docs
from bench.rds_split import LISTENER, VHOST, Server, _get, envoy_times
from portico.xds.listeners import BAD_AUTHORITY_FILTER

VARIANTS = ("portico", "per-vhost-400", "bare", "plain-bootstrap")
T = "type.googleapis.com/envoy."
TYPES = {"Listener": LISTENER, "Cluster": T + "config.cluster.v3.Cluster",
         "ClusterLoadAssignment": T + "config.endpoint.v3.ClusterLoadAssignment",
         "RouteConfiguration": T + "config.route.v3.RouteConfiguration",
         "TypedExtensionConfig": T + "config.core.v3.TypedExtensionConfig",
         "Secret": T + "extensions.transport_sockets.tls.v3.Secret", "VirtualHost": VHOST}


def portico_resources(routes: int, root: Path) -> dict[str, dict[str, Any]]:
    """The xDS group Portico sends for the bench Gateway and `routes` HTTPRoutes, type ->
    name -> resource as JSON (the messages `xds.resources.build` makes, unredacted: the
    offline translation of `portico config-dump --xds -f`)."""
    from google.protobuf.json_format import MessageToDict

    from portico.standalone import offline
    from portico.xds.resources import build

    d = root / "manifests"
    write_docs(d / "00-gateway.yaml", m.gateway_docs())
    write_docs(d / "10-backend.yaml", m.service_docs("echo", "default", 9))
    docs = m.routes(routes)
    for i in range(0, routes, 1000):
        write_docs(d / f"20-{i // 1000:02d}.yaml", [m.as_list(docs[i:i + 1000])])
    # a route without hostnames keeps the connection manager on VHDS (what this benchmark
    # measures; with exact hostnames only, Portico scopes the routes by Host: `xds.scopes`)
    catch_all = m.http_route("catch-all", "default", "-", [("echo", 1)], path="/catch-all")
    del catch_all["spec"]["hostnames"]
    write_docs(d / "30-catch-all.yaml", [catch_all])
    (model,) = offline([str(d)]).loop.last_irs.values()
    return {t.rsplit(".", 1)[-1]: {n: MessageToDict(msg) for n, msg in resources.items()}
            for t, resources in build(model).by_type().items()}


def _any(type_url: str, doc: dict[str, Any]) -> any_pb2.Any:
    import portico.xds.resources  # noqa: F401  (registers every message type Portico sends)

    cls = _symbol_database.Default().GetSymbol(type_url.split("/", 1)[1])
    msg = json_format.ParseDict(doc, cls(), ignore_unknown_fields=False)
    out = any_pb2.Any()
    out.Pack(msg, type_url_prefix="type.googleapis.com/")
    return out


def strip(vh: dict[str, Any], variant: str) -> dict[str, Any]:
    """One virtual host without what `variant` removes."""
    vh = copy.deepcopy(vh)
    routes = vh.get("routes", [])
    if variant == "per-vhost-400":
        routes = [{"name": "portico/bad-authority", "directResponse": {"status": 400}, "match": {
            "prefix": "/", "headers": [{"name": ":authority", "stringMatch": {"contains": sign}}]}}
            for sign in (",", "@")] + routes
    if variant == "bare":
        routes = [{"name": r["name"], "match": {"prefix": "/"}, "route": {"cluster": r["route"]["cluster"]}}
                  for r in routes if "route" in r] or routes[:1]
    vh["routes"] = routes
    return vh


class Table:
    """The resources by type URL and name, for `rds_split.Server` (which reads `.resources`)."""

    def __init__(self, dump: dict[str, dict[str, Any]], variant: str, port: int) -> None:
        self.variant = variant
        self.vhosts = {n: strip(v, variant) for n, v in dump["VirtualHost"].items()}
        self.resources: dict[str, dict[str, any_pb2.Any]] = {t: {} for t in TYPES.values()}
        for kind, items in dump.items():
            if kind == "VirtualHost":
                continue
            for name, doc in items.items():
                if kind == "Listener":
                    doc = copy.deepcopy(doc)
                    doc["address"] = {"socketAddress": {"address": "127.0.0.1", "portValue": port}}
                    if variant == "per-vhost-400":
                        for chain in doc["filterChains"]:
                            for f in chain["filters"]:
                                hcm = f["typedConfig"]
                                hcm["httpFilters"] = [h for h in hcm.get("httpFilters", [])
                                                      if h["name"] != BAD_AUTHORITY_FILTER]
                self.resources[TYPES[kind]][name] = _any(TYPES[kind], doc)
        for name, doc in self.vhosts.items():
            self.resources[VHOST][name] = _any(VHOST, doc)
        self.prefix = next(iter(dump["RouteConfiguration"])) + "/"
        self.template = next(v for n, v in self.vhosts.items() if not n.endswith("/*"))
        self.template_host = self.template["domains"][0]

    def vhost(self, host: str, generation: int) -> tuple[str, any_pb2.Any]:
        """A virtual host like the others for `host`, its routes answering with `generation`."""
        doc = json.loads(json.dumps(self.template).replace(self.template_host, host))
        for r in doc["routes"]:
            if "route" in r:
                r["responseHeadersToAdd"] = [{"header": {"key": "x-generation", "value": str(generation)}}]
        name = self.prefix + host
        self.resources[VHOST][name] = _any(VHOST, doc)
        return name, self.resources[VHOST][name]


def bootstrap(sock: str, variant: str) -> dict[str, Any]:
    from portico.infra.envoy import bootstrap as portico_bootstrap

    out = portico_bootstrap("", 0, node_id="bench", node_cluster="bench", xds_socket=sock)
    if variant == "plain-bootstrap":
        out.pop("stats_config", None)
        out.pop("overload_manager", None)
    return out


def _cpu_per_request_us(pid: int, port: int, host: str, count: int) -> float:
    """Envoy's CPU (user + system, µs) per request over `count` requests on one connection."""
    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        before = cpu()
        for _ in range(count):
            conn.request("GET", "/", headers={"Host": host})
            conn.getresponse().read()
        return (cpu() - before) / count * 1e6
    finally:
        conn.close()


async def run_variant(dump: dict[str, dict[str, Any]], variant: str, changes: int, additions: int,
                      concurrency: int = 1, requests: int = 2000) -> dict[str, Any]:
    port = free_port()
    table = Table(dump, variant, port)
    server = Server(table)  # type: ignore[arg-type]
    hosts = [v["domains"][0] for n, v in table.vhosts.items() if not n.endswith("/*")]
    with tempfile.TemporaryDirectory(prefix="vhds-cost-") as tmp:
        sock = os.path.join(tmp, "xds.sock")
        grpc_server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(server, grpc_server)
        rds_pb2_grpc.add_VirtualHostDiscoveryServiceServicer_to_server(server, grpc_server)
        grpc_server.add_insecure_port("unix:" + sock)
        await grpc_server.start()
        cfg = os.path.join(tmp, "envoy.json")
        Path(cfg).write_text(json.dumps(bootstrap(sock, variant)))
        log = open(os.path.join(tmp, "envoy.log"), "w")  # noqa: SIM115
        envoy = subprocess.Popen([bin_path("envoy"), "-c", cfg, "--use-dynamic-base-id", "--concurrency",
                                  str(concurrency), "-l", "warning", "--component-log-level", "config:debug",
                                  "--log-format", "%Y-%m-%dT%T.%f [%n] %v"],
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            started = time.monotonic()
            while True:  # every host served: the last one answers 200
                if envoy.poll() is not None:
                    raise RuntimeError(Path(log.name).read_text()[-3000:])
                with contextlib.suppress(OSError):
                    if _get(port, hosts[-1])[0] in (200, 503):
                        break
                if time.monotonic() - started > 60:
                    raise RuntimeError(f"{variant}: not served after 60 s")
                await asyncio.sleep(0.05)
            ready_s = time.monotonic() - started
            await asyncio.sleep(0.5)
            push: list[float] = []
            versions: set[str] = set()
            for n in range(changes):
                name, res = table.vhost(hosts[(n * 7919) % len(hosts)], n + 1)
                versions.add(str(server.nonce + 1))
                push.append(await server.push(VHOST, name, res) * 1000)
                await asyncio.sleep(0.05)
            added_versions: set[str] = set()
            for n in range(additions):
                name, res = table.vhost(f"added-{n}.default.bench", 0)
                added_versions.add(str(server.nonce + 1))
                await server.push(VHOST, name, res)
                await asyncio.sleep(0.05)
            status, gen = _get(port, hosts[((changes - 1) * 7919) % len(hosts)])
            if changes and gen != str(changes):
                raise RuntimeError(f"{variant}: last change not served ({status} {gen!r})")
            bad = _get(port, f"{hosts[0]}:80@unknown.bench")[0]
            if bad != 400:
                raise RuntimeError(f"{variant}: a Host with userinfo answered {bad}")
            cpu_us = _cpu_per_request_us(envoy.pid, port, "unknown.bench", requests) if requests else float("nan")
        finally:
            envoy.terminate()
            try:
                envoy.wait(10)
            except subprocess.TimeoutExpired:
                envoy.kill()
            log.close()
            envoy_log = Path(log.name).read_text()
            await grpc_server.stop(None)
    own = envoy_times(envoy_log, versions)
    own_added = envoy_times(envoy_log, added_versions)
    return {"variant": variant, "virtual_hosts": len(table.vhosts), "ready_s": round(ready_s, 2),
            "push_to_ack_p50_ms": round(statistics.median(push), 1),
            "envoy_p50_ms": round(statistics.median(own), 1), "envoy_p90_ms": round(percentile(own, 90), 1),
            "envoy_max_ms": round(max(own), 1), "envoy_samples": len(own),
            "add_envoy_p50_ms": round(statistics.median(own_added), 1) if own_added else None,
            "request_cpu_us": round(cpu_us, 1), "nacks": server.nacks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--routes", type=int, default=3000)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--additions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every variant")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--concurrency", type=int, default=1, help="Envoy's worker threads")
    parser.add_argument("--requests", type=int, default=2000, help="for Envoy's CPU per request (0: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vhds-cost-") as tmp:
        dump = portico_resources(args.routes, Path(tmp))
    for rnd in range(args.rounds):
        for variant in args.variants:
            load = os.getloadavg()[0]
            result = asyncio.run(run_variant(dump, variant, args.changes, args.additions, args.concurrency,
                                                 args.requests))
            print(json.dumps({"round": rnd, "load1": round(load, 2), **result}), flush=True)


if __name__ == "__main__":
    main()
