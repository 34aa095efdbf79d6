"""Statuses from a translation to the StatusWriter: a Gateway's or ListenerSet's through
the Programmed gate (`portico.status.programmed`: `Programmed=True` once its Envoy group
ACKed its listeners), every other status written unless it is the very status already
written to the very object.
"""

from __future__ import annotations

from typing import Any

from portico.metrics import Metrics
from portico.objects import ObjectKey
from portico.seams import StatusWriter
from portico.status.programmed import PROGRAMMABLE, ProgrammedGate, held_back
from portico.store import Store

# Gateway/ListenerSet key -> (its xDS group, its listeners)
Owners = dict[ObjectKey, tuple[str, frozenset[str]]]


class StatusPublisher:
    def __init__(self, store: Store, writer: StatusWriter, metrics: Metrics) -> None:
        self.store = store
        self.writer = writer
        self.metrics = metrics
        self.gate = ProgrammedGate()
        self.desired: dict[ObjectKey, dict[str, Any]] = {}  # the translator's statuses, as last published
        self._written: dict[ObjectKey, str] = {}  # key -> uid of the object `desired[key]` was written to
        self._complete = False  # the last publish wrote every status (a patch's may then write its changes)

    def publish(self, statuses: dict[ObjectKey, dict[str, Any]], owners: Owners,
                changes: frozenset[ObjectKey] | None = None) -> None:
        """Every status of a translation; with `changes` (a patched translation,
        `translator.incremental`), only those it names may differ from the previous one's."""
        complete, self._complete = self._complete, False
        if changes is not None and complete:
            self._publish_changes(statuses, changes, owners)
        else:
            previous, self.desired = self.desired, statuses
            written, self._written = self._written, {}
            self.gate.forget(statuses.keys())
            for key, status in statuses.items():
                self._publish_one(key, status, owners, previous, written)
            self.writer.release(statuses)
        self._complete = True

    def acked(self, group: str, version: int) -> None:
        for key in self.gate.acked(group, version):
            if key in self.desired:
                self._hand(key, self.desired[key])

    def nacked(self, group: str, version: int, message: str) -> None:
        for key in self.gate.nacked(group, version, message):
            if key in self.desired:
                self._hand(key, held_back(self.desired[key], self.gate.held_message(key)))

    def _publish_one(self, key: ObjectKey, status: dict[str, Any], owners: Owners,
                     previous: dict[ObjectKey, dict[str, Any]], written: dict[ObjectKey, str]) -> None:
        owner = owners.get(key)
        if owner is not None and key.kind in PROGRAMMABLE:
            self._hand(key, self.gate.gate(key, status, *owner))
        else:
            self._write(key, status, previous, written)

    def _publish_changes(self, statuses: dict[ObjectKey, dict[str, Any]], changes: frozenset[ObjectKey],
                         owners: Owners) -> None:
        """Only the statuses a patched translation names, and every Gateway and ListenerSet
        (they still pass the Programmed gate: the version changed)."""
        previous, self.desired = self.desired, statuses
        removed = [key for key in changes if key not in statuses]
        for key in removed:
            self._written.pop(key, None)
        gated = {key for key in owners if key.kind in PROGRAMMABLE}
        for key in gated | changes:
            if key in statuses:
                self._publish_one(key, statuses[key], owners, previous, self._written)
        if removed:
            self.gate.forget(statuses.keys())
            self.writer.release(statuses)

    def _write(self, key: ObjectKey, status: dict[str, Any], previous: dict[ObjectKey, dict[str, Any]],
               written: dict[ObjectKey, str]) -> None:
        """Write a route's (or other object's) status unless this very status was written
        to this very object (same uid) by the previous sync: at 10k routes, re-stamping
        every unchanged status took longer than translating the change."""
        obj = self.store.get(key)
        if obj is None:
            return
        uid = str(obj.raw["metadata"].get("uid", ""))
        if written.get(key) == uid and previous.get(key) == status:
            self._written[key] = uid
            return
        self._hand(key, status)
        self._written[key] = uid

    def _hand(self, key: ObjectKey, status: dict[str, Any]) -> None:
        self.metrics.status_writes.inc()
        self.writer.write(key, status)
