"""Entry point of the xds package: `build(ir) -> Resources`, pure and deterministic."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from google.protobuf.message import Message

from portico import ir
from portico.xds.clusters import build_cluster, build_load_assignment, invalid_backend_cluster
from portico.xds.listeners import build_listener
from portico.xds.routes import build_route, build_route_configuration
from portico.xds.secrets import build_secrets

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
TYPE_URLS = (CLUSTER, ENDPOINT, SECRET, LISTENER, ROUTE)


@dataclass
class Resources:
    """Envoy resources by name, one dict per xDS type."""

    listeners: dict[str, Message] = field(default_factory=dict)
    routes: dict[str, Message] = field(default_factory=dict)
    clusters: dict[str, Message] = field(default_factory=dict)
    endpoints: dict[str, Message] = field(default_factory=dict)
    secrets: dict[str, Message] = field(default_factory=dict)

    def by_type(self) -> dict[str, dict[str, Message]]:
        """type URL -> name -> resource."""
        return {
            CLUSTER: self.clusters,
            ENDPOINT: self.endpoints,
            SECRET: self.secrets,
            LISTENER: self.listeners,
            ROUTE: self.routes,
        }


def build(model: ir.IR) -> Resources:
    """Every Envoy resource the IR needs. The invalid-backend cluster is always present."""
    return Builder().build(model)


_ClusterUnit = tuple[Message, Message | None]  # (Cluster, ClusterLoadAssignment or None for DNS)


class Builder:
    """`build` with a memory of the previous call: clusters, listeners, route
    configurations and routes equal to those built last time are reused, not rebuilt
    (the IR is comparable by design; compared by name then `==`, cheap when the
    translator reuses unchanged objects), so a change costs in proportion to what
    changed. Only the last call's units are kept: no growth under churn."""

    def __init__(self) -> None:
        self._clusters: dict[str, tuple[ir.Cluster, _ClusterUnit]] = {}
        self._listeners: dict[str, tuple[ir.Listener, Message | None]] = {}
        self._route_configs: dict[str, tuple[ir.HTTPConfig, Message]] = {}
        self._routes: dict[str, tuple[ir.Route, Message]] = {}
        self._next_routes: dict[str, tuple[ir.Route, Message]] = {}

    def build(self, model: ir.IR) -> Resources:
        out = Resources()
        invalid = invalid_backend_cluster()
        out.clusters[invalid.name] = invalid
        clusters = {c.name: (c, self._cluster(c)) for c in model.clusters}
        listeners = {li.name: (li, self._listener(li)) for li in model.listeners}
        self._next_routes = {}
        configs = {
            chain.http.route_config_name: (chain.http, self._route_config(chain.http))
            for li in model.listeners
            if listeners[li.name][1] is not None
            for chain in li.filter_chains
            if chain.http is not None
        }
        self._clusters, self._listeners, self._route_configs = clusters, listeners, configs
        self._routes = self._next_routes
        for name, (_, (cluster, assignment)) in clusters.items():
            out.clusters[name] = cluster
            if assignment is not None:
                out.endpoints[name] = assignment
        out.listeners.update((name, msg) for name, (_, msg) in listeners.items() if msg is not None)
        out.routes.update((name, msg) for name, (_, msg) in configs.items())
        out.secrets.update(build_secrets(model))
        return out

    def _cluster(self, c: ir.Cluster) -> _ClusterUnit:
        prev = self._clusters.get(c.name)
        if prev is not None and prev[0] == c:
            return prev[1]
        return build_cluster(c), None if c.dns else build_load_assignment(c)

    def _listener(self, li: ir.Listener) -> Message | None:
        prev = self._listeners.get(li.name)
        if prev is not None and _shallow(prev[0]) == _shallow(li):
            return prev[1]
        return build_listener(li)

    def _route_config(self, http: ir.HTTPConfig) -> Message:
        prev = self._route_configs.get(http.route_config_name)
        if prev is not None and prev[0] == http:
            self._keep_routes(http)
            return prev[1]
        return build_route_configuration(http, self._route)

    def _keep_routes(self, http: ir.HTTPConfig) -> None:
        for vh in http.virtual_hosts:
            for route in vh.routes:
                if route.name in self._routes:
                    self._next_routes[route.name] = self._routes[route.name]

    def _route(self, route: ir.Route) -> Message:
        prev = self._routes.get(route.name)
        built = prev[1] if prev is not None and prev[0] == route else build_route(route)
        self._next_routes[route.name] = (route, built)
        return built


def _shallow(li: ir.Listener) -> ir.Listener:
    """The listener without its route tables (they live in RDS, not in the Listener)."""
    chains = tuple(
        replace(c, http=replace(c.http, virtual_hosts=())) if c.http is not None else c for c in li.filter_chains
    )
    return replace(li, filter_chains=chains)


def resource_version(msg: Message) -> str:
    """A content hash: equal resources get equal versions, so diffs are per resource."""
    return hashlib.sha256(msg.SerializeToString(deterministic=True)).hexdigest()[:16]
