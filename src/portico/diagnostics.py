"""A read-only view of what the control loop last did, for the faces that show it:
the admin API (`/api/config_dump`, `/api/explain`, `/readyz`) and the CLI's offline
paths (`portico config-dump -f`, `portico explain -f`). Nothing here changes the loop.

- config dump: the last translation per Gateway ("ir") or the Envoy resources per
  xDS group ("xds"), private keys redacted (`portico.dump`);
- explain: Envoy's selection replayed on a Gateway's IR (`portico.explain`);
- readiness: a configuration was translated and every Envoy group has ACKed its
  newest version;
- exposure: the routes public Gateways expose without authentication, read from the
  last translation's IR (`portico.exposure`: `portico analyze`, the topology page).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from portico.contracts import GatewayOutput
from portico.dump import ir_dump, xds_dump
from portico.explain import Request, explain, render
from portico.exposure import Exposure, unauthenticated
from portico.ir import IR
from portico.objects import ObjectKey
from portico.status import ProgrammedGate
from portico.translator import Translation

# xDS group -> IR of the Gateways given (the infrastructure's grouping: `Infrastructure.groups`)
Grouping = Callable[[Mapping[ObjectKey, GatewayOutput]], dict[str, IR]]


class LoopState(Protocol):
    """What the view reads of the control loop (`portico.control.ControlLoop`)."""

    @property
    def last_translation(self) -> Translation | None: ...

    @property
    def last_irs(self) -> Mapping[str, IR]: ...

    @property
    def gate(self) -> ProgrammedGate: ...


class Diagnostics:
    def __init__(self, loop: LoopState, groups: Grouping) -> None:
        self.loop = loop
        self.groups = groups

    def _outputs(self) -> dict[ObjectKey, GatewayOutput]:
        translation = self.loop.last_translation
        return translation.gateways if translation is not None else {}

    def config_dump(self, gateway: str | None = None, fmt: str = "ir") -> dict[str, Any]:
        """The last translation per Gateway ("ir") or the Envoy resources per xDS group
        ("xds"), private keys redacted; `gateway` "namespace/name" narrows it."""
        outputs = self._outputs()
        if fmt == "xds":
            wanted = {k: out for k, out in outputs.items() if gateway in (None, f"{k.namespace}/{k.name}")}
            groups = self.groups(wanted) if gateway is not None else self.loop.last_irs
            return {"groups": xds_dump(groups)}
        return {"gateways": ir_dump(outputs, gateway)}

    def explain(self, port: int, host: str, path: str = "/", method: str = "GET",
                headers: tuple[tuple[str, str], ...] = (), sni: str | None = None,
                gateway: str | None = None, listener: str | None = None) -> dict[str, Any]:
        """`portico explain` on the last translation: {"gateway", "lines"} or {"error"}; the
        listener by port, or by name (`listener`)."""
        for key, out in sorted(self._outputs().items()):
            if gateway not in (None, f"{key.namespace}/{key.name}"):
                continue
            bind = next((ls.bind_port for ls in out.infra.listeners
                         if (ls.name == listener if listener else ls.port == port)), None)
            if bind is None:
                continue
            answer = explain(out.xds, Request(bind, host, path, method, headers, sni))
            return {"gateway": f"{key.namespace}/{key.name}", "lines": render(answer, out.xds)}
        where = f"has a listener {listener}" if listener else f"listens on port {port}"
        return {"error": f"no Gateway{' ' + gateway if gateway else ''} {where}"}

    def exposures(self, objects: list[dict[str, Any]], controller: str) -> list[Exposure]:
        """The routes public Gateways expose without authentication, as the last translation
        programs them (`objects`: the stored objects it was made from, with their statuses)."""
        return unauthenticated(objects, self._outputs(), controller)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready once a configuration was translated and every Envoy group has ACKed its
        newest version (`/readyz`); the details name each group's state."""
        groups = {}
        for group in sorted(self.loop.last_irs):
            state = self.loop.gate.group(group)
            groups[group] = "ready" if state.acked >= state.version else (
                state.nack_message or f"waiting for version {state.version}")
        ready = self.loop.last_translation is not None and all(v == "ready" for v in groups.values())
        return ready, {"groups": groups}
