"""What Portico's policies change on a route rule and on its clusters (`policies`
decides which apply where).

BackendTrafficPolicy fields are of two sorts:
- cluster fields (loadBalancer type and slowStart, timeout.connect, upstreamHTTP2,
  healthCheck, circuitBreaker, tcpKeepalive, proxyProtocol, retry.budget): on a Service
  or XBackend target they configure its cluster itself, shared by every route; on a
  route or Gateway target the rule's clusters become variants of their own (so another
  route's traffic to the same Service keeps its settings), the route policy's fields
  overriding the Service policy's.
- route fields (loadBalancer.hashOn, timeout.idle, requestBuffer, retry): from the
  rule's route or Gateway policy, else from the policy of the rule's first backend
  that has one. A rule's own HTTPRoute retry wins over a policy's retry.
XBackendTrafficPolicy (upstream, Services and XBackends): retryConstraint is the
cluster's retry budget; sessionPersistence the rule's, where the rule sets none.
SecurityPolicy: the client authorization (first matching rule decides; else the
default action; a denied request is answered 403). RateLimitPolicy: local token
buckets (429 over the budget, x-ratelimit-* headers).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from portico import ir
from portico.models import (
    BackendTrafficPolicy,
    BackendTrafficPolicySpec,
    RateLimitPolicy,
    Resource,
    SecurityPolicy,
    XBackendTrafficPolicy,
)
from portico.objects import ObjectKey
from portico.translator.durations import parse_duration_ms, parse_duration_s
from portico.translator.session import session_persistence

if TYPE_CHECKING:
    from portico.translator.backends import Backends

LB_POLICIES: dict[str, ir.LBPolicy] = {
    "RoundRobin": "round_robin", "LeastRequest": "least_request", "Random": "random",
    "RingHash": "ring_hash", "Maglev": "maglev",
}
UNIT_S = {"Second": 1, "Minute": 60, "Hour": 3600}
_QUANTITY = re.compile(r"([0-9]+)(Ki|Mi|Gi|k|M|G)?")
_FACTOR = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 1000**2, "G": 1000**3}
MAX_BODY = 2**32 - 1  # Envoy's buffer filter takes a uint32
# retry_on when a policy's retry names no triggers: what a dead or restarting endpoint causes
DEFAULT_TRIGGERS = ("connect-failure", "refused-stream", "reset")
DEFAULT_RETRIES = 2


def quantity_bytes(value: int | str) -> int | None:
    match = _QUANTITY.fullmatch(str(value))
    return int(match[1]) * _FACTOR[match[2]] if match else None


def _durations(pairs: list[tuple[str, str | None]]) -> str:
    for name, value in pairs:
        if value is not None and parse_duration_ms(value) is None:
            return f"{name} {value!r} is not a duration"
    return ""


def backend_traffic_problem(spec: BackendTrafficPolicySpec) -> str:
    buffer = spec.request_buffer
    if buffer is not None and not 0 < (quantity_bytes(buffer.limit) or 0) <= MAX_BODY:
        return f"requestBuffer.limit {buffer.limit!r} must be a quantity from 1 byte to 4Gi"
    lb = spec.load_balancer
    if lb is not None and lb.type not in LB_POLICIES:
        return f"loadBalancer.type {lb.type!r} is not supported"
    if lb is not None and lb.slow_start is not None and lb.type not in ("RoundRobin", "LeastRequest"):
        return "loadBalancer.slowStart needs type RoundRobin or LeastRequest"
    t, hc, retry, keepalive = spec.timeout, spec.health_check, spec.retry, spec.tcp_keepalive
    active, passive = (hc.active, hc.passive) if hc else (None, None)
    per_try = retry.per_retry if retry else None
    back_off = per_try.back_off if per_try else None
    return _durations([
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


def problem(policy: Resource) -> str:
    """Why Portico cannot program `policy` ("" when it can): values the schema lets through."""
    if isinstance(policy, BackendTrafficPolicy):
        return backend_traffic_problem(policy.spec)
    if isinstance(policy, SecurityPolicy):
        for rule in policy.spec.authorization.rules:
            for cidr in rule.principal.client_cidrs:
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    return f"clientCIDRs {cidr!r} is not a CIDR"
    if isinstance(policy, XBackendTrafficPolicy):
        rc = policy.spec.retry_constraint
        return _durations([("retryConstraint.budget.interval", (rc.budget or {}).get("interval") if rc else None),
                           ("retryConstraint.minRetryRate.interval",
                            (rc.min_retry_rate or {}).get("interval") if rc else None)])
    return ""


# ---------------------------------------------------------------- route rules


def apply(action: ir.RouteAction, route: Resource, rule: str | None, backends: Backends) -> ir.RouteAction:
    """`action` with the policies in effect on the rule."""
    policies = backends.policies
    if not policies.index:
        return action
    traffic = policies.for_rule("BackendTrafficPolicy", route.key, rule)
    security = policies.for_rule("SecurityPolicy", route.key, rule)
    limits = policies.for_rule("RateLimitPolicy", route.key, rule)
    own = traffic.spec if isinstance(traffic, BackendTrafficPolicy) else None
    action = route_fields(action, ([own] if own else []) + backend_specs(action, backends), route, backends)
    if own is not None:
        action = replace(action, backends=tuple(
            replace(b, cluster=cluster_variant(backends, b.cluster, own)) if b.cluster else b
            for b in action.backends))
    if isinstance(security, SecurityPolicy):
        action = authorize(action, security)
    if isinstance(limits, RateLimitPolicy):
        action = replace(action, rate_limits=rate_limits(limits))
    return action


def on_listener(entry: ir.Route, route: ObjectKey, rule: str | None, gateway: ObjectKey, listener: str,
                backends: Backends) -> ir.Route:
    """A route entry as served on a Gateway listener: the Gateway's (or listener's)
    BackendTrafficPolicy and SecurityPolicy where the rule has none of its own; the
    Gateway's fields are the least specific (route > Service > Gateway). A Gateway's
    RateLimitPolicy is not here: it is one budget for the listener (listenerpolicy)."""
    policies = backends.policies
    action = entry.action
    security = policies.for_listener("SecurityPolicy", gateway, listener)
    if isinstance(security, SecurityPolicy) and policies.for_rule("SecurityPolicy", route, rule) is None:
        action = authorize(action, security)
    traffic = policies.for_listener("BackendTrafficPolicy", gateway, listener)
    if isinstance(traffic, BackendTrafficPolicy) and policies.for_rule("BackendTrafficPolicy", route, rule) is None:
        spec = traffic.spec
        action = replace(route_fields(action, [spec], None, backends), backends=tuple(
            replace(b, cluster=gateway_variant(backends, b.cluster, spec)) if b.cluster else b
            for b in action.backends))
    return entry if action is entry.action else replace(entry, action=action)


def authorize(action: ir.RouteAction, security: SecurityPolicy) -> ir.RouteAction:
    auth = security.spec.authorization
    return replace(action, authorization=ir.ClientAuthorization(
        auth.default_action == "Allow", tuple((r.action == "Allow", tuple(r.principal.client_cidrs))
                                              for r in auth.rules)))


def rate_limits(policy: RateLimitPolicy) -> tuple[ir.RateLimit, ...]:
    return tuple(ir.RateLimit(r.limit.requests, UNIT_S[r.limit.unit], r.burst or r.limit.requests,
                              source_ip=any(s.source_ip is not None for s in r.client_selectors),
                              headers=tuple(s.header["name"].lower() for s in r.client_selectors if s.header))
                 for r in policy.spec.local.rules)


def backend_specs(action: ir.RouteAction, backends: Backends) -> list[BackendTrafficPolicySpec]:
    """The BackendTrafficPolicies of the rule's backends, in backendRef order."""
    out = []
    for b in action.backends:
        spec = backends.backend_traffic.get(b.cluster) if b.cluster else None
        if spec is not None and spec not in out:
            out.append(spec)
    return out


