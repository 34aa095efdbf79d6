"""Entry point of the xds package: `build(ir) -> Resources`, pure and deterministic.

Virtual hosts travel by VHDS, not inside their route configuration: a route
configuration holds its header, its closing virtual hosts (what answers a Host it does
not serve) and a `vhds` source; each virtual host is a resource of its own, named
`<route configuration>/<virtual host>` (Envoy's VHDS namespace matching). Why: Envoy
decodes and validates every resource it receives, and a route configuration of 3000
virtual hosts took it 15 of its 22 ms to take in for one changed host (its
`rds.update_duration`, the construction of the route table, is the other 7 ms;
docs/benchmarks.md); by VHDS one change is one small resource to decode.

A connection manager whose routes are all under exact hostnames has no route
configuration and no VHDS: its routes are scoped by Host, one scope per hostname with its
route configuration inline (`xds.scopes`): Envoy still copied and rebuilt the whole route
table on each VHDS update (45-108 ms at 3000 hostnames), and takes in a changed scope in
0.3 ms whatever their number.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2, scoped_route_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from portico import ir
from portico.xds._common import pack, vhds_source
from portico.xds.clusters import build_cluster, build_load_assignment, invalid_backend_cluster
from portico.xds.jwt import JWT_FILTER, extension_config
from portico.xds.listeners import build_listener
from portico.xds.oidc import secrets as oidc_secrets
from portico.xds.routes import build_route, build_virtual_host, closing_virtual_hosts, route_config_header
from portico.xds.scopes import counted, exact, host_scope
from portico.xds.secrets import build_secrets

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
VHOST = "type.googleapis.com/envoy.config.route.v3.VirtualHost"
SCOPED = "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
EXTENSION = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"  # ECDS: jwt_authn (xds.jwt)
TYPE_URLS = (CLUSTER, ENDPOINT, SECRET, LISTENER, EXTENSION, ROUTE, VHOST, SCOPED)


@dataclass(frozen=True, eq=False)
class Serialized:
    """A resource (a virtual host, a cluster, its endpoints) as its wire bytes, with its
    content version made once: the xDS server takes thousands of them as they are (no
    pass over them per change). Only the bytes are kept: a protobuf message held about
    3 KB of arena per cluster, a packed Any 1.2 KB per resource (issue 30 item 6); the
    Any is made when the resource is sent, the message parsed only when asked for
    (dumps, tests)."""

    type_url: str
    data: bytes
    version: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", hashlib.sha256(self.data).hexdigest()[:16])

    @property
    def resource(self) -> any_pb2.Any:
        return any_pb2.Any(type_url=self.type_url, value=self.data)

    @classmethod
    def of(cls, msg: Message) -> Serialized:
        return cls(f"type.googleapis.com/{msg.DESCRIPTOR.full_name}", msg.SerializeToString(deterministic=True))

    def message(self) -> Message:
        return _MESSAGES[self.type_url].FromString(self.data)

    def __getattr__(self, name: str) -> Any:
        # reads a field of the message (dumps, tests), parsed for it
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.message(), name)


XdsResource: TypeAlias = Message | Serialized
_MESSAGES: dict[str, type[Message]] = {
    VHOST: route_components_pb2.VirtualHost,
    SCOPED: scoped_route_pb2.ScopedRouteConfiguration,
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
}


@dataclass
class Resources:
    """Envoy resources by name, one dict per xDS type."""

    listeners: dict[str, Message] = field(default_factory=dict)
    routes: dict[str, Message] = field(default_factory=dict)
    virtual_hosts: dict[str, Serialized] = field(default_factory=dict)  # VHDS, by resource name
    scopes: dict[str, Serialized] = field(default_factory=dict)  # scoped RDS, by resource name
    clusters: dict[str, XdsResource] = field(default_factory=dict)
    endpoints: dict[str, XdsResource] = field(default_factory=dict)
    secrets: dict[str, Message] = field(default_factory=dict)
    extensions: dict[str, Message] = field(default_factory=dict)  # ECDS, by resource name

    def wire(self) -> dict[str, dict[str, XdsResource]]:
        """type URL -> name -> resource, as the xDS server sends them."""
        return {
            CLUSTER: self.clusters,
            ENDPOINT: self.endpoints,
            SECRET: self.secrets,
            LISTENER: self.listeners,
            EXTENSION: self.extensions,
            ROUTE: self.routes,
            VHOST: self.virtual_hosts,
            SCOPED: self.scopes,
        }

    def by_type(self) -> dict[str, dict[str, Message]]:
        """type URL -> name -> resource, every one a message."""
        return {t: {n: r.message() if isinstance(r, Serialized) else r for n, r in d.items()}
                for t, d in self.wire().items()}


def build(model: ir.IR) -> Resources:
    """Every Envoy resource the IR needs. The invalid-backend cluster is always present."""
    return Builder().build(model)


_ClusterUnit = tuple[Serialized, Serialized | None]  # (Cluster, ClusterLoadAssignment or None for DNS)
# a virtual host built: its IR, its resource (and name), its routes built (as bytes)
_VirtualHostUnit = tuple[ir.VirtualHost, "_Named", dict[str, tuple[ir.Route, bytes]]]


@dataclass(frozen=True)
class _Assembled:
    """A route configuration's virtual hosts as last built: the IR's, their resource names
    in the same order ("": none), and the VHDS resources or scopes by name (the closing
    virtual hosts included)."""

    hosts: tuple[ir.VirtualHost, ...] = ()
    names: tuple[str, ...] = ()
    resources: dict[str, Serialized] = field(default_factory=dict)
    closing: tuple[str, ...] = ()  # the names of its closing virtual hosts
    routed: tuple[int, int] = (0, 0)  # exact hostnames with routes, wildcards or catch-all with routes
    by_host: bool = False  # scoped by Host (`xds.scopes`), else VHDS
    header: bytes = b""  # the route configuration's header (in every scope)
    # the JWT requirements (for the jwt_authn config, ECDS) and OIDC logins (their secrets
    # go over SDS) its routes name, each with how many routes name it: counted as the
    # virtual hosts change, not gathered from every route of the port on each change
    auth: Counter[ir.JWTAuthentication | ir.OIDC] = field(default_factory=Counter)


class Builder:
    """`build` with a memory of the previous call: clusters, listeners, route
    configurations, virtual hosts and routes equal to those built last time are reused,
    not rebuilt (the IR is comparable by design; compared by identity, then name and
    `==`, cheap when the translator reuses unchanged objects), so a change costs in
    proportion to what changed. Only the last call's units are kept: no growth under churn."""

    def __init__(self) -> None:
        self._clusters: dict[str, tuple[ir.Cluster, _ClusterUnit]] = {}
        self._cluster_input: tuple[ir.Cluster, ...] | None = None
        self._cluster_output: tuple[dict[str, XdsResource], dict[str, XdsResource]] = ({}, {})
        self._listeners: dict[str, tuple[ir.Listener, tuple[bool, ...], Message | None]] = {}
        # name -> (IR, scoped by Host, route configuration (None when scoped), VHDS resources or scopes)
        self._route_configs: dict[str, _RouteConfig] = {}
        self._vhosts: dict[str, dict[str, _VirtualHostUnit]] = {}  # route configuration -> name -> unit
        self._next_vhosts: dict[str, dict[str, _VirtualHostUnit]] = {}
        self._assembled: dict[str, _Assembled] = {}
        self._next_assembled: dict[str, _Assembled] = {}
        self._all: dict[str, tuple[tuple[int, ...], dict[str, Serialized]]] = {}  # type -> merged
        self._jwt_config: tuple[list[ir.JWTAuthentication], Message] | None = None
        self.scoped: frozenset[str] = frozenset()  # the route configurations scoped by Host, last call

    def build(self, model: ir.IR) -> Resources:
        out = Resources()
        out.clusters, out.endpoints = self._build_clusters(model.clusters)
        self._next_vhosts, self._next_assembled = {}, {}
        configs = {
            chain.http.route_config_name: (chain.http, *self._route_config(chain.http))
            for li in model.listeners
            for chain in li.filter_chains
            if chain.http is not None
        }
        listeners = {li.name: self._listener(li, configs) for li in model.listeners}
        served = {chain.http.route_config_name for li in model.listeners if listeners[li.name][2] is not None
                  for chain in li.filter_chains if chain.http is not None}
        configs = {name: config for name, config in configs.items() if name in served}
        self._listeners, self._route_configs = listeners, configs
        self.scoped = frozenset(name for name, (_, by_host, _, _) in configs.items() if by_host)
        self._vhosts = self._next_vhosts
        self._assembled = {**{n: a for n, a in self._assembled.items() if n in configs}, **self._next_assembled}
        out.listeners.update((name, msg) for name, (_, _, msg) in listeners.items() if msg is not None)
        out.routes.update((name, msg) for name, (_, _, msg, _) in configs.items() if msg is not None)
        auths = [a for name in configs for a in self._assembled[name].auth]
        if configs:  # (the jwt_authn filter of every HTTP connection manager asks for it)
            out.extensions[JWT_FILTER] = self._jwt_extension([a for a in auths if isinstance(a, ir.JWTAuthentication)])
        out.virtual_hosts = self._merged(VHOST, [made for _, by_host, _, made in configs.values() if not by_host])
        out.scopes = self._merged(SCOPED, [made for _, by_host, _, made in configs.values() if by_host])
        out.secrets.update(build_secrets(model))
        out.secrets.update(oidc_secrets(a for a in auths if isinstance(a, ir.OIDC)))
        return out

    def _jwt_extension(self, auths: list[ir.JWTAuthentication]) -> Message:
        """The jwt_authn config of these requirements: the very same message while they are
        the very same IR objects (most changes name no JWT at all)."""
        prev = self._jwt_config
        if prev is not None and len(prev[0]) == len(auths) and all(map(operator.is_, prev[0], auths)):
            return prev[1]
        built = extension_config(auths)
        self._jwt_config = (auths, built)
        return built

    def _merged(self, type_url: str, parts: list[dict[str, Serialized]]) -> dict[str, Serialized]:
        """Every route configuration's virtual hosts (or scopes) in one dict: the very same
        dict while they are the very same dicts (the xDS server then skips them)."""
        key = tuple(map(id, parts))
        prev = self._all.get(type_url)
        if prev is not None and key == prev[0]:
            return prev[1]
        merged = parts[0] if len(parts) == 1 else {n: r for part in parts for n, r in part.items()}
        self._all[type_url] = (key, merged)
        return merged

    def _build_clusters(self, clusters: tuple[ir.Cluster, ...]
                        ) -> tuple[dict[str, XdsResource], dict[str, XdsResource]]:
        """(clusters, endpoints) by name; the very same dicts while the IR's clusters are
        the very same tuple (a route change that adds no cluster)."""
        if clusters is self._cluster_input:
            return self._cluster_output
        units = {c.name: (c, self._cluster(c)) for c in clusters}
        invalid = invalid_backend_cluster()
        built: dict[str, XdsResource] = {invalid.name: invalid}
        endpoints: dict[str, XdsResource] = {}
        for name, (_, (cluster, assignment)) in units.items():
            built[name] = cluster
            if assignment is not None:
                endpoints[name] = assignment
        self._clusters, self._cluster_input, self._cluster_output = units, clusters, (built, endpoints)
        return built, endpoints

    def _cluster(self, c: ir.Cluster) -> _ClusterUnit:
        prev = self._clusters.get(c.name)
        if prev is not None and (prev[0] is c or prev[0] == c):
            return prev[1]
        return Serialized.of(build_cluster(c)), None if c.dns else Serialized.of(build_load_assignment(c))

    def _listener(self, li: ir.Listener, configs: dict[str, _RouteConfig]
                  ) -> tuple[ir.Listener, tuple[bool, ...], Message | None]:
        """The listener, built again only when it changed or one of its connection managers
        goes from VHDS to scoped routes or back."""
        modes = tuple(configs[c.http.route_config_name][1] for c in li.filter_chains if c.http is not None)
        prev = self._listeners.get(li.name)
        if prev is not None and prev[1] == modes and _shallow(prev[0]) == _shallow(li):
            return prev
        return li, modes, build_listener(li)

    def _route_config(self, http: ir.HTTPConfig) -> tuple[bool, Message | None, dict[str, Serialized]]:
        """Scoped by Host or not, the route configuration (None when scoped) and its
        virtual hosts as VHDS resources, or its scopes, by name."""
        name = http.route_config_name
        prev = self._route_configs.get(name)
        units = self._vhosts.get(name, {})
        self._next_vhosts[name] = units
        if prev is not None and (prev[0] is http or prev[0] == http):
            return prev[1], prev[2], prev[3]
        before = self._assembled.get(name, _Assembled())
        hosts = http.virtual_hosts
        # Only the virtual hosts between the unchanged (identical) first and last ones are
        # looked at: a change touches a few domains of thousands (`translator.incremental`).
        head = _common(hosts, before.hosts)
        tail = _common(hosts[::-1], before.hosts[::-1], min(len(hosts), len(before.hosts)) - head)
        out, into = counted(before.hosts[head:len(before.hosts) - tail]), counted(hosts[head:len(hosts) - tail])
        routed = (before.routed[0] - out[0] + into[0], before.routed[1] - out[1] + into[1])
        by_host = routed[0] > 0 and routed[1] == 0  # (`scopes.scoped`, counted as the virtual hosts change)
        header = route_config_header(http)
        header_bytes = header.SerializeToString(deterministic=True) if by_host else b""
        if by_host != before.by_host or header_bytes != before.header:  # all built again
            before, head, tail, units = _Assembled(), 0, 0, {}
            self._next_vhosts[name] = units
        middle = [self._virtual_host(header if by_host else name, vh, units) for vh in hosts[head:len(hosts) - tail]]
        auth = before.auth - _auth(before.hosts[head:len(before.hosts) - tail]) + _auth(hosts[head:len(hosts) - tail])
        resources = dict(before.resources)
        for gone in before.names[head:len(before.names) - tail]:
            if gone:
                del resources[gone]
        resources.update((r.name, r.resource) for r in middle if r.name)
        names = (*before.names[:head], *(r.name for r in middle), *before.names[len(before.names) - tail:])
        if len(units) > 2 * len(hosts) + 16:  # domains gone: forget their units
            live = {vh.name for vh in hosts}
            units = self._next_vhosts[name] = {n: u for n, u in units.items() if n in live}
        if by_host:  # (a Host no scope is keyed on: the scope filter answers)
            self._next_assembled[name] = _Assembled(hosts, names, resources, (), routed, True, header_bytes, auth)
            return True, None, resources
        # What answers a Host none of them serves travels by VHDS too: every route
        # configuration then has a virtual host, and Envoy's VHDS init (which waits for
        # one of its virtual hosts) always ends.
        for vh in before.closing:
            del resources[vh]
        closing = []
        for host in closing_virtual_hosts(http):
            host.name = vhds_name(name, host.name)
            closing.append(host.name)
            resources[host.name] = Serialized(VHOST, host.SerializeToString(deterministic=True))
        self._next_assembled[name] = _Assembled(hosts, names, resources, tuple(closing), routed, auth=auth)
        header.vhds.config_source.CopyFrom(vhds_source())
        return False, header, resources

    @staticmethod
    def _virtual_host(config: str | Message, vh: ir.VirtualHost, units: dict[str, _VirtualHostUnit]) -> _Named:
        """`vh` built: its VHDS resource (`config`: its route configuration's name), or with
        `config` the route configuration's header its scope (none for a wildcard or the
        catch-all: it has no routes when the configuration is scoped)."""
        prev = units.get(vh.name)
        if prev is not None and (prev[0] is vh or prev[0] == vh):
            units[vh.name] = prev
            return prev[1]
        routes = prev[2] if prev is not None else {}
        built: dict[str, tuple[ir.Route, bytes]] = {}

        def route(r: ir.Route) -> Message:
            old = routes.get(r.name)
            if old is not None and (old[0] is r or old[0] == r):
                built[r.name] = old
                return route_components_pb2.Route.FromString(old[1])
            msg = build_route(r)
            built[r.name] = (r, msg.SerializeToString(deterministic=True))
            return msg

        host = build_virtual_host(vh, route)
        if isinstance(config, str):
            host.name = vhds_name(config, vh.name)
            named = _Named(host.name, Serialized(VHOST, host.SerializeToString(deterministic=True)))
        elif exact(vh):
            scope = host_scope(config, vh.domains[0], host)
            named = _Named(scope.name, Serialized(SCOPED, scope.SerializeToString(deterministic=True)))
        else:
            named = _Named("", Serialized(VHOST, b""))
        units[vh.name] = (vh, named, built)
        return named


