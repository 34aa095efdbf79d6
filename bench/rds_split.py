"""Envoy's own time to take in one changed virtual host, by how the route table is split.

Issue 30 item 4. One Envoy, one HTTP port, N hostnames (one virtual host each, two
routes to a static cluster, as Portico's are, and Portico's catch-all virtual host).
One hostname changed at a time, then hostnames added one at a time, and the time from
the control plane sending the change to Envoy's ACK of it measured per change. Four
ways to hand Envoy the same table:

- `rds`: one route configuration of N virtual hosts (Portico before VHDS);
- `vhds`: the route configuration holds none, every virtual host a VHDS resource, one
  changed host sent alone (Portico's design);
- `srds`: scoped RDS keyed on the Host header (the part before any ':'), one scope and
  one small route configuration per hostname; a change sends its route configuration.
  Scope keys match exactly: an upper-case Host, a wildcard hostname or a Host no scope
  names finds no scope (404 from the connection manager; there is no fallback scope);
- `srds-lua`: `srds` plus what it lacks: a Lua filter (by ECDS) that maps the Host,
  lower-cased and without its port, to its scope when one is keyed on it and to a
  fallback scope otherwise (where wildcard hostnames and the catch-all would live).
  Its table of hostnames is sent again on every added hostname.

The control plane here is a minimal delta xDS server (ADS + VHDS) in this module, so
that only the split differs between the modes: the same server, the same resources,
the same Envoy. Two times per change: push to ACK as the server sees it, and Envoy's
own, from its debug log ("Received DeltaDiscoveryResponse" to "... accepted", on its
main thread), which the machine's load distorts less. Modes are interleaved (rounds of
each) since the machine is shared. A few requests then show what each split answers
for an unknown host, an upper-case Host and a Host with a port.

    python -m bench.rds_split --hosts 3000 --changes 30 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import config_source_pb2, extension_pb2, grpc_service_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2, scoped_route_pb2
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.route.v3 import rds_pb2_grpc
from google.protobuf import any_pb2

from bench.common import bin_path, free_port, percentile

T = "type.googleapis.com/envoy."
LISTENER = T + "config.listener.v3.Listener"
CLUSTER = T + "config.cluster.v3.Cluster"
ROUTE = T + "config.route.v3.RouteConfiguration"
SCOPED = T + "config.route.v3.ScopedRouteConfiguration"
VHOST = T + "config.route.v3.VirtualHost"
EXTENSION = T + "config.core.v3.TypedExtensionConfig"
MODES = ("rds", "vhds", "srds", "srds-lua")
SCOPE_HEADER = "x-scope"
FALLBACK = "*"
BACKEND = "backend"
XDS = "xds"


def _pack(msg: Any) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg, type_url_prefix="type.googleapis.com/")
    return out


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(ads=config_source_pb2.AggregatedConfigSource(),
                                          resource_api_version=config_source_pb2.ApiVersion.V3)


def _delta_grpc() -> config_source_pb2.ConfigSource:
    api = config_source_pb2.ApiConfigSource(
        api_type=config_source_pb2.ApiConfigSource.DELTA_GRPC, transport_api_version=config_source_pb2.ApiVersion.V3,
        grpc_services=[grpc_service_pb2.GrpcService(envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=XDS))])
    return config_source_pb2.ConfigSource(api_config_source=api, resource_api_version=config_source_pb2.ApiVersion.V3)


def host(i: int) -> str:
    return f"host-{i}.example.com"


def virtual_host(i: int, generation: int, name: str, domains: list[str]) -> route_components_pb2.VirtualHost:
    """Host i's virtual host: a path route and a catch-all (an HTTPRoute with two rules), and a direct
    200 on /ok to measure requests on."""
    vh = route_components_pb2.VirtualHost(name=name, domains=domains)
    ok = vh.routes.add()  # what the per-request cost is measured on (no upstream)
    ok.match.path = "/ok"
    ok.direct_response.status = 200
    for prefix in (f"/api/v{generation}", "/"):
        r = vh.routes.add()
        r.match.prefix = prefix
        r.route.cluster = BACKEND
        r.route.timeout.seconds = 15
        h = r.response_headers_to_add.add()
        h.header.key, h.header.value = "x-generation", str(generation)
    return vh


def catch_all() -> route_components_pb2.VirtualHost:
    """What answers a Host no virtual host names (Portico's: 400 for a Host with userinfo, else 404).
    Scoped RDS has no such thing: a Host no scope is keyed on gets 404 from the connection manager."""
    vh = route_components_pb2.VirtualHost(name="catch-all", domains=["*"])
    for sign in (",", "@"):
        r = vh.routes.add()
        r.match.prefix = "/"
        m = r.match.headers.add(name=":authority")
        m.string_match.contains = sign
        r.direct_response.status = 400
    return vh


@dataclass
class Table:
    """The resources of one mode for N hosts, by type and name."""

    mode: str
    hosts: int
    resources: dict[str, dict[str, any_pb2.Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for t in (LISTENER, CLUSTER, ROUTE, SCOPED, VHOST, EXTENSION):
            self.resources[t] = {}
        self.resources[LISTENER]["http"] = _pack(self.listener())
        if self.mode == "rds":
            rc = route_pb2.RouteConfiguration(name="rc", ignore_port_in_host_matching=True)
            rc.virtual_hosts.extend(virtual_host(i, 0, host(i), [host(i)]) for i in range(self.hosts))
            rc.virtual_hosts.append(catch_all())
            self.resources[ROUTE]["rc"] = _pack(rc)
        elif self.mode == "vhds":
            rc = route_pb2.RouteConfiguration(name="rc", ignore_port_in_host_matching=True)
            rc.vhds.config_source.CopyFrom(_delta_grpc())
            self.resources[ROUTE]["rc"] = _pack(rc)
            self.resources[VHOST]["rc/catch-all"] = _pack(catch_all())
            for i in range(self.hosts):
                self.change(i, 0)
        else:
            for i in range(self.hosts):
                self.add_scope(i)
                self.change(i, 0)
            if self.mode == "srds-lua":
                self.add_scope(FALLBACK)
                fallback = route_pb2.RouteConfiguration(name=f"r-{FALLBACK}", ignore_port_in_host_matching=True)
                fallback.virtual_hosts.append(catch_all())
                self.resources[ROUTE][fallback.name] = _pack(fallback)
                self.resources[EXTENSION]["scope"] = self.lua()

    def add_scope(self, i: int | str) -> tuple[str, str, any_pb2.Any]:
        name = f"s-{i}"
        scope = scoped_route_pb2.ScopedRouteConfiguration(name=name, route_configuration_name=f"r-{i}")
        scope.key.fragments.add().string_key = host(i) if isinstance(i, int) else i
        self.resources[SCOPED][name] = _pack(scope)
        return SCOPED, name, self.resources[SCOPED][name]

    def lua(self) -> any_pb2.Any:
        """The filter choosing the scope: the Host's name, lower-case and without its port, when a
        scope is keyed on it, else the fallback scope (wildcard hostnames, the catch-all)."""
        names = (host(int(n[2:])) for n in self.resources[SCOPED] if n != f"s-{FALLBACK}")
        table = ",".join(f'["{n}"]=true' for n in names)
        code = (f"local hosts = {{{table}}}\n"
                "function envoy_on_request(h)\n"
                "  local name = string.lower(string.match(h:headers():get(':authority') or '', '^[^:]*'))\n"
                f"  h:headers():replace('{SCOPE_HEADER}', hosts[name] and name or '{FALLBACK}')\n"
                "end\n")
        lua = lua_pb2.Lua()
        lua.clear_route_cache.value = True
        lua.default_source_code.inline_string = code
        return _pack(extension_pb2.TypedExtensionConfig(name="scope", typed_config=_pack(lua)))

    def change(self, i: int, generation: int) -> tuple[str, str, any_pb2.Any]:
        """Host i at `generation`: (type, name, resource) of what carries it."""
        if self.mode == "rds":
            rc = route_pb2.RouteConfiguration()
            self.resources[ROUTE]["rc"].Unpack(rc)
            rc.virtual_hosts[i].CopyFrom(virtual_host(i, generation, host(i), [host(i)]))
            t, name, res = ROUTE, "rc", _pack(rc)
        elif self.mode == "vhds":
            t, name = VHOST, f"rc/{host(i)}"
            res = _pack(virtual_host(i, generation, name, [host(i)]))
        else:
            # the scope already chose the host: its one virtual host takes any Host
            rc = route_pb2.RouteConfiguration(name=f"r-{i}", ignore_port_in_host_matching=True)
            rc.virtual_hosts.append(virtual_host(i, generation, host(i), ["*"]))
            t, name, res = ROUTE, f"r-{i}", _pack(rc)
        self.resources[t][name] = res
        return t, name, res

    def add(self, i: int) -> list[tuple[str, str, any_pb2.Any]]:
        """A new host i: what is pushed, in order (the scope, whose route configuration Envoy then
        asks for, before the filter that chooses the scope)."""
        if self.mode == "rds":
            rc = route_pb2.RouteConfiguration()
            self.resources[ROUTE]["rc"].Unpack(rc)
            rc.virtual_hosts.append(virtual_host(i, 0, host(i), [host(i)]))
            self.resources[ROUTE]["rc"] = _pack(rc)
            return [(ROUTE, "rc", self.resources[ROUTE]["rc"])]
        if self.mode == "vhds":
            return [self.change(i, 0)]
        self.change(i, 0)  # Envoy subscribes to it once it holds the scope
        pushes = [self.add_scope(i)]
        if self.mode == "srds-lua":
            self.resources[EXTENSION]["scope"] = self.lua()
            pushes.append((EXTENSION, "scope", self.resources[EXTENSION]["scope"]))
        return pushes

    def listener(self) -> listener_pb2.Listener:
        hcm = hcm_pb2.HttpConnectionManager(stat_prefix="bench")
        if self.mode.startswith("srds"):
            sr = hcm.scoped_routes
            sr.name = "scopes"
            frag = sr.scope_key_builder.fragments.add().header_value_extractor
            if self.mode == "srds":
                frag.name, frag.element_separator, frag.index = "host", ":", 0  # Host with a port: its name
            else:
                frag.name, frag.index = SCOPE_HEADER, 0  # (no separator: the whole value)
                scope = hcm.http_filters.add(name="scope")
                scope.config_discovery.config_source.CopyFrom(_ads())
                scope.config_discovery.type_urls.append(T + "extensions.filters.http.lua.v3.Lua")
            sr.rds_config_source.CopyFrom(_ads())
            sr.scoped_rds.scoped_rds_config_source.CopyFrom(_ads())
        else:
            hcm.rds.route_config_name = "rc"
            hcm.rds.config_source.CopyFrom(_ads())
        router = hcm.http_filters.add()
        router.name = "envoy.filters.http.router"
        router.typed_config.CopyFrom(_pack(router_pb2.Router()))
        li = listener_pb2.Listener(name="http")
        li.address.socket_address.address = "127.0.0.1"
        li.address.socket_address.port_value = 0  # set by the caller
        chain = li.filter_chains.add()
        chain.filters.append(listener_components_pb2.Filter(name="envoy.filters.network.http_connection_manager",
                                                            typed_config=_pack(hcm)))
        return li


class Stream:
    """One Envoy delta stream: what it subscribed to and its responses waiting to go out."""

    def __init__(self) -> None:
        self.out: asyncio.Queue[discovery_pb2.DeltaDiscoveryResponse | None] = asyncio.Queue()
        self.names: dict[str, set[str] | None] = {}  # type -> names (None: wildcard)


class Server(ads_pb2_grpc.AggregatedDiscoveryServiceServicer,  # type: ignore[misc]
             rds_pb2_grpc.VirtualHostDiscoveryServiceServicer):  # type: ignore[misc]
    """A minimal delta ADS + VHDS server over one `Table`: the pushes and the ACKs, timed."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.streams: list[Stream] = []
        self.nonce = 0
        self.sent: dict[str, float] = {}  # nonce -> time sent
        self.acked: dict[str, float] = {}
        self.nacks: list[str] = []
        self.ack_event = asyncio.Event()

    async def DeltaAggregatedResources(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:  # noqa: N802
        async for r in self._serve(requests):
            yield r

    async def DeltaVirtualHosts(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:  # noqa: N802
        async for r in self._serve(requests):
            yield r

    async def _serve(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        stream = Stream()
        self.streams.append(stream)
        reader = asyncio.create_task(self._read(stream, requests))
        try:
            while (resp := await stream.out.get()) is not None:
                yield resp
        finally:
            reader.cancel()
            self.streams.remove(stream)

    async def _read(self, stream: Stream, requests: AsyncIterator[Any]) -> None:
        try:
            async for req in requests:
                self._handle(stream, req)
        finally:
            stream.out.put_nowait(None)

    def _handle(self, stream: Stream, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        now = time.monotonic()
        if req.response_nonce:
            if req.HasField("error_detail"):
                self.nacks.append(req.error_detail.message)
            self.acked.setdefault(req.response_nonce, now)
            self.ack_event.set()
        t = req.type_url
        first = t not in stream.names
        subscribe = set(req.resource_names_subscribe) - {"*"}
        if first and (not subscribe or "*" in req.resource_names_subscribe):
            stream.names[t] = None  # wildcard: every resource of the type
            self._send(stream, t, dict(self.table.resources.get(t, {})))
            return
        held = stream.names.setdefault(t, set())
        if held is not None:
            held.update(subscribe)
            held.difference_update(req.resource_names_unsubscribe)
        if subscribe:
            have = self.table.resources.get(t, {})
            self._send(stream, t, {n: have[n] for n in subscribe if n in have})

    def _send(self, stream: Stream, t: str, resources: dict[str, any_pb2.Any]) -> str:
        self.nonce += 1
        nonce = str(self.nonce)
        resp = discovery_pb2.DeltaDiscoveryResponse(type_url=t, nonce=nonce, system_version_info=nonce)
        for name, res in resources.items():
            resp.resources.add(name=name, version=str(hash(res.value)), resource=res)
        self.sent[nonce] = time.monotonic()
        stream.out.put_nowait(resp)
        return nonce

    async def push(self, t: str, name: str, res: any_pb2.Any) -> float:
        """Send one changed resource to the streams holding it; seconds until every one ACKed it."""
        nonces = [self._send(s, t, {name: res}) for s in self.streams
                  if t in s.names and (s.names[t] is None or name in (s.names[t] or ()))]
        if not nonces:
            raise RuntimeError(f"no stream holds {t} {name}")
        while not all(n in self.acked for n in nonces):
            self.ack_event.clear()
            await asyncio.wait_for(self.ack_event.wait(), 30)
        return max(self.acked[n] for n in nonces) - min(self.sent[n] for n in nonces)


def bootstrap(sock: str) -> dict[str, Any]:
    h2 = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": "bench", "cluster": "bench"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
                "dynamic_resources": {
            "ads_config": {"api_type": "DELTA_GRPC", "transport_api_version": "V3",
                           "set_node_on_first_message_only": True,
                           "grpc_services": [{"envoy_grpc": {"cluster_name": XDS}}]},
            "lds_config": ads, "cds_config": ads},
        "static_resources": {"clusters": [
            {"name": XDS, "type": "STATIC", "typed_extension_protocol_options": h2,
             "load_assignment": {"cluster_name": XDS, "endpoints": [{"lb_endpoints": [
                 {"endpoint": {"address": {"pipe": {"path": sock}}}}]}]}},
            {"name": BACKEND, "type": "STATIC", "load_assignment": {"cluster_name": BACKEND, "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": 9}}}}]}]}}]},
    }


