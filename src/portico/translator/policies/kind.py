"""What a policy kind module provides: its targets, its validation, and its effect on
the IR at the points where the translation asks every kind (`Policies` calls them in
the registry's order, each only where the kind has a policy in effect).

The points, in the order a translation reaches them:
- `configure`: a backend's cluster as it is resolved (policies targeting Services,
  XBackends and Backends: the cluster itself, shared by every route to it).
- `originate`: the variant of a cluster a policy makes for the way it is reached (TLS
  origination); `derive` lets the other kinds carry over what they hold for the base.
- `on_rule`: a route rule's action, its backends as resolved; then, after every kind's
  `on_rule`, `on_rule_backends`: the clusters the rule sends to (variants of a policy's own).
- `on_listener`: a rule's action as served on one Gateway listener (Gateway policies).
- `on_chain`: a filter chain and the listeners it serves; `on_port`: the listener of a
  port (what is read before a chain is chosen).
- `on_gateway`: a Gateway's listeners, once built (what depends on the Gateway), and
  the secrets that brings into its IR.
- `statuses`: each policy and its ancestors, once every Gateway is built.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from portico import ir
from portico.models import Resource
from portico.objects import ObjectKey
from portico.translator.backends import Backends, Origin
from portico.translator.context import Context
from portico.translator.gateway import GatewayState, ListenerState
from portico.translator.policies.attachment import Ancestors, Attachment


class PolicyKind:
    """One policy kind in one translation. Subclasses set `kind` and `model` and override
    the points where their policies act; what a kind may target is its row of `portico.kinds`."""

    kind: ClassVar[str]
    model: ClassVar[type[Resource]]
    # attached through `Attachment` (GEP-713 as Portico's CRDs document it); False: the kind
    # attaches its policies itself (BackendTLSPolicy: the Gateway API's rules for it)
    direct: ClassVar[bool] = True

    def __init__(self, ctx: Context, attachment: Attachment) -> None:
        self.ctx = ctx
        self.attachment = attachment

    @staticmethod
    def problem(policy: Any) -> str:
        """Why Portico cannot program `policy` ("" when it can): values the schema lets through."""
        return ""

    @property
    def active(self) -> bool:
        """Whether a policy of this kind is in effect anywhere (else no point asks it)."""
        return self.kind in self.attachment.in_effect

    def gateways_only(self) -> bool:
        """Whether this kind's policies reach nothing but Gateways: what they change does
        not follow routes (the incremental path may patch a change of routes)."""
        return self.attachment.gateways_only(self.kind)

    def configure(self, cluster: ir.Cluster, backend: ObjectKey, section: str | None) -> ir.Cluster:
        return cluster

    def originate(self, cluster: ir.Cluster, origin: Origin) -> ir.Cluster | None:
        return None

    def derive(self, base: ir.Cluster, variant: ir.Cluster) -> None:
        return None

    def on_rule(self, action: ir.RouteAction, route: Resource, rule: str | None,
                backends: Backends) -> ir.RouteAction:
        return action

    def on_rule_backends(self, action: ir.RouteAction, route: Resource, rule: str | None,
                         backends: Backends) -> ir.RouteAction:
        return action

    def on_listener(self, action: ir.RouteAction, route: ObjectKey, rule: str | None, listener: ListenerState,
                    backends: Backends) -> ir.RouteAction:
        return action

    def on_chain(self, chain: ir.FilterChain, gateway: ObjectKey, group: list[ListenerState]) -> ir.FilterChain:
        return chain

    def on_port(self, listener: ir.Listener, gateway: ObjectKey, group: list[ListenerState]) -> ir.Listener:
        return listener

    def on_gateway(self, gw: GatewayState, listeners: tuple[ir.Listener, ...], backends: Backends
                   ) -> tuple[tuple[ir.Listener, ...], tuple[ir.TLSCertificate, ...]]:
        return listeners, ()

    def statuses(self) -> Iterable[tuple[Resource, Ancestors]]:
        return self.attachment.statuses(self.kind)
