"""`Programmed=True` only once the data plane holds it (ARCHITECTURE, "status").

A Gateway or ListenerSet whose translated status says Programmed=True is held
at `Programmed=False, reason Pending` until the Envoy group serving it has ACKed
an xDS version containing exactly its listeners; a NACK puts Envoy's message in
the held conditions. Each group is tracked on its own: one group's NACK never
holds back an object of another group.
"""

from __future__ import annotations

import copy
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from portico.objects import ObjectKey

# kinds whose Programmed condition waits for the data plane's ACK
PROGRAMMABLE = ("Gateway", "ListenerSet")


def is_programmed(status: dict[str, Any]) -> bool:
    return any(c.get("type") == "Programmed" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def _pending_conditions(conditions: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    out = []
    for c in conditions:
        if c.get("type") == "Programmed" and c.get("status") == "True":
            c = {**c, "status": "False", "reason": "Pending", "message": message}
        out.append(c)
    return out


def held_back(status: dict[str, Any], message: str) -> dict[str, Any]:
    """A Gateway status whose Programmed conditions (Gateway and listeners) wait for an ACK."""
    out = copy.copy(status)
    out["conditions"] = _pending_conditions(status.get("conditions") or [], message)
    if "listeners" in status:
        out["listeners"] = [{**ls, "conditions": _pending_conditions(ls.get("conditions") or [], message)}
                            for ls in status["listeners"]]
    return out


@dataclass
class _Pending:
    group: str
    version: int
    listeners: frozenset[str]


@dataclass
class _Group:
    version: int = 0  # the newest version pushed
    acked: int = 0
    nack_message: str = ""


class ProgrammedGate:
    """Which statuses may be published as they are, and which are held back, per group."""

    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}
        self._pending: dict[ObjectKey, _Pending] = {}
        self._programmed: dict[ObjectKey, tuple[str, frozenset[str]]] = {}  # what Envoy has ACKed

    def group(self, name: str) -> _Group:
        found = self._groups.get(name)
        if found is None:
            found = self._groups[name] = _Group()
        return found

    def pushed(self, group: str, version: int) -> None:
        self.group(group).version = version

    def forget_group(self, group: str) -> None:
        self._groups.pop(group, None)

    def forget(self, keep: Container[ObjectKey]) -> None:
        """Objects no longer translated lose their pending/programmed state."""
        for key in set(self._pending) | set(self._programmed):
            if key not in keep:
                self._pending.pop(key, None)
                self._programmed.pop(key, None)

    def gate(self, key: ObjectKey, status: dict[str, Any], group: str, listeners: frozenset[str]) -> dict[str, Any]:
        """The status to publish now for `key` (a Programmed=True status of a programmable kind)."""
        if key.kind not in PROGRAMMABLE or not is_programmed(status):
            self._pending.pop(key, None)
            return status
        if self._programmed.get(key) == (group, listeners):
            # Envoy already has exactly these listeners (e.g. only a route changed)
            self._pending.pop(key, None)
            return status
        pending = self._pending.get(key)
        state = self.group(group)
        if pending is None or (pending.group, pending.listeners) != (group, listeners):
            pending = self._pending[key] = _Pending(group, state.version, listeners)
        if state.acked >= pending.version:
            del self._pending[key]
            self._programmed[key] = (group, listeners)
            return status
        return held_back(status, self.held_message(key))

    def acked(self, group: str, version: int) -> list[ObjectKey]:
        """The data plane of `group` applied `version`: the objects that become Programmed."""
        state = self.group(group)
        state.acked = max(state.acked, version)
        state.nack_message = ""
        released = []
        for key, pending in list(self._pending.items()):
            if pending.group == group and version >= pending.version:
                del self._pending[key]
                self._programmed[key] = (group, pending.listeners)
                released.append(key)
        return released

    def nacked(self, group: str, version: int, message: str) -> list[ObjectKey]:
        """The data plane of `group` rejected `version`: the objects whose held status now says why."""
        self.group(group).nack_message = f"Envoy rejected configuration version {version}: {message}"
        return [key for key, p in self._pending.items() if p.group == group and p.version <= version]

    def held_message(self, key: ObjectKey) -> str:
        pending = self._pending.get(key)
        if pending is None:
            return ""
        state = self.group(pending.group)
        return state.nack_message or f"waiting for Envoy to accept configuration version {pending.version}"