def _request_cpu_us(pid: int, port: int, name: str, count: int = 2000) -> float:
    """Envoy's CPU (user + system, µs) per request, over `count` requests on one connection."""
    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        before = cpu()
        for _ in range(count):
            conn.request("GET", "/ok", headers={"Host": name})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"/ok answered {resp.status}")
        return (cpu() - before) / count * 1e6
    finally:
        conn.close()


def _get(port: int, host_header: str, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host_header})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("x-generation") or ""
    finally:
        conn.close()


_RECEIVED = re.compile(r"^(\S+) \[config\] Received DeltaDiscoveryResponse for \S+ at version (\d+)$")
_ACCEPTED = re.compile(r"^(\S+) \[config\] Delta config for \S+ accepted with")


def envoy_times(log: str, versions: set[str]) -> list[float]:
    """Envoy's own time (ms) per response of `versions`: from its log's "Received DeltaDiscoveryResponse"
    to the next "Delta config ... accepted" (both logged on Envoy's main thread, in order)."""
    out: list[float] = []
    received: datetime | None = None
    for line in log.splitlines():
        if m := _RECEIVED.match(line):
            received = datetime.fromisoformat(m.group(1)) if m.group(2) in versions else None
        elif (m := _ACCEPTED.match(line)) and received is not None:
            out.append((datetime.fromisoformat(m.group(1)) - received).total_seconds() * 1000)
            received = None
    return out


