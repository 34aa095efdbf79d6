"""The translation pipeline, top to bottom: classes, gateways, routes, IR, status.

Every Gateway of ours gets its own output (`GatewayOutput`): the xDS IR of its
data plane, holding only the clusters and secrets its own listeners use, and the
infrastructure description its mode's infrastructure creates it from.
"""

from __future__ import annotations

from portico import ir
from portico.contracts import GatewayOutput
from portico.models import Gateway, GatewayClass
from portico.objects import ObjectKey
from portico.translator.backends import Backends, RuleMemo
from portico.translator.build import build_listeners, served_listeners
from portico.translator.context import Context
from portico.translator.features import SUPPORTED_FEATURES
from portico.translator.gateway import GatewayState, accepted_classes, build_gateways, class_conditions
from portico.translator.grpcroute import translate_grpcroutes
from portico.translator.httproute import translate_httproutes
from portico.translator.incremental import Incremental, State
from portico.translator.l4routes import L4RouteResult, translate_l4routes
from portico.translator.listenerset import ListenerSetState, attach_listener_sets
from portico.translator.policies import Policies
from portico.translator.routebinding import RouteResult, bind_routes
from portico.translator.snapshot import Snapshot, Translation
from portico.translator.status import (
    gateway_status,
    gatewayclass_status,
    listenerset_status,
    policy_status,
    route_status,
)
from portico.translator.tlsoverlap import mark_overlapping_tls


def translate(snapshot: Snapshot) -> Translation:
    """Snapshot → one output per Gateway + every status we own (see the package docstring).

    With an `Incremental` memo, a change of routes alone patches the previous
    translation (`translator.incremental`); the output is the same either way."""
    memo = snapshot.memo
    if not isinstance(memo, Incremental):
        return run(snapshot, memo)[0]
    try:
        patched = memo.patch(snapshot)
        if patched is not None:
            return patched
        # The kept state is replaced either way: released before the pipeline builds the
        # next one, not after, the two never live side by side (the peak of a full
        # translation, which the process's RSS keeps: issue 30 item 6).
        memo.forget()
        translation, state = run(snapshot, memo.rules)
    except BaseException:
        memo.forget()  # a half-applied state is never patched again
        raise
    memo.keep(snapshot, state)
    return translation


def patch(snapshot: Snapshot) -> Translation | None:
    """`translate`'s incremental path alone: the kept translation patched for a change of
    routes, or None when it cannot be (then `translate` runs the pipeline). A change of a
    few routes costs about a millisecond this way, little enough for the control loop to
    make it where it runs, without a thread to hand it to (issue 30)."""
    memo = snapshot.memo
    if not isinstance(memo, Incremental):
        return None
    try:
        return memo.patch(snapshot)
    except BaseException:
        memo.forget()  # a half-applied state is never patched again
        raise