def _auth(hosts: Sequence[ir.VirtualHost]) -> Counter[ir.JWTAuthentication | ir.OIDC]:
    """The JWT requirements and OIDC logins the routes of `hosts` name, counted."""
    out: Counter[ir.JWTAuthentication | ir.OIDC] = Counter()
    for vh in hosts:
        for r in vh.routes:
            if r.action.jwt is not None:
                out[r.action.jwt] += 1
            if r.action.oidc is not None:
                out[r.action.oidc] += 1
    return out


@dataclass(frozen=True)
class _Named:
    name: str
    resource: Serialized


_RouteConfig = tuple[ir.HTTPConfig, bool, Message | None, dict[str, Serialized]]


def vhds_name(config: str, virtual_host: str) -> str:
    """A virtual host's VHDS resource name, which is also its name in Envoy: Envoy files a
    resource under the route configuration named before its last "/" and removes virtual
    hosts by that name."""
    return f"{config}/{virtual_host.replace('/', ':')}"


def _common(a: Sequence[object], b: Sequence[object], limit: int | None = None) -> int:
    """How many leading items `a` and `b` share, by identity (at most `limit`), counted
    in C: `compress` over `map(is_not)` stops at the first difference."""
    n = min(len(a), len(b)) if limit is None else limit
    return next(itertools.compress(itertools.count(), map(operator.is_not, a[:n], b[:n])), n)


def _shallow(li: ir.Listener) -> ir.Listener:
    """The listener without its route tables (they live in RDS, not in the Listener)."""
    chains = tuple(
        replace(c, http=replace(c.http, virtual_hosts=())) if c.http is not None else c for c in li.filter_chains
    )
    return replace(li, filter_chains=chains)


def resource_version(msg: XdsResource) -> str:
    """A content hash: equal resources get equal versions, so diffs are per resource."""
    if isinstance(msg, Serialized):
        return msg.version
    return hashlib.sha256(msg.SerializeToString(deterministic=True)).hexdigest()[:16]


def packed(msg: XdsResource) -> any_pb2.Any:
    """The resource in an Any, as DeltaDiscoveryResponse carries it."""
    if isinstance(msg, Serialized):
        return msg.resource
    return pack(msg)
