"""Standalone mode's StatusWriter: statuses live in the store (admin API, `portico status`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from portico import CONTROLLER_NAME
from portico.objects import ObjectKey
from portico.status.compose import compose
from portico.store import Store


class StoreStatusWriter:
    def __init__(self, store: Store, controller_name: str = CONTROLLER_NAME) -> None:
        self.store = store
        self.controller_name = controller_name

    def write(self, key: ObjectKey, status: dict[str, Any]) -> None:
        current = self.store.get(key)
        if current is None:
            return
        # other controllers' entries as they are now, not as the translation read them
        self.store.set_status(key, compose(current.status, status, self.controller_name, self.store.clock))

    def release(self, keep: Iterable[ObjectKey]) -> None:
        self.store.release_statuses(keep)