async def run_mode(mode: str, hosts: int, changes: int, additions: int, probe: bool,
                   requests: int = 2000) -> dict[str, Any]:
    """One Envoy fed `mode`'s table of `hosts`: `changes` hosts changed, then `additions` added, one
    at a time; Envoy's CPU over `requests` requests; with `probe`, what a few odd Hosts get."""
    table = Table(mode, hosts)
    port = free_port()
    li = listener_pb2.Listener()
    table.resources[LISTENER]["http"].Unpack(li)
    li.address.socket_address.port_value = port
    table.resources[LISTENER]["http"] = _pack(li)
    server = Server(table)
    with tempfile.TemporaryDirectory(prefix="rds-split-") as tmp:
        sock = os.path.join(tmp, "xds.sock")
        grpc_server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(server, grpc_server)
        rds_pb2_grpc.add_VirtualHostDiscoveryServiceServicer_to_server(server, grpc_server)
        grpc_server.add_insecure_port("unix:" + sock)
        await grpc_server.start()
        cfg = os.path.join(tmp, "envoy.json")
        Path(cfg).write_text(json.dumps(bootstrap(sock)))
        log = open(os.path.join(tmp, "envoy.log"), "w")  # noqa: SIM115
        envoy = subprocess.Popen([bin_path("envoy"), "-c", cfg, "--use-dynamic-base-id", "--concurrency", "1",
                                  "-l", "warning",
                                  "--component-log-level", "config:debug",
                                  "--log-format", "%Y-%m-%dT%T.%f [%n] %v"],
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            started = time.monotonic()
            last = hosts - 1
            while True:  # every host served: the last one's first generation answers
                if envoy.poll() is not None:
                    raise RuntimeError(Path(log.name).read_text()[-3000:])
                with contextlib.suppress(OSError):
                    if _get(port, host(last)) [1] == "0":
                        break
                if time.monotonic() - started > 20:
                    raise RuntimeError(f"{mode}: not served after 20 s")
                await asyncio.sleep(0.05)
            ready_s = time.monotonic() - started
            await asyncio.sleep(0.5)
            times: list[float] = []
            versions: set[str] = set()
            for n in range(changes):
                i = (n * 7919) % hosts
                t, name, res = table.change(i, n + 1)
                versions.add(str(server.nonce + 1))
                times.append(await server.push(t, name, res) * 1000)
                await asyncio.sleep(0.05)  # a quiet Envoy before the next change
            status, gen = _get(port, host((changes - 1) * 7919 % hosts))
            if gen != str(changes):
                raise RuntimeError(f"{mode}: last change not served ({status} {gen!r})")
            added: list[float] = []
            added_versions: list[set[str]] = []
            for n in range(additions):
                first = server.nonce + 1
                begin = time.monotonic()
                for t, name, res in table.add(hosts + n):
                    await server.push(t, name, res)
                while any(str(v) not in server.acked for v in range(first, server.nonce + 1)):
                    await asyncio.sleep(0.001)  # (the route configuration Envoy asked for)
                added.append((time.monotonic() - begin) * 1000)
                added_versions.append({str(v) for v in range(first, server.nonce + 1)})
                if _get(port, host(hosts + n))[1] != "0":
                    raise RuntimeError(f"{mode}: addition {n} not served")
                await asyncio.sleep(0.05)
            cpu_us = _request_cpu_us(envoy.pid, port, host(1), requests)
            answers: dict[str, Any] = {}
            if probe:
                answers = {
                    "Host with port": _get(port, host(1) + ":" + str(port))[0],
                    "upper-case Host": _get(port, host(1).upper())[0],
                    "unknown Host": _get(port, "unknown.example.com")[0],
                }
        finally:
            envoy.terminate()
            try:
                envoy.wait(10)
            except subprocess.TimeoutExpired:
                envoy.kill()
            log.close()
            envoy_log = Path(log.name).read_text()
            if os.environ.get("RDS_SPLIT_KEEP_LOG"):
                Path(os.environ["RDS_SPLIT_KEEP_LOG"] + f".{mode}.log").write_text(envoy_log)
            await grpc_server.stop(None)
    own = envoy_times(envoy_log, versions)
    own_added = [sum(envoy_times(envoy_log, v)) for v in added_versions]
    return {"mode": mode, "hosts": hosts, "ready_s": round(ready_s, 2), "push_to_ack_ms": times,
            "p50_ms": round(statistics.median(times), 1), "p90_ms": round(percentile(times, 90), 1),
            "max_ms": round(max(times), 1), "envoy_p50_ms": round(statistics.median(own), 1),
            "envoy_p90_ms": round(percentile(own, 90), 1), "envoy_max_ms": round(max(own), 1),
            "envoy_samples": len(own),
            "request_cpu_us": round(cpu_us, 1), "add_p50_ms": round(statistics.median(added), 1) if added else None,
            "add_envoy_p50_ms": round(statistics.median(own_added), 1) if added else None,
            "add_envoy_max_ms": round(max(own_added), 1) if added else None, "nacks": server.nacks, "answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hosts", type=int, nargs="+", default=[3000])
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--additions", type=int, default=10, help="new hosts added after the changes")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every mode")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    for hosts in args.hosts:
        for rnd in range(args.rounds):
            for mode in args.modes:
                load = os.getloadavg()[0]
                result = asyncio.run(run_mode(mode, hosts, args.changes, args.additions, probe=rnd == 0))
                result.pop("push_to_ack_ms")
                print(json.dumps({"round": rnd, "load1": round(load, 2), **result}), flush=True)


if __name__ == "__main__":
    main()
