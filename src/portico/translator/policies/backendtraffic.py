"""BackendTrafficPolicy (gateway.portico.dev): how Envoy sends traffic to backends.

Targets: HTTPRoutes and GRPCRoutes (sectionName: a rule), Gateways (sectionName: a
listener), Services (sectionName: a port), XBackends and Backends.

Its fields are of two sorts:
- cluster fields (loadBalancer type and slowStart, timeout.connect, upstreamHTTP2,
  healthCheck, circuitBreaker, tcpKeepalive, proxyProtocol, retry.budget): on a Service,
  XBackend or Backend target they configure its cluster itself, shared by every route
  (`configure`); on a route or Gateway target the rule's clusters become variants of
  their own (so another route's traffic to the same Service keeps its settings), the
  route policy's fields overriding the Service policy's.
- route fields (loadBalancer.hashOn, timeout.idle, requestBuffer, retry): from the
  rule's route or Gateway policy, else from the policy of the rule's first backend
  that has one. A rule's own HTTPRoute retry wins over a policy's retry.
- fallback (route targets only): a Service of the policy's namespace whose endpoints
  are priority 1 of each of the rule's clusters (variants of their own), so Envoy sends
  there only while none of the rule's endpoints is healthy: how Envoy Gateway makes
  fallback backends, and what ingress-nginx's default-backend annotation does for a
  Service without endpoints (not for a backend resolved by DNS: its STRICT_DNS cluster
  is not given one). A missing Service (or port) leaves the policy's
  ResolvedRefs False and the rule without a fallback.
Precedence: route > Service > Gateway; a Gateway's (or listener's) policy applies to
the rules that have none of their own, and only fills the fields left unset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from portico import ir
from portico.models import BackendTrafficPolicy, BackendTrafficPolicySpec, GRPCRoute, HTTPRoute, Resource, Service
from portico.objects import ObjectKey
from portico.translator.backends import Backends
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.durations import durations_problem, parse_duration_ms, parse_duration_s
from portico.translator.gateway import GatewayState, ListenerState
from portico.translator.policies.attachment import Ancestors, Attachment
from portico.translator.policies.kind import PolicyKind
from portico.translator.quantities import quantity_bytes

LB_POLICIES: dict[str, ir.LBPolicy] = {
    "RoundRobin": "round_robin", "LeastRequest": "least_request", "Random": "random",
    "RingHash": "ring_hash", "Maglev": "maglev",
}
MAX_BODY = 2**32 - 1  # Envoy's buffer filter takes a uint32
# retry_on when a policy's retry names no triggers: what a dead or restarting endpoint causes
DEFAULT_TRIGGERS = ("connect-failure", "refused-stream", "reset")
DEFAULT_RETRIES = 2
# what a fallback can be attached through: the rules of routes (whose clusters get variants)
ROUTE_MODELS: dict[str, type[Resource]] = {"HTTPRoute": HTTPRoute, "GRPCRoute": GRPCRoute}
FALLBACK_TARGETS = tuple(ROUTE_MODELS)


class BackendTrafficPolicies(PolicyKind):
    kind = "BackendTrafficPolicy"
    model = BackendTrafficPolicy

    def __init__(self, ctx: Context, attachment: Attachment) -> None:
        super().__init__(ctx, attachment)
        # cluster name -> the policy of its Service (port), XBackend or Backend: its route
        # fields hold for the rules that send there; the cluster before that policy
        self.of_cluster: dict[str, BackendTrafficPolicySpec] = {}
        self.unconfigured: dict[str, ir.Cluster] = {}
        self.unresolved: dict[ObjectKey, Cond] = {}  # policies whose fallback is not found
        self.checked = False

    @staticmethod
    def problem(policy: BackendTrafficPolicy) -> str:
        spec = policy.spec
        buffer = spec.request_buffer
        if buffer is not None and not 0 < (quantity_bytes(buffer.limit) or 0) <= MAX_BODY:
            return f"requestBuffer.limit {buffer.limit!r} must be a quantity from 1 byte to 4Gi"
        lb = spec.load_balancer
        if lb is not None and lb.type not in LB_POLICIES:
            return f"loadBalancer.type {lb.type!r} is not supported"
        if lb is not None and lb.slow_start is not None and lb.type not in ("RoundRobin", "LeastRequest"):
            return "loadBalancer.slowStart needs type RoundRobin or LeastRequest"
        if spec.fallback is not None and any(t.kind not in FALLBACK_TARGETS for t in spec.target_refs):
            return "fallback applies to the rules of HTTPRoutes and GRPCRoutes: target only those"
        t, hc, retry, keepalive = spec.timeout, spec.health_check, spec.retry, spec.tcp_keepalive
        active, passive = (hc.active, hc.passive) if hc else (None, None)
        per_try = retry.per_retry if retry else None
        back_off = per_try.back_off if per_try else None
        return durations_problem([
            ("timeout.connect", t.connect if t else None), ("timeout.idle", t.idle if t else None),
            ("loadBalancer.slowStart.window", lb.slow_start.window if lb and lb.slow_start else None),
            ("healthCheck.active.interval", active.interval if active else None),
            ("healthCheck.active.timeout", active.timeout if active else None),
            ("healthCheck.passive.interval", passive.interval if passive else None),
            ("healthCheck.passive.baseEjectionTime", passive.base_ejection_time if passive else None),
            ("tcpKeepalive.idleTime", keepalive.idle_time if keepalive else None),
            ("tcpKeepalive.interval", keepalive.interval if keepalive else None),
            ("retry.perRetry.timeout", per_try.timeout if per_try else None),
            ("retry.perRetry.backOff.baseInterval", back_off.base_interval if back_off else None),
            ("retry.perRetry.backOff.maxInterval", back_off.max_interval if back_off else None),
        ])

    # ------------------------------------------------------------ backends

    def configure(self, cluster: ir.Cluster, backend: ObjectKey, section: str | None) -> ir.Cluster:
        policy = self.attachment.for_backend(self.kind, backend, section or None)
        if not isinstance(policy, BackendTrafficPolicy):
            return cluster
        self.unconfigured[cluster.name] = cluster
        cluster = cluster_settings(cluster, policy.spec)
        self.of_cluster[cluster.name] = policy.spec
        return cluster

    def derive(self, base: ir.Cluster, variant: ir.Cluster) -> None:
        """The Service's policy holds for its TLS variant too."""
        if base.name in self.of_cluster:
            self.of_cluster[variant.name] = self.of_cluster[base.name]
            self.unconfigured[variant.name] = replace(self.unconfigured[base.name], name=variant.name,
                                                      protocol=variant.protocol, tls=variant.tls,
                                                      endpoints=variant.endpoints)

    # ------------------------------------------------------------ route rules

    def on_rule(self, action: ir.RouteAction, route: Resource, rule: str | None,
                backends: Backends) -> ir.RouteAction:
        own = self.own(route.key, rule)
        return route_fields(action, ([own] if own else []) + self.backend_specs(action))

    def on_rule_backends(self, action: ir.RouteAction, route: Resource, rule: str | None,
                         backends: Backends) -> ir.RouteAction:
        own = self.own(route.key, rule)
        if own is None:
            return action
        fallback = self.fallback(route, rule, own, backends)
        return replace(action, backends=tuple(
            replace(b, cluster=variant(backends, b.cluster, with_fallback(
                cluster_settings(backends.clusters[b.cluster], own), fallback)))
            if b.cluster else b for b in action.backends))

    def fallback(self, route: Resource, rule: str | None, spec: BackendTrafficPolicySpec,
                 backends: Backends) -> tuple[str, tuple[ir.Endpoint, ...]] | None:
        """The rule's fallback Service ("ns/name/port") and its ready endpoints; None when
        the policy names none or it cannot be resolved (its status says why: `on_gateway`)."""
        if spec.fallback is None:
            return None
        policy = self.attachment.for_rule(self.kind, route.key, rule)
        found = resolve_fallback(self.ctx, policy, route, backends)
        return None if isinstance(found, Cond) else found

    def on_gateway(self, gw: GatewayState, listeners: tuple[ir.Listener, ...], backends: Backends
                   ) -> tuple[tuple[ir.Listener, ...], tuple[ir.TLSCertificate, ...]]:
        """Why a policy's fallback cannot be had, for its status: found here, once per
        translation, not where rules are translated (those may be memoized)."""
        if self.checked:
            return listeners, ()
        self.checked = True
        for policy, _ in self.attachment.statuses(self.kind):
            assert isinstance(policy, BackendTrafficPolicy)
            if policy.spec.fallback is None:
                continue
            for target in policy.spec.target_refs:
                model = ROUTE_MODELS.get(target.kind)
                route = self.ctx.get(model, target.kind, policy.namespace, target.name) if model else None
                found = resolve_fallback(self.ctx, policy, route, backends) if route is not None else None
                if isinstance(found, Cond):
                    self.unresolved[policy.key] = found
                    break
        return listeners, ()

    def statuses(self) -> Iterable[tuple[Resource, Ancestors]]:
        for policy, ancestors in super().statuses():
            why = self.unresolved.get(policy.key)
            if why is not None:
                ancestors = {gw: [why if c.type == "ResolvedRefs" else c for c in conds] + (
                    [] if any(c.type == "ResolvedRefs" for c in conds) else [why]) for gw, conds in ancestors.items()}
            yield policy, ancestors

    def own(self, route: ObjectKey, rule: str | None) -> BackendTrafficPolicySpec | None:
        policy = self.attachment.for_rule(self.kind, route, rule)
        return policy.spec if isinstance(policy, BackendTrafficPolicy) else None

    def on_listener(self, action: ir.RouteAction, route: ObjectKey, rule: str | None, listener: ListenerState,
                    backends: Backends) -> ir.RouteAction:
        """The Gateway's (or listener's) policy where the rule has none of its own: its
        fields are the least specific (route > Service > Gateway)."""
        policy = self.attachment.for_listener(self.kind, listener.gateway.key, listener.qualified_name)
        if not isinstance(policy, BackendTrafficPolicy) or self.own(route, rule) is not None:
            return action
        spec = policy.spec
        return replace(route_fields(action, [spec]), backends=tuple(
            replace(b, cluster=self.gateway_variant(backends, b.cluster, spec)) if b.cluster else b
            for b in action.backends))

    def backend_specs(self, action: ir.RouteAction) -> list[BackendTrafficPolicySpec]:
        """The policies of the rule's backends, in backendRef order."""
        out = []
        for b in action.backends:
            spec = self.of_cluster.get(b.cluster) if b.cluster else None
            if spec is not None and spec not in out:
                out.append(spec)
        return out

    def gateway_variant(self, backends: Backends, name: str, spec: BackendTrafficPolicySpec) -> str:
        """A Gateway policy's variant of cluster `name`: the Service policy's fields over the Gateway's."""
        raw = self.unconfigured.get(name, backends.clusters[name])
        changed = cluster_settings(raw, spec)
        service = self.of_cluster.get(name)
        return variant(backends, name, cluster_settings(changed, service) if service is not None else changed)