def first(specs: list[BackendTrafficPolicySpec], pick: Any) -> Any:
    """The first value `pick(spec)` gives that is set (route policy first, then backends')."""
    return next((v for v in map(pick, specs) if v is not None), None)


def route_fields(action: ir.RouteAction, specs: list[BackendTrafficPolicySpec], route: Resource | None,
                 backends: Backends) -> ir.RouteAction:
    """`action` with the route fields it has not set taken from the first of `specs` that
    sets each: so a Gateway's policy, applied last (`on_listener`), only fills gaps."""
    hashing = first(specs, lambda s: s.load_balancer.hash_on if s.load_balancer else None)
    idle = first(specs, lambda s: s.timeout.idle if s.timeout else None)
    buffer = first(specs, lambda s: s.request_buffer)
    retry = first(specs, lambda s: s.retry if retries(s) else None)
    session = action.session_persistence or next(
        (session_persistence(route, 0, sp) for b in action.backends if b.cluster and route is not None
         for sp in [backends.backend_session.get(b.cluster)] if sp is not None), None)
    return replace(
        action,
        hash_policies=action.hash_policies or (hash_policies(hashing) if hashing else ()),
        idle_timeout_ms=action.idle_timeout_ms if action.idle_timeout_ms is not None
        else (parse_duration_ms(idle) if idle else None),
        request_body_limit=action.request_body_limit if action.request_body_limit is not None
        else (quantity_bytes(buffer.limit) if buffer else None),
        retry=action.retry or (policy_retry(retry) if retry else None),
        session_persistence=session)


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
    """BackendTrafficPolicy retry: numRetries (default 2) on its triggers (default: the
    failures of a dead endpoint), each retry to another endpoint where there is one."""
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


