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
"""

from __future__ import annotations

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
    parents = attach(ctx, route, route_hostnames, spec.parent_refs, gateways)
    if not parents:
        return None
    weighted, conds = route_backends(route, spec, backends, protocol)
    precedence = (route.metadata.creation_timestamp, route.namespace, route.name)
    for parent in parents:
        for binding in parent.bindings:
            binding.listener.attached_routes += 1
            binding.listener.l4_routes.append(L4Routes(binding.hostnames, weighted, precedence))
    return L4RouteResult(route, parents, conds)


def route_backends(route: Resource, spec: L4RouteSpec, backends: Backends,
                   protocol: AppProtocol) -> tuple[tuple[ir.WeightedBackend, ...], list[Cond]]:
    """Every backendRef of every rule, weighted; invalid ones keep their share
    (cluster None: those connections are rejected, those datagrams dropped)."""
    weighted: list[ir.WeightedBackend] = []
    conds: list[Cond] = []
    for rule in spec.rules:
        for ref in rule.backend_refs:
            resolved = backends.resolve(route, ref, protocol)
            if resolved.problem:
                conds.append(resolved.problem)
            weighted.append(ir.WeightedBackend(resolved.cluster.name if resolved.cluster else None, ref.weight))
    return tuple(weighted), conds