# ---------------------------------------------------------------- route fields


def first(specs: list[BackendTrafficPolicySpec], pick: Any) -> Any:
    """The first value `pick(spec)` gives that is set (route policy first, then backends')."""
    return next((v for v in map(pick, specs) if v is not None), None)


def route_fields(action: ir.RouteAction, specs: list[BackendTrafficPolicySpec]) -> ir.RouteAction:
    """`action` with the route fields it has not set taken from the first of `specs` that
    sets each: so a Gateway's policy, applied last (`on_listener`), only fills gaps."""
    hashing = first(specs, lambda s: s.load_balancer.hash_on if s.load_balancer else None)
    idle = first(specs, lambda s: s.timeout.idle if s.timeout else None)
    buffer = first(specs, lambda s: s.request_buffer)
    retry = first(specs, lambda s: s.retry if retries(s) else None)
    return replace(
        action,
        hash_policies=action.hash_policies or (hash_policies(hashing) if hashing else ()),
        idle_timeout_ms=action.idle_timeout_ms if action.idle_timeout_ms is not None
        else (parse_duration_ms(idle) if idle else None),
        request_body_limit=action.request_body_limit if action.request_body_limit is not None
        else (quantity_bytes(buffer.limit) if buffer else None),
        retry=action.retry or (policy_retry(retry) if retry else None))


