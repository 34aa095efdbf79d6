"""TLSRoute, TCPRoute and UDPRoute → `ListenerState.l4_routes`.

Attachment follows the ParentReference rules shared by every route kind
(`attachment.attach`): sectionName and port select listeners, allowedRoutes
filters by kind and namespace, and a TLSRoute's hostnames must intersect the
listener hostname (they become the SNI names its filter chains match).

Backends (BackendRef rules of each kind): an invalid backendRef (unknown kind,
missing Service, cross-namespace without a ReferenceGrant) keeps its weight
and rejects that share of connections (TCP/TLS) or drops that share of
datagrams (UDP); the route parent gets ResolvedRefs=False with the reason.

Several routes on one listener: every one is Accepted, but a TCP or UDP
listener forwards to the oldest route only (creation timestamp, then
namespace/name), and a TLS listener gives each SNI hostname to the oldest
route claiming it (`build.tls_chains`, `build.l4_backends`).

UDP weights: Envoy's udp_proxy forwards to one cluster, so a UDPRoute with
several weighted backends gets a cluster of its own whose endpoints carry the
weights (each backend's share spread evenly over its endpoints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from portico import ir
from portico.ir import AppProtocol
from portico.models import L4RouteSpec, Resource, TCPRoute, TLSRoute, UDPRoute
from portico.objects import ObjectKey
from portico.translator.attachment import ParentResult, attach
from portico.translator.backends import Backends
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.gateway import GatewayState, L4Routes

# Route kind -> (model, protocol its backends speak)
L4_KINDS: dict[str, tuple[type[TLSRoute | TCPRoute | UDPRoute], AppProtocol]] = {
    "TLSRoute": (TLSRoute, "tcp"),
    "TCPRoute": (TCPRoute, "tcp"),
    "UDPRoute": (UDPRoute, "udp"),
}


@dataclass
class L4RouteResult:
    route: Resource
    parents: list[ParentResult]
    conds: list[Cond]  # route-wide (ResolvedRefs), applied to every parent entry


def translate_l4routes(ctx: Context, gateways: dict[ObjectKey, GatewayState],
                       backends: Backends) -> list[L4RouteResult]:
    results = []
    for kind, (model, protocol) in L4_KINDS.items():
        for route in ctx.all(model, kind):
            result = translate_route(ctx, route, route.spec, gateways, backends, protocol)
            if result is not None:
                results.append(result)
    return results


def translate_route(ctx: Context, route: Resource, spec: L4RouteSpec, gateways: dict[ObjectKey, GatewayState],
                    backends: Backends, protocol: AppProtocol) -> L4RouteResult | None:
    # TCPRoute and UDPRoute have no hostnames: attachment treats them as "*".
    route_hostnames = spec.hostnames if route.kind == "TLSRoute" else []
    parents = attach(ctx, route, route_hostnames, spec, gateways)
    if not parents:
        return None
    weighted, conds = route_backends(route, spec, backends, protocol)
    if protocol == "udp":
        weighted = udp_backends(route, weighted, backends)
    precedence = (route.metadata.creation_timestamp, route.namespace, route.name)
    for parent in parents:
        for binding in parent.bindings:
            ls = binding.listener
            ls.attached_routes += 1
            # A TLS listener that terminates re-encrypts towards backends a BackendTLSPolicy
            # targets; passthrough and TCP streams are forwarded as they are.
            terminates = ls.protocol == "TLS" and ls.tls_mode == "Terminate"
            shares = backends.originating_backends(weighted) if terminates else weighted
            ls.l4_routes.append(L4Routes(binding.hostnames, shares, precedence))
    return L4RouteResult(route, parents, conds)


def route_backends(route: Resource, spec: L4RouteSpec, backends: Backends,
                   protocol: AppProtocol) -> tuple[tuple[ir.WeightedBackend, ...], list[Cond]]:
    """Every backendRef of every rule, weighted; invalid ones keep their share
    (cluster None: those connections are rejected, those datagrams dropped)."""
    weighted: list[ir.WeightedBackend] = []
    conds: list[Cond] = []
    for rule in spec.rules:
        for ref in rule.backend_refs:
            resolved = backends.resolve(route, ref, protocol, originate_tls=False)
            if resolved.problem:
                conds.append(resolved.problem)
            weighted.append(ir.WeightedBackend(resolved.cluster.name if resolved.cluster else None, ref.weight))
    return tuple(weighted), conds


def udp_backends(route: Resource, weighted: tuple[ir.WeightedBackend, ...],
                 backends: Backends) -> tuple[ir.WeightedBackend, ...]:
    """Several valid weighted backends become one cluster of their endpoints,
    weighted so that each backend gets its share (BackendRef.weight). Invalid
    backends stay listed beside it (their share cannot be dropped by udp_proxy)."""
    valid = [b for b in weighted if b.cluster is not None and b.weight > 0]
    clusters = [backends.clusters[b.cluster] for b in valid if b.cluster is not None]
    if len({c.name for c in clusters}) < 2 or any(c.dns for c in clusters):
        return weighted
    # lcm of the endpoint counts: every backend's weight divides evenly over its endpoints
    scale = math.lcm(*(len(c.endpoints) for c in clusters if c.endpoints))
    merged: dict[tuple[str, int], int] = {}
    for b, c in zip(valid, clusters, strict=True):
        for ep in c.endpoints:
            key = (ep.address, ep.port)
            merged[key] = merged.get(key, 0) + b.weight * scale // len(c.endpoints)
    name = f"udproute/{route.namespace}/{route.name}"
    endpoints = tuple(ir.Endpoint(a, p, w) for (a, p), w in sorted(merged.items()))
    backends.clusters[name] = ir.Cluster(name, endpoints, "udp")
    return (ir.WeightedBackend(name, 1),) + tuple(b for b in weighted if b.cluster is None)
