"""The translator's input and output types, apart from the code that computes them
(`Placement` and `GatewayOutput`, which the infrastructure shares, are `portico.contracts`'s).

A `Snapshot` holds neutral inputs only: objects, and for each Gateway a
`Placement` that the infrastructure reports (where its data plane binds, what
addresses it has, which ports it could not bind). The translator knows nothing
of loopback pools, port offsets, files or clusters; each mode's infrastructure
turns its own facts into placements (`portico.infra`).

A `Translation` is one `GatewayOutput` per Gateway of ours (the unit that gets
its own data plane: an xDS IR and an infrastructure description), plus the
status of every object the translator owns status for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from portico import CONTROLLER_NAME
from portico.contracts import GatewayName, GatewayOutput, Placement, Reserved
from portico.ir import IR, merge
from portico.models import Resource
from portico.objects import ObjectKey


@dataclass(frozen=True)
class Quarantined:
    """A route left out of the configuration at one generation: Envoy rejected it (or it is
    held out while the control loop finds which route Envoy rejects, `status.quarantine`).
    It is reported Accepted=False with `message` until its generation changes."""

    generation: int
    message: str


@dataclass(frozen=True)
class Discovered:
    """An OpenID provider's discovery document (`<issuer>/.well-known/openid-configuration`),
    as far as SecurityPolicy oidc reads it, or why it could not be had (`error`)."""

    authorization_endpoint: str = ""
    token_endpoint: str = ""
    end_session_endpoint: str = ""
    error: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Every stored object, parsed (`portico.models.parse_object`), keyed by
    identity. metadata.generation, creationTimestamp and uid are filled in by
    the provider (the API server, or its emulation in standalone mode)."""

    objects: dict[ObjectKey, Resource]
    # Gateway (namespace, name) -> its placement; a Gateway without one has no address
    placements: dict[GatewayName, Placement] = field(default_factory=dict)
    # GatewayClasses whose spec.controllerName is this are ours
    controller_name: str = CONTROLLER_NAME
    # optional: the previous translation's per-route results, reused for unchanged routes
    # (`portico.translator.backends.RuleMemo`); the translation is the same with or without
    memo: Any = field(default=None, compare=False)
    # optional, for the memo's delta path: the store's object revision of `objects`, and
    # (revision, keys): the objects changed since that earlier revision (`Store.changes_since`);
    # without them the memo compares the objects itself
    revision: int | None = field(default=None, compare=False)
    changes: tuple[int, frozenset[ObjectKey]] | None = field(default=None, compare=False)
    # HTTPRoutes and GRPCRoutes left out of the configuration (Envoy rejected them), at the
    # generation they were rejected at; an entry for another generation is ignored
    quarantined: Mapping[ObjectKey, Quarantined] = field(default_factory=dict)
    # OpenID issuer -> its discovery document as fetched by the control loop (`portico.oidc`),
    # for SecurityPolicy oidc providers that name no endpoints; an issuer absent is not fetched yet
    discovered: Mapping[str, Discovered] = field(default_factory=dict)


@dataclass
class Translation:
    # Gateway key -> its output (Gateways of our accepted classes only)
    gateways: dict[ObjectKey, GatewayOutput] = field(default_factory=dict)
    # the full new `status` of every object the translator owns status for
    # (our entries only: other controllers' ones are merged in where it is stored,
    # `portico.status.compose`)
    statuses: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    # when this translation patched the previous one (`translator.incremental`): the keys
    # whose status may differ from the previous translation's (entry changed or gone);
    # None: any may have
    status_changes: frozenset[ObjectKey] | None = field(default=None, compare=False)
    # OpenID issuers whose discovery document SecurityPolicy oidc needs (the control loop fetches them)
    issuers: frozenset[str] = frozenset()

    @property
    def ir(self) -> IR:
        """Every Gateway's IR merged: one data plane for all (standalone's default)."""
        return merge(out.xds for _, out in sorted(self.gateways.items()))


__all__ = ["GatewayName", "GatewayOutput", "Placement", "Reserved", "Snapshot", "Translation"]
