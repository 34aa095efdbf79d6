"""XBackendTrafficPolicy (gateway.networking.x-k8s.io, experimental): the Gateway API's
own backend traffic policy.

Targets: Services, XBackends and Backends (a sectionName is not read: the policy is the
whole backend's).
- retryConstraint: the backend cluster's retry budget (`retry_constraint`).
- sessionPersistence: the session persistence of the rules that send to the backend,
  where a rule sets none of its own.
"""

from __future__ import annotations

from dataclasses import replace

from portico import ir
from portico.models import Resource, SessionPersistenceConfig, XBackendTrafficPolicy
from portico.objects import ObjectKey
from portico.translator.backends import Backends
from portico.translator.context import Context
from portico.translator.durations import durations_problem
from portico.translator.policies.attachment import Attachment
from portico.translator.policies.kind import PolicyKind
from portico.translator.session import session_persistence


class XBackendTrafficPolicies(PolicyKind):
    kind = "XBackendTrafficPolicy"
    model = XBackendTrafficPolicy

    def __init__(self, ctx: Context, attachment: Attachment) -> None:
        super().__init__(ctx, attachment)
        self.session: dict[str, SessionPersistenceConfig] = {}  # cluster name -> its backend's

    @staticmethod
    def problem(policy: XBackendTrafficPolicy) -> str:
        rc = policy.spec.retry_constraint
        return durations_problem([
            ("retryConstraint.budget.interval", (rc.budget or {}).get("interval") if rc else None),
            ("retryConstraint.minRetryRate.interval", (rc.min_retry_rate or {}).get("interval") if rc else None)])

    def configure(self, cluster: ir.Cluster, backend: ObjectKey, section: str | None) -> ir.Cluster:
        policy = self.attachment.for_backend(self.kind, backend, None)
        if not isinstance(policy, XBackendTrafficPolicy):
            return cluster
        if policy.spec.session_persistence is not None:
            self.session[cluster.name] = policy.spec.session_persistence
        return retry_constraint(cluster, policy)

    def on_rule(self, action: ir.RouteAction, route: Resource, rule: str | None,
                backends: Backends) -> ir.RouteAction:
        """The first backend's session persistence where the rule sets none."""
        if action.session_persistence is not None:
            return action
        found = next((session_persistence(route, 0, sp) for b in action.backends if b.cluster
                      for sp in [self.session.get(b.cluster)] if sp is not None), None)
        return action if found is None else replace(action, session_persistence=found)


def retry_constraint(cluster: ir.Cluster, policy: XBackendTrafficPolicy) -> ir.Cluster:
    """retryConstraint as Envoy's retry budget: budget.percent of the requests in flight;
    minRetryRate.count retries at any time (Envoy's budget counts concurrency, not a rate
    over an interval: the intervals set no Envoy field)."""
    rc = policy.spec.retry_constraint
    if rc is None:
        return cluster
    percent = int((rc.budget or {}).get("percent", 20))
    minimum = int((rc.min_retry_rate or {}).get("count", 10))
    return replace(cluster, circuit_breaker=replace(cluster.circuit_breaker, retry_budget_percent=percent,
                                                    min_retry_concurrency=minimum))