def run(snapshot: Snapshot, memo: RuleMemo | None) -> tuple[Translation, State]:
    """The whole pipeline; also the state the incremental path patches."""
    ctx = Context(snapshot)
    controller = snapshot.controller_name
    out = Translation()
    classes = {gc.name: gc for gc in ctx.all(GatewayClass, "GatewayClass") if gc.spec.controller_name == controller}
    for gc in classes.values():
        out.statuses[gc.key] = gatewayclass_status(gc, class_conditions(ctx, gc), SUPPORTED_FEATURES)
    gateways = build_gateways(ctx, accepted_classes(ctx))
    listener_sets = attach_listener_sets(ctx, gateways)
    for gw in gateways.values():  # once ListenerSets' listeners have joined their Gateways
        mark_overlapping_tls(gw)
    policies = Policies(ctx)
    backends = Backends(ctx, policies, memo)
    http_routes = (translate_httproutes(ctx, gateways, backends, policies)
                   + translate_grpcroutes(ctx, gateways, backends, policies))
    candidacy = bind_routes(http_routes)
    for result in http_routes:
        out.statuses[result.route.key] = route_status(result.route, result.parents, result.conds, controller)
        policies.record(result.route, attached_gateways(result))
    for l4 in translate_l4routes(ctx, gateways, backends):
        out.statuses[l4.route.key] = route_status(l4.route, l4.parents, l4.conds, controller)
        policies.record(l4.route, attached_gateways(l4))
    for lset in listener_sets:  # after routes: attachedRoutes are counted
        out.statuses[lset.key] = listenerset_status(lset)
    xbackend_secrets = backends.xbackend_secrets()
    for key, gw in sorted(gateways.items()):
        out.statuses[key] = gateway_status(gw)
        owned = [s for s in listener_sets if s.gateway is gw]
        # what depends on the Gateway (its client certificate on TLS clusters); policies learn ancestors
        built = tuple(build_listeners(gw, policies))
        listeners, policy_secrets = policies.on_gateway(gw, built, backends)
        secrets = policy_secrets + xbackend_secrets
        xds = ir.scoped(listeners, backends.clusters, secrets, programmed_by(gw, owned))
        quic = {li.port for li in built if li.quic}
        out.gateways[key] = GatewayOutput(xds, infrastructure(gw, classes.get(gw.gateway.spec.gateway_class_name),
                                                              quic))
    for policy, ancestors in policies.statuses():  # after every Gateway: ancestors are known
        out.statuses[policy.key] = policy_status(policy, ancestors, controller)
    out.issuers = frozenset(policies.issuers())
    return out, State(snapshot, ctx, gateways, listener_sets, backends, policies,
                      {r.route.key: r for r in http_routes}, candidacy, out)


def attached_gateways(result: RouteResult | L4RouteResult) -> list[ObjectKey]:
    """The Gateways a route is accepted by: the ancestors of the policies that target it."""
    return sorted({p.gateway.key for p in result.parents
                   if not any(c.type == "Accepted" and not c.status for c in p.conds)})


def programmed_by(gw: GatewayState, listener_sets: list[ListenerSetState]
                  ) -> tuple[tuple[tuple[str, str, str], tuple[str, ...]], ...]:
    """IR.gateway_listeners: what Envoy must hold before the Gateway and each of its
    ListenerSets is Programmed."""
    key = gw.key
    owners = [((key.kind, key.namespace, key.name), served_listeners(gw, None))]
    owners += [((s.key.kind, s.key.namespace, s.key.name), served_listeners(gw, s.key)) for s in listener_sets]
    return tuple(owners)


def infrastructure(gw: GatewayState, gc: GatewayClass | None, quic_ports: set[int] | None = None) -> ir.GatewayInfra:
    """The Gateway's infrastructure description: ready listeners' ports and protocols,
    requested addresses, parameters and spec.infrastructure labels/annotations."""
    spec: Gateway = gw.gateway
    infra = spec.spec.infrastructure
    listeners = tuple(ir.InfraListener(ls.qualified_name, ls.spec.port, ls.port, ls.protocol)
                      for ls in gw.listeners if ls.ready)
    # HTTP/3 (ClientTrafficPolicy): the HTTPS ports with a QUIC listener (bound ports) over UDP too
    h3 = {ls.spec.port: ls for ls in gw.listeners if ls.ready and ls.port in (quic_ports or set())
          and ls.protocol == "HTTPS"}
    listeners += tuple(ir.InfraListener(f"h3-{ls.qualified_name}", ls.spec.port, ls.port, "HTTP3")
                       for _, ls in sorted(h3.items()))
    local = infra.parameters_ref if infra else None
    return ir.GatewayInfra(
        spec.namespace, spec.name, spec.spec.gateway_class_name, listeners,
        tuple((a.type or "IPAddress", a.value) for a in spec.spec.addresses),
        class_parameters(gc),
        ir.ParametersRef(local.group, local.kind, spec.namespace, local.name) if local else None,
        tuple(sorted(infra.labels.items())) if infra else (),
        tuple(sorted(infra.annotations.items())) if infra else (),
    )


def class_parameters(gc: GatewayClass | None) -> ir.ParametersRef | None:
    ref = gc.spec.parameters_ref if gc is not None else None
    if not ref:
        return None
    return ir.ParametersRef(str(ref.get("group", "")), str(ref.get("kind", "")), str(ref.get("namespace") or ""),
                            str(ref.get("name", "")))
