"""Policies: one module per policy kind (its validation and effect on the IR, see
`kind.PolicyKind`), GEP-713 attachment shared by them (`attachment`), and the registry
below: adding a policy kind is its module plus one line in `REGISTRY` (and its row, with
what it may target, in `portico.kinds`).

`Policies` is one translation's policies: the pipeline builds it before any backend is
resolved and asks it at each point of `kind.PolicyKind`; it asks every kind with a
policy in effect, in the order of `REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from portico import ir
from portico.models import Resource
from portico.objects import ObjectKey
from portico.translator.backends import Backends, Origin
from portico.translator.context import Context
from portico.translator.gateway import GatewayState, ListenerState, RouteEntry
from portico.translator.policies.attachment import Ancestors, Attachment
from portico.translator.policies.backendtls import BackendTLSPolicies
from portico.translator.policies.backendtraffic import BackendTrafficPolicies
from portico.translator.policies.clienttraffic import ClientTrafficPolicies
from portico.translator.policies.kind import PolicyKind
from portico.translator.policies.ratelimit import RateLimitPolicies
from portico.translator.policies.security import SecurityPolicies
from portico.translator.policies.xbackendtraffic import XBackendTrafficPolicies

# Every policy kind, in the order their effects apply where two kinds touch the same
# thing (a backend's BackendTrafficPolicy configures its cluster before its
# XBackendTrafficPolicy's retry budget; a Gateway's RateLimitPolicy before its
# ClientTrafficPolicy on a chain). GEP-713 attachment sorts policies in this order too.
REGISTRY: tuple[type[PolicyKind], ...] = (
    BackendTLSPolicies,
    BackendTrafficPolicies,
    SecurityPolicies,
    RateLimitPolicies,
    ClientTrafficPolicies,
    XBackendTrafficPolicies,
)

Entries = Callable[[ListenerState], list[RouteEntry]]


class Policies:
    """The policies of one translation (see the module docstring)."""

    def __init__(self, ctx: Context) -> None:
        self.attachment = Attachment(ctx, [k for k in REGISTRY if k.direct])
        self.kinds = [k(ctx, self.attachment) for k in REGISTRY]
        self.active = [k for k in self.kinds if k.active]

    def issuers(self) -> set[str]:
        """The OpenID issuers whose discovery documents SecurityPolicy oidc needs."""
        return {i for k in self.kinds if isinstance(k, SecurityPolicies) for i in k.issuers}

    def gateways_only(self) -> bool:
        """Whether every policy reaches Gateways alone (`kind.PolicyKind.gateways_only`)."""
        return all(k.gateways_only() for k in self.kinds)

    # ------------------------------------------------------------ backends (`backends.ClusterPolicies`)

    def configure(self, cluster: ir.Cluster, backend: ObjectKey, section: str | None) -> ir.Cluster:
        for kind in self.active:
            cluster = kind.configure(cluster, backend, section)
        return cluster

    def originate(self, cluster: ir.Cluster, origin: Origin) -> ir.Cluster | None:
        for kind in self.active:
            variant = kind.originate(cluster, origin)
            if variant is not None:
                for other in self.active:
                    other.derive(cluster, variant)
                return variant
        return None

    # ------------------------------------------------------------ routes

    def on_rule(self, action: ir.RouteAction, route: Resource, rule: str | None,
                backends: Backends) -> ir.RouteAction:
        """A route rule's action with the policies in effect on the rule."""
        for kind in self.active:
            action = kind.on_rule(action, route, rule, backends)
        for kind in self.active:
            action = kind.on_rule_backends(action, route, rule, backends)
        return action

    def served(self, route: Resource, entries: Entries, backends: Backends) -> Entries:
        """`entries` (a route's on a listener) with the policies of the listener's Gateway."""
        if not self.active:
            return entries
        key = route.key

        def on_listener(listener: ListenerState) -> list[RouteEntry]:
            out = []
            for e in entries(listener):
                action = e.route.action
                for kind in self.active:
                    action = kind.on_listener(action, key, e.rule, listener, backends)
                out.append(replace(e, route=e.route if action is e.route.action else replace(e.route, action=action)))
            return out

        return on_listener

    def record(self, route: Resource, gateways: list[ObjectKey]) -> None:
        """The Gateways `route` is attached to: ancestors of the policies of it and its backends."""
        self.attachment.record(route, gateways)

    # ------------------------------------------------------------ listeners and Gateways

    def on_chain(self, chain: ir.FilterChain, gateway: ObjectKey, group: list[ListenerState]) -> ir.FilterChain:
        """`chain` (serving `group`, most specific first) with its listeners' policies."""
        for kind in self.active:
            chain = kind.on_chain(chain, gateway, group)
        return chain

    def on_port(self, listener: ir.Listener, gateway: ObjectKey, group: list[ListenerState]) -> ir.Listener:
        for kind in self.active:
            listener = kind.on_port(listener, gateway, group)
        return listener

    def on_gateway(self, gw: GatewayState, listeners: tuple[ir.Listener, ...], backends: Backends
                   ) -> tuple[tuple[ir.Listener, ...], tuple[ir.TLSCertificate, ...]]:
        """The Gateway's built listeners as its policies change them, and the secrets that brings."""
        secrets: tuple[ir.TLSCertificate, ...] = ()
        for kind in self.active:
            listeners, more = kind.on_gateway(gw, listeners, backends)
            secrets += more
        return listeners, secrets

    def statuses(self) -> Iterator[tuple[Resource, Ancestors]]:
        """Every policy with its ancestors: once every Gateway is built (listeners sharing a
        chain settled)."""
        self.attachment.unattached()
        for kind in self.kinds:
            yield from kind.statuses()