def retry_constraint(cluster: ir.Cluster, policy: XBackendTrafficPolicy) -> ir.Cluster:
    """XBackendTrafficPolicy retryConstraint as Envoy's retry budget: budget.percent of the
    requests in flight; minRetryRate.count retries at any time (Envoy's budget counts
    concurrency, not a rate over an interval: the intervals set no Envoy field)."""
    rc = policy.spec.retry_constraint
    if rc is None:
        return cluster
    percent = int((rc.budget or {}).get("percent", 20))
    minimum = int((rc.min_retry_rate or {}).get("count", 10))
    return replace(cluster, circuit_breaker=replace(cluster.circuit_breaker, retry_budget_percent=percent,
                                                    min_retry_concurrency=minimum))


def cluster_variant(backends: Backends, name: str, spec: BackendTrafficPolicySpec) -> str:
    """A route policy's own variant of cluster `name`: its fields over the Service's."""
    return variant(backends, name, cluster_settings(backends.clusters[name], spec))


def gateway_variant(backends: Backends, name: str, spec: BackendTrafficPolicySpec) -> str:
    """A Gateway policy's variant of cluster `name`: the Service policy's fields over the Gateway's."""
    raw = backends.unconfigured.get(name, backends.clusters[name])
    changed = cluster_settings(raw, spec)
    service = backends.backend_traffic.get(name)
    return variant(backends, name, cluster_settings(changed, service) if service is not None else changed)


def variant(backends: Backends, name: str, changed: ir.Cluster) -> str:
    """Cluster `name` as `changed`, under a name of its own unless nothing changed (named
    after what it changes, so two policies with the same settings share it)."""
    if changed == backends.clusters[name]:
        return name
    digest = hashlib.sha256(repr(replace(changed, name="", endpoints=())).encode()).hexdigest()[:10]
    return backends.add(replace(changed, name=f"{name}/traffic-{digest}"), backends.origins[name]).name
