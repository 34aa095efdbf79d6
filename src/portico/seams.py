"""The seams between the shared core and a mode (Envoy Gateway's provider and
infrastructure managers, as typed Protocols).

    Provider ──events──► ControlLoop ──statuses──► StatusWriter
                           │    ▲
              placements ◄─┤    └─ rejected (Envoy NACKs) ── XdsServer
                           ▼
                  Infrastructure ──► data planes (per group)

Standalone mode composes files + API-server emulation, the store, host
processes on loopback (`portico.standalone`); Kubernetes mode composes watches,
the status subresource and Deployments. The core (`portico.control`, the
translator, the xDS server) sees only these.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Protocol

from portico.ir import IR
from portico.models import Gateway
from portico.objects import ObjectKey
from portico.provider import ProviderEvent
from portico.translator.snapshot import GatewayName, GatewayOutput, Placement


class Provider(Protocol):
    """A source of object events: the first is the complete initial load."""

    def events(self, stop: asyncio.Event | None = None) -> AsyncIterator[ProviderEvent]: ...


class StatusWriter(Protocol):
    """Stores the status of objects we own status for (our entries merged in by the translator)."""

    def write(self, key: ObjectKey, status: dict[str, Any]) -> None: ...

    def release(self, keep: Iterable[ObjectKey]) -> None:
        """Objects written before but not in `keep` are no longer ours."""
        ...


class EventRecorder(Protocol):
    """Warnings about an object where users look for them (Kubernetes Events)."""

    def warn(self, key: ObjectKey, api_version: str, reason: str, message: str) -> None: ...


class Infrastructure(Protocol):
    """Places Gateways, groups their IRs into data planes and runs those."""

    # called when placements changed on their own (e.g. a port to bind again): translate again
    on_change: Callable[[], None] | None

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
