"""The translation pipeline, top to bottom: classes, gateways, routes, IR, status."""

from __future__ import annotations

from portico import CONTROLLER_NAME, ir
from portico.models import GatewayClass
from portico.translator import Snapshot, Translation
from portico.translator.backends import Backends
from portico.translator.backendtls import apply_backend_tls
from portico.translator.build import build_listeners, served_listeners
from portico.translator.context import Context
from portico.translator.features import SUPPORTED_FEATURES
from portico.translator.gateway import accepted_classes, build_gateways, class_conditions
from portico.translator.grpcroute import translate_grpcroutes
from portico.translator.httproute import translate_httproutes
from portico.translator.l4routes import translate_l4routes
from portico.translator.listenerset import attach_listener_sets
from portico.translator.routebinding import bind_routes
from portico.translator.status import gateway_status, gatewayclass_status, listenerset_status, route_status


def run(snapshot: Snapshot) -> Translation:
    ctx = Context(snapshot)
    out = Translation(ir.IR())
    for gc in ctx.all(GatewayClass, "GatewayClass"):
        if gc.spec.controller_name == CONTROLLER_NAME:
            out.statuses[gc.key] = gatewayclass_status(gc, class_conditions(ctx, gc), SUPPORTED_FEATURES)
    gateways = build_gateways(ctx, accepted_classes(ctx))
    listener_sets = attach_listener_sets(ctx, gateways)
    backends = Backends(ctx, snapshot.memo)
    http_routes = translate_httproutes(ctx, gateways, backends) + translate_grpcroutes(ctx, gateways, backends)
    bind_routes(http_routes)
    for result in http_routes:
        out.statuses[result.route.key] = route_status(result.route, result.parents, result.conds)
    for l4 in translate_l4routes(ctx, gateways, backends):
        out.statuses[l4.route.key] = route_status(l4.route, l4.parents, l4.conds)
    backend_tls = apply_backend_tls(ctx, gateways, backends)
    out.statuses.update(backend_tls.statuses)
    for lset in listener_sets:  # after routes: attachedRoutes are counted
        out.statuses[lset.key] = listenerset_status(lset)
    listeners: list[ir.Listener] = []
    owners: list[tuple[tuple[str, str, str], tuple[str, ...]]] = []
    for key, gw in sorted(gateways.items()):
        listeners += build_listeners(gw)
        owners.append(((key.kind, key.namespace, key.name), served_listeners(gw, None)))
        out.statuses[key] = gateway_status(gw)
    for lset in listener_sets:
        owners.append(((lset.key.kind, lset.key.namespace, lset.key.name), served_listeners(lset.gateway, lset.key)))
    out.ir = ir.IR(tuple(listeners), tuple(sorted(backends.clusters.values(), key=lambda c: c.name)),
                   tuple(owners), backend_tls.secrets)
    return out
