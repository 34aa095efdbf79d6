"""Server-side apply: which field manager owns which field, conflicts, and fields a
manager stops applying.

A field is a path to a leaf of the object (maps are walked, lists are atomic: the
kinds Portico applies are compared list by list). An apply by manager M:
- conflicts (409) where it sets a field another manager owns to another value,
  unless forced (then M takes the field over);
- sets every field it names, and becomes their owner;
- removes the fields M applied last time and no longer names, unless another
  manager owns them too.
An update (PUT or merge patch) makes its manager the owner of the fields it
changed. Ownership is kept per object and rendered as metadata.managedFields
(FieldsV1), as `kubectl get -o yaml --show-managed-fields` shows it.
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]
SERVER_FIELDS = {("metadata", k) for k in ("resourceVersion", "uid", "generation", "creationTimestamp",
                                           "managedFields", "name", "namespace")}


@dataclass
class Conflict(Exception):
    fields: list[tuple[Path, str]]  # (field, the manager owning it)

    def message(self) -> str:
        parts = [f'conflict with "{m}": .{".".join(p)}' for p, m in self.fields]
        return f"Apply failed with {len(parts)} conflict{'s' if len(parts) > 1 else ''}: " + "; ".join(parts)


@dataclass
class Owners:
    """Per object: manager -> (operation, fields)."""

    managers: dict[str, tuple[str, set[Path]]] = field(default_factory=dict)

    def owner_of(self, path: Path, but: str) -> str | None:
        for manager, (_, paths) in self.managers.items():
            if manager != but and path in paths:
                return manager
        return None


def leaves(obj: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Every field of an object with its value (lists whole)."""
    if isinstance(obj, dict) and obj:
        out: dict[Path, Any] = {}
        for k, v in obj.items():
            out.update(leaves(v, (*prefix, k)))
        return out
    return {prefix: obj}


def fields_of(obj: dict[str, Any]) -> dict[Path, Any]:
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    return {p: v for p, v in leaves(body).items() if p[:2] not in SERVER_FIELDS and p}


def apply(current: dict[str, Any] | None, config: dict[str, Any], owners: Owners, manager: str,
          force: bool) -> dict[str, Any]:
    """The object after `manager` applied `config` (raises Conflict)."""
    applied = fields_of(config)
    now = fields_of(current or {})
    conflicts = [(p, other) for p, v in applied.items()
                 if p in now and now[p] != v and (other := owners.owner_of(p, manager))]
    if conflicts and not force:
        raise Conflict(conflicts)
    out = copy.deepcopy(current) if current is not None else {
        "apiVersion": config["apiVersion"], "kind": config["kind"], "metadata": {}}
    _, before = owners.managers.get(manager, ("Apply", set()))
    for path in before - set(applied):  # no longer applied: gone, unless someone else holds it
        if owners.owner_of(path, manager) is None:
            _remove(out, path)
    for path, value in applied.items():
        _set(out, path, copy.deepcopy(value))
    for other, (operation, paths) in owners.managers.items():  # forced: the fields change hands
        if other != manager:
            owners.managers[other] = (operation, paths - {p for p, _ in conflicts})
    owners.managers[manager] = ("Apply", set(applied))
    return out


def updated(before: dict[str, Any] | None, after: dict[str, Any], owners: Owners, manager: str) -> None:
    """An update: its manager owns the fields it set or changed."""
    old, new = fields_of(before or {}), fields_of(after)
    changed = {p for p, v in new.items() if old.get(p, _MISSING) != v}
    if not changed:
        return
    for other, (operation, paths) in list(owners.managers.items()):
        owners.managers[other] = (operation, paths - changed)
    operation, paths = owners.managers.get(manager, ("Update", set()))
    owners.managers[manager] = (operation if operation == "Apply" else "Update", paths | changed)


def managed_fields(owners: Owners, api_version: str) -> list[dict[str, Any]]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    for manager, (operation, paths) in sorted(owners.managers.items()):
        if not paths:
            continue
        tree: dict[str, Any] = {}
        for path in sorted(paths):
            node = tree
            for part in path:
                node = node.setdefault(f"f:{part}", {})
        out.append({"manager": manager, "operation": operation, "apiVersion": api_version, "time": now,
                    "fieldsType": "FieldsV1", "fieldsV1": tree})
    return out


_MISSING = object()


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    node = obj
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def _remove(obj: dict[str, Any], path: Path) -> None:
    parents = [obj]
    for part in path[:-1]:
        node = parents[-1].get(part)
        if not isinstance(node, dict):
            return
        parents.append(node)
    parents[-1].pop(path[-1], None)
    for node, part in zip(reversed(parents[:-1]), reversed(path[:-1]), strict=True):  # prune emptied maps
        if node.get(part) == {}:
            node.pop(part)
