"""SecurityPolicy (gateway.portico.dev): client authorization by address.

Targets: HTTPRoutes and GRPCRoutes (sectionName: a rule) and Gateways (sectionName: a
listener); a rule's own policy wins over its Gateway's. The first rule whose
principal.clientCIDRs holds the client address decides (Allow or Deny), else the
default action; a denied request is answered 403.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from portico import ir
from portico.models import Resource, SecurityPolicy
from portico.objects import ObjectKey
from portico.translator.backends import Backends
from portico.translator.gateway import ListenerState
from portico.translator.policies.kind import PolicyKind


class SecurityPolicies(PolicyKind):
    kind = "SecurityPolicy"
    model = SecurityPolicy

    @staticmethod
    def problem(policy: SecurityPolicy) -> str:
        for rule in policy.spec.authorization.rules:
            for cidr in rule.principal.client_cidrs:
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    return f"clientCIDRs {cidr!r} is not a CIDR"
        return ""

    def on_rule(self, action: ir.RouteAction, route: Resource, rule: str | None,
                backends: Backends) -> ir.RouteAction:
        policy = self.attachment.for_rule(self.kind, route.key, rule)
        return authorize(action, policy) if isinstance(policy, SecurityPolicy) else action

    def on_listener(self, action: ir.RouteAction, route: ObjectKey, rule: str | None, listener: ListenerState,
                    backends: Backends) -> ir.RouteAction:
        """The Gateway's (or listener's) policy where the rule has none of its own."""
        policy = self.attachment.for_listener(self.kind, listener.gateway.key, listener.qualified_name)
        if not isinstance(policy, SecurityPolicy) or self.attachment.for_rule(self.kind, route, rule) is not None:
            return action
        return authorize(action, policy)


def authorize(action: ir.RouteAction, security: SecurityPolicy) -> ir.RouteAction:
    auth = security.spec.authorization
    return replace(action, authorization=ir.ClientAuthorization(
        auth.default_action == "Allow", tuple((r.action == "Allow", tuple(r.principal.client_cidrs))
                                              for r in auth.rules)))
