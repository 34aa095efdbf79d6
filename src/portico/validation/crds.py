"""The CRDs shipped in ``portico/crds`` and their compiled schemas, per (group, version, kind)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from portico.validation.schema import SchemaNode, compile_schema

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment,unused-ignore]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader


@dataclass(frozen=True, slots=True)
class CRDVersion:
    group: str
    version: str
    kind: str
    plural: str
    scope: str  # "Namespaced" | "Cluster"
    storage: bool
    deprecated: bool
    status_subresource: bool  # then status is ignored on create/update of the object
    schema: Mapping[str, Any]  # the raw openAPIV3Schema


def iter_crd_documents() -> Iterator[dict[str, Any]]:
    """Every CustomResourceDefinition document shipped with Portico."""
    pkg = resources.files("portico") / "crds"
    for entry in sorted(pkg.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        for doc in yaml.load_all(entry.read_text(encoding="utf-8"), Loader=_Loader):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                yield doc


def versions_of(crds: Iterable[Mapping[str, Any]]) -> Iterator[CRDVersion]:
    for crd in crds:
        spec = crd["spec"]
        for ver in spec.get("versions") or ():
            if not ver.get("served", False):
                continue
            yield CRDVersion(
                group=spec["group"],
                version=ver["name"],
                kind=spec["names"]["kind"],
                plural=spec["names"]["plural"],
                scope=spec.get("scope", "Namespaced"),
                storage=bool(ver.get("storage", False)),
                deprecated=bool(ver.get("deprecated", False)),
                status_subresource="status" in (ver.get("subresources") or {}),
                schema=(ver.get("schema") or {}).get("openAPIV3Schema") or {},
            )


class Registry:
    """Served CRD versions by (group, version, kind), schemas compiled on first use."""

    def __init__(self, crds: Iterable[Mapping[str, Any]]) -> None:
        self._versions = {(v.group, v.version, v.kind): v for v in versions_of(crds)}
        self._compiled: dict[tuple[str, str, str], SchemaNode] = {}
        self._lock = threading.Lock()

    def lookup(self, group: str, version: str, kind: str) -> CRDVersion | None:
        return self._versions.get((group, version, kind))

    def all(self) -> list[CRDVersion]:
        return list(self._versions.values())

    def kinds(self, group: str) -> set[str]:
        return {k for g, _, k in self._versions if g == group}

    def schema(self, crd: CRDVersion) -> SchemaNode:
        key = (crd.group, crd.version, crd.kind)
        node = self._compiled.get(key)
        if node is None:
            with self._lock:
                node = self._compiled.get(key)
                if node is None:
                    node = compile_schema(crd.schema)
                    self._compiled[key] = node
        return node


_default: Registry | None = None
_default_lock = threading.Lock()


def default_registry() -> Registry:
    """The registry of the CRDs shipped in ``portico/crds`` (loaded once)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Registry(list(iter_crd_documents()))
    return _default