def retries(spec: BackendTrafficPolicySpec) -> bool:
    """Whether the policy retries requests: a retry with only a budget bounds retries, it
    does not make any."""
    r = spec.retry
    return r is not None and (r.budget is None or r.num_retries is not None or r.retry_on is not None
                              or r.per_retry is not None)


def hash_policies(hashing: Any) -> tuple[ir.HashPolicy, ...]:
    if hashing.header:
        return (ir.HashPolicy("Header", hashing.header["name"].lower()),)
    if hashing.cookie:
        ttl = parse_duration_s(hashing.cookie["ttl"]) if hashing.cookie.get("ttl") else None
        return (ir.HashPolicy("Cookie", hashing.cookie["name"], ttl, hashing.cookie.get("path", "/")),)
    if hashing.query_parameter:
        return (ir.HashPolicy("QueryParameter", hashing.query_parameter["name"]),)
    return (ir.HashPolicy("SourceIP"),)


def policy_retry(retry: Any) -> ir.Retry | None:
    """retry: numRetries (default 2) on its triggers (default: the failures of a dead
    endpoint), each retry to another endpoint where there is one."""
    attempts = DEFAULT_RETRIES if retry.num_retries is None else retry.num_retries
    if attempts <= 0:
        return None
    on = retry.retry_on
    codes = tuple(sorted(set(on.http_status_codes))) if on else ()
    triggers = tuple(on.triggers) if on and on.triggers else DEFAULT_TRIGGERS
    if codes and "retriable-status-codes" not in triggers:
        triggers += ("retriable-status-codes",)
    per_try = retry.per_retry
    back_off = per_try.back_off if per_try else None
    return ir.Retry(attempts=attempts, codes=codes, triggers=triggers,
                    backoff_ms=parse_duration_ms(back_off.base_interval) if back_off else None,
                    max_backoff_ms=parse_duration_ms(back_off.max_interval) if back_off and back_off.max_interval
                    else None,
                    per_try_timeout_ms=parse_duration_ms(per_try.timeout) if per_try and per_try.timeout else None)


