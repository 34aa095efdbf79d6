"""Entry point of the xds package: `build(ir) -> Resources`, pure and deterministic."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from google.protobuf.message import Message

from portico import ir
from portico.xds.clusters import build_cluster, build_load_assignment, invalid_backend_cluster
from portico.xds.listeners import build_listener
from portico.xds.routes import build_route_configuration
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
    out = Resources()
    invalid = invalid_backend_cluster()
    out.clusters[invalid.name] = invalid
    for c in model.clusters:
        out.clusters[c.name] = build_cluster(c)
        if not c.dns:
            out.endpoints[c.name] = build_load_assignment(c)
    for listener in model.listeners:
        built = build_listener(listener)
        if built is None:
            continue
        out.listeners[listener.name] = built
        for chain in listener.filter_chains:
            if chain.http is not None:
                out.routes[chain.http.route_config_name] = build_route_configuration(chain.http)
    out.secrets.update(build_secrets(model))
    return out


def resource_version(msg: Message) -> str:
    """A content hash: equal resources get equal versions, so diffs are per resource."""
    return hashlib.sha256(msg.SerializeToString(deterministic=True)).hexdigest()[:16]
