"""The seams between the shared core and a mode (Envoy Gateway's provider and
infrastructure managers, as typed Protocols).

    Provider ──events──► ControlLoop ──statuses──► StatusWriter
                           │    ▲
              placements ◄─┤    └─ rejected (Envoy NACKs) ── XdsServer
                           ▼
                  Infrastructure ──► data planes (per group)

Standalone mode declares files + API-server emulation, the store, host
processes on loopback (`portico.standalone`); Kubernetes mode declares watches,
the status subresource and Deployments (`portico.controller`); the composition
root (`portico.runtime`) builds either. The core (`portico.control`, the
translator, the xDS server) sees only these.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol

from portico.contracts import GatewayName, GatewayOutput, Placement, ProviderEvent
from portico.ir import IR
from portico.models import Gateway
from portico.objects import ObjectKey


class Provider(Protocol):
    """A source of object events: the first is the complete initial load."""

    def events(self, stop: asyncio.Event | None = None) -> AsyncIterator[ProviderEvent]: ...


class StatusWriter(Protocol):
    """Stores the status of objects we own status for: the translator's entries, merged with
    the stored status by `portico.status.compose`."""

    def write(self, key: ObjectKey, status: dict[str, Any]) -> None: ...

    def release(self, keep: Iterable[ObjectKey]) -> None:
        """Objects written before but not in `keep` are no longer ours."""
        ...


class EventRecorder(Protocol):
    """Warnings about an object where users look for them (Kubernetes Events)."""

    def warn(self, key: ObjectKey, api_version: str, reason: str, message: str) -> None: ...


class Xds(Protocol):
    """What the control loop needs of the xDS server (`portico.xds.server.XdsServer`)."""

    def update(self, group: str, ir: IR) -> int:
        """Serve `ir` to the Envoys of `group`; returns its version."""
        ...

    def remove(self, group: str) -> None: ...


class Infrastructure(Protocol):
    """Places Gateways, groups their IRs into data planes and runs those. When placements
    change on their own (e.g. a port to bind again), it calls the `on_change` it was
    constructed with: the control loop translates again."""

    def placements(self, gateways: Mapping[GatewayName, Gateway]) -> dict[GatewayName, Placement]:
        """Where each of our Gateways runs (translator input)."""
        ...

    def groups(self, outputs: Mapping[ObjectKey, GatewayOutput]) -> dict[str, IR]:
        """xDS group name -> the IR its Envoys are served."""
        ...

    async def reconcile(self, outputs: Mapping[ObjectKey, GatewayOutput]) -> None:
        """Create, update and delete data planes so that each group has one."""
        ...

    def rejected(self, group: str, message: str) -> bool:
        """Envoy of `group` rejected a configuration; True when placements change (translate again)."""
        ...

    async def stop(self) -> None:
        """Stop the data planes this process runs (on the way out)."""
        ...