# ---------------------------------------------------------------- clusters


def _ms(value: str | None, default: int) -> int:
    parsed = parse_duration_ms(value) if value else None
    return default if parsed is None else parsed


def cluster_settings(cluster: ir.Cluster, spec: BackendTrafficPolicySpec) -> ir.Cluster:
    """`cluster` with the policy's cluster fields (those it leaves unset keep their value)."""
    changed = cluster
    lb = spec.load_balancer
    if lb is not None:
        changed = replace(changed, lb_policy=LB_POLICIES[lb.type])
        if lb.slow_start is not None:
            changed = replace(changed, slow_start_ms=_ms(lb.slow_start.window, 0))
    if spec.timeout is not None and spec.timeout.connect:
        changed = replace(changed, connect_timeout_ms=parse_duration_ms(spec.timeout.connect) or 1)
    if spec.upstream_http2 and changed.protocol == "http1":
        tls = replace(changed.tls, alpn=("h2",)) if changed.tls is not None else None
        changed = replace(changed, protocol="h2c", tls=tls)
    hc = spec.health_check
    if hc is not None and hc.active is not None:
        changed = replace(changed, health_check=active_health_check(hc.active))
    if hc is not None and hc.passive is not None:
        p = hc.passive
        d = ir.OutlierDetection()
        changed = replace(changed, outlier_detection=ir.OutlierDetection(
            d.consecutive_5xx if p.consecutive_5xx_errors is None else p.consecutive_5xx_errors,
            p.consecutive_gateway_errors or 0,
            d.consecutive_local_origin_failures if p.consecutive_local_origin_failures is None
            else p.consecutive_local_origin_failures,
            bool(p.split_external_local_origin_errors), _ms(p.interval, d.interval_ms),
            _ms(p.base_ejection_time, d.base_ejection_ms),
            d.max_ejection_percent if p.max_ejection_percent is None else p.max_ejection_percent))
    changed = replace(changed, circuit_breaker=breaker(changed.circuit_breaker, spec))
    k = spec.tcp_keepalive
    if k is not None:
        changed = replace(changed, tcp_keepalive=ir.TCPKeepalive(
            k.probes, parse_duration_s(k.idle_time) if k.idle_time else None,
            parse_duration_s(k.interval) if k.interval else None))
    if spec.proxy_protocol is not None:
        changed = replace(changed, proxy_protocol="V1" if spec.proxy_protocol.version == "V1" else "V2")
    if changed.lb_policy not in ("round_robin", "least_request"):
        changed = replace(changed, slow_start_ms=None)  # a Service's slow start under a route's hashing
    return changed


