"""What Portico's route policies change on a rule (`RoutePolicies` decides which apply).

- BackendTrafficPolicy: the rule's clusters become variants of their own (so another
  route's traffic to the same Service keeps its settings): load-balancing algorithm,
  connect timeout, HTTP/2 upstream; on the route: the consistent-hash key, the idle
  timeout and the request body limit (Envoy's buffer filter answers 413 above it).
- SecurityPolicy: the client authorization (first matching rule decides; else the
  default action; a denied request is answered 403).
- RateLimitPolicy: local token buckets (429 over the budget, x-ratelimit-* headers).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import replace
from typing import TYPE_CHECKING

from portico import ir
from portico.models import BackendTrafficPolicy, RateLimitPolicy, Resource, SecurityPolicy
from portico.translator.durations import parse_duration_ms, parse_duration_s

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


def quantity_bytes(value: int | str) -> int | None:
    match = _QUANTITY.fullmatch(str(value))
    return int(match[1]) * _FACTOR[match[2]] if match else None


def problem(policy: Resource) -> str:
    """Why Portico cannot program `policy` ("" when it can): values the schema lets through."""
    if isinstance(policy, BackendTrafficPolicy):
        spec = policy.spec
        buffer = spec.request_buffer
        if buffer is not None and not 0 < (quantity_bytes(buffer.limit) or 0) <= MAX_BODY:
            return f"requestBuffer.limit {buffer.limit!r} must be a quantity from 1 byte to 4Gi"
        for name in ("connect", "idle"):
            value = getattr(spec.timeout, name) if spec.timeout else None
            if value is not None and parse_duration_ms(value) is None:
                return f"timeout.{name} {value!r} is not a duration"
        lb = spec.load_balancer
        if lb is not None and lb.type not in LB_POLICIES:
            return f"loadBalancer.type {lb.type!r} is not supported"
    if isinstance(policy, SecurityPolicy):
        for rule in policy.spec.authorization.rules:
            for cidr in rule.principal.client_cidrs:
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    return f"clientCIDRs {cidr!r} is not a CIDR"
    return ""


def apply(action: ir.RouteAction, route: Resource, rule: str | None, backends: Backends) -> ir.RouteAction:
    """`action` with the route policies in effect on the rule."""
    policies = backends.policies
    if not policies.index:
        return action
    key = route.key
    traffic = policies.for_rule("BackendTrafficPolicy", key, rule)
    security = policies.for_rule("SecurityPolicy", key, rule)
    limits = policies.for_rule("RateLimitPolicy", key, rule)
    if isinstance(traffic, BackendTrafficPolicy):
        action = backend_traffic(action, traffic, backends)
    if isinstance(security, SecurityPolicy):
        auth = security.spec.authorization
        action = replace(action, authorization=ir.ClientAuthorization(
            auth.default_action == "Allow",
            tuple((r.action == "Allow", tuple(r.principal.client_cidrs)) for r in auth.rules)))
    if isinstance(limits, RateLimitPolicy):
        action = replace(action, rate_limits=tuple(
            ir.RateLimit(r.limit.requests, UNIT_S[r.limit.unit], r.burst or r.limit.requests,
                         source_ip=any(s.source_ip is not None for s in r.client_selectors),
                         headers=tuple(s.header["name"].lower() for s in r.client_selectors if s.header))
            for r in limits.spec.local.rules))
    return action


def backend_traffic(action: ir.RouteAction, policy: BackendTrafficPolicy, backends: Backends) -> ir.RouteAction:
    spec = policy.spec
    lb, timeout = spec.load_balancer, spec.timeout
    hashing = lb.hash_on if lb is not None else None
    hash_policies: tuple[ir.HashPolicy, ...] = ()
    if hashing is not None:
        if hashing.header:
            hash_policies = (ir.HashPolicy("Header", hashing.header["name"].lower()),)
        elif hashing.cookie:
            ttl = parse_duration_s(hashing.cookie["ttl"]) if hashing.cookie.get("ttl") else None
            hash_policies = (ir.HashPolicy("Cookie", hashing.cookie["name"], ttl, hashing.cookie.get("path", "/")),)
        elif hashing.query_parameter:
            hash_policies = (ir.HashPolicy("QueryParameter", hashing.query_parameter["name"]),)
        else:
            hash_policies = (ir.HashPolicy("SourceIP"),)
    idle = parse_duration_ms(timeout.idle) if timeout and timeout.idle else None
    body = quantity_bytes(spec.request_buffer.limit) if spec.request_buffer else None
    variants = {b.cluster: cluster_variant(backends, b.cluster, policy) for b in action.backends if b.cluster}
    return replace(action, hash_policies=hash_policies, idle_timeout_ms=idle, request_body_limit=body,
                   backends=tuple(replace(b, cluster=variants[b.cluster]) if b.cluster else b
                                  for b in action.backends))


def cluster_variant(backends: Backends, name: str, policy: BackendTrafficPolicy) -> str:
    """The policy's own variant of cluster `name` (named after what it changes, so two
    policies with the same settings share it)."""
    cluster = backends.clusters[name]
    spec = policy.spec
    changed = cluster
    if spec.load_balancer is not None:
        changed = replace(changed, lb_policy=LB_POLICIES[spec.load_balancer.type])
    if spec.timeout is not None and spec.timeout.connect:
        changed = replace(changed, connect_timeout_ms=parse_duration_ms(spec.timeout.connect) or 1)
    if spec.upstream_http2 and cluster.protocol == "http1":
        tls = replace(cluster.tls, alpn=("h2",)) if cluster.tls is not None else None
        changed = replace(changed, protocol="h2c", tls=tls)
    if changed == cluster:
        return name
    digest = hashlib.sha256(repr((changed.lb_policy, changed.connect_timeout_ms, changed.protocol,
                                  changed.tls)).encode()).hexdigest()[:10]
    return backends.add(replace(changed, name=f"{name}/traffic-{digest}"), backends.origins[name]).name
