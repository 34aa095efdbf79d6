"""The translator's input and output types, apart from the code that computes them.

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

from dataclasses import dataclass, field
from typing import Any

from portico import CONTROLLER_NAME
from portico.ir import IR, GatewayInfra, merge
from portico.models import Resource
from portico.objects import ObjectKey

GatewayName = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Reserved:
    """Portico's and Envoy's own control endpoints on the machine (or pod) where Envoy runs:
    no backend may name them, whatever a platform owner allows (`translator.localaccess`).
    Through them a route would reach the xDS stream (every private key), Envoy's admin API
    (/quitquitquit) or Portico's admin API."""

    # directories and sockets: everything under them is reserved (the state directory:
    # the xDS socket, every Envoy's admin socket)
    paths: tuple[str, ...] = ()
    # (bind host, port) of TCP control endpoints: that port on any loopback, unspecified
    # or the bind address itself; on every address when the bind host is unspecified
    ports: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Placement:
    """Where the infrastructure runs one Gateway's data plane."""

    # the address Envoy's listeners bind; None when no usable address exists
    bind_address: str | None
    # status.addresses; empty means (bind_address,)
    addresses: tuple[str, ...] = ()
    # a listener on port P binds P + bind_port_offset
    bind_port_offset: int = 0
    # (bind port, "tcp" | "udp") the data plane could not bind (ListenerReasonPortUnavailable)
    unavailable: frozenset[tuple[int, str]] = frozenset()
    # why bind_address is None although addresses were requested (GatewayReasonAddressNotUsable)
    address_problem: str = ""
    # whether bind_address is what clients reach (standalone), or only where the data plane
    # binds inside its pod (Kubernetes: clients reach `addresses`, the Service's)
    bind_address_reachable: bool = True
    # a Service's externalName may name endpoints on this machine (loopback, localhost,
    # link-local) without an allow-list: standalone mode, where backends run beside Envoy
    # (its EndpointSlices may in any mode). In a Kubernetes pod, loopback is Envoy's own.
    # Backends and XBackends (a route author's objects) never may, unless the GatewayClass's
    # PorticoProxy allows it (spec.localBackends; `translator.localaccess`).
    local_backends: bool = True
    # control endpoints no backend may reach, in any mode
    reserved: Reserved = field(default_factory=Reserved)

    @property
    def status_addresses(self) -> tuple[str, ...]:
        if self.addresses:
            return self.addresses
        return (self.bind_address,) if self.bind_address and self.bind_address_reachable else ()


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


@dataclass(frozen=True)
class GatewayOutput:
    """What one Gateway's data plane needs: its Envoy configuration and its infrastructure."""

    xds: IR
    infra: GatewayInfra


@dataclass
class Translation:
    # Gateway key -> its output (Gateways of our accepted classes only)
    gateways: dict[ObjectKey, GatewayOutput] = field(default_factory=dict)
    # the full new `status` of every object the translator owns status for
    # (entries of other controllers carried over from the input untouched)
    statuses: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    # when this translation patched the previous one (`translator.incremental`): the keys
    # whose status may differ from the previous translation's (entry changed or gone);
    # None: any may have
    status_changes: frozenset[ObjectKey] | None = field(default=None, compare=False)

    @property
    def ir(self) -> IR:
        """Every Gateway's IR merged: one data plane for all (standalone's default)."""
        return merge(out.xds for _, out in sorted(self.gateways.items()))