def active_health_check(a: Any) -> ir.HealthCheck:
    d = ir.HealthCheck(a.type)
    return ir.HealthCheck(
        a.type, _ms(a.interval, d.interval_ms), _ms(a.timeout, d.timeout_ms),
        a.unhealthy_threshold or d.unhealthy_threshold, a.healthy_threshold or d.healthy_threshold,
        a.http.path if a.http else d.path, (a.http.method or "GET") if a.http else d.method,
        tuple(a.http.expected_statuses or (200,)) if a.http else d.expected_statuses,
        a.grpc.service if a.grpc else "")


def breaker(b: ir.CircuitBreaker, spec: BackendTrafficPolicySpec) -> ir.CircuitBreaker:
    cb, budget = spec.circuit_breaker, spec.retry.budget if spec.retry else None
    if cb is not None:
        b = ir.CircuitBreaker(cb.max_connections or b.max_connections, cb.max_pending_requests or
                              b.max_pending_requests, cb.max_parallel_requests or b.max_requests,
                              cb.max_parallel_retries or b.max_retries, b.retry_budget_percent,
                              b.min_retry_concurrency)
    if budget is not None:
        b = replace(b, retry_budget_percent=20 if budget.percent is None else budget.percent,
                    min_retry_concurrency=budget.min_retry_concurrency)
    return b


def resolve_fallback(ctx: Context, policy: BackendTrafficPolicy, route: Resource, backends: Backends
                     ) -> tuple[str, tuple[ir.Endpoint, ...]] | Cond:
    """The fallback Service of `policy` (for `route`) as ("ns/name/port", its ready
    endpoints), or why it cannot be had."""
    wanted = policy.spec.fallback
    assert wanted is not None
    ns = policy.namespace
    svc = ctx.get(Service, "Service", ns, wanted.name)
    ports = svc.spec.ports if svc is not None else []
    # ingress-nginx takes the default backend's first port
    port = next((p for p in ports if wanted.port is None or p.port == wanted.port), None)
    if svc is None:
        return Cond("ResolvedRefs", False, "BackendNotFound", f"fallback: Service {ns}/{wanted.name} not found")
    if port is None:
        what = f"no port {wanted.port}" if wanted.port is not None else "no port"
        return Cond("ResolvedRefs", False, "BackendNotFound", f"fallback: Service {ns}/{wanted.name} has {what}")
    endpoints = backends.endpoints(svc, port)
    refused = backends.refused(route, "Service", ns, svc.name, endpoints, platform=True)
    if refused is not None:
        assert refused.problem is not None
        return replace(refused.problem, message=f"fallback: {refused.problem.message}")
    return f"{ns}/{svc.name}/{port.port}", endpoints


def with_fallback(cluster: ir.Cluster, fallback: tuple[str, tuple[ir.Endpoint, ...]] | None) -> ir.Cluster:
    """`cluster` with the fallback's endpoints as its priority 1."""
    if fallback is None or cluster.dns:  # an ExternalName's STRICT_DNS cluster resolves names only
        return cluster
    return replace(cluster, fallback=fallback[0], fallback_endpoints=fallback[1])


def variant(backends: Backends, name: str, changed: ir.Cluster) -> str:
    """Cluster `name` as `changed`, under a name of its own unless nothing changed (named
    after what it changes, so two policies with the same settings share it)."""
    if changed == backends.clusters[name]:
        return name
    # not the endpoints: the variant keeps its name while they come and go
    digest = hashlib.sha256(repr(replace(changed, name="", endpoints=(), fallback_endpoints=())).encode()
                            ).hexdigest()[:10]
    return backends.add(replace(changed, name=f"{name}/traffic-{digest}"), backends.origins[name]).name
