"""Object identity shared by the provider, the store and the translator."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any, NamedTuple

# the API group names, where their readers have found them (`portico.kinds` defines them)
from portico.kinds import CORE_GROUP as CORE_GROUP
from portico.kinds import GATEWAY_GROUP as GATEWAY_GROUP
from portico.kinds import KINDS
from portico.kinds import PORTICO_GROUP as PORTICO_GROUP
from portico.kinds import XBACKEND_GROUP as XBACKEND_GROUP


class ObjectKey(NamedTuple):
    group: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name}"


# the kinds whose objects have no namespace (`portico.kinds`); any other kind's have one
CLUSTER_SCOPED = frozenset(k.kind for k in KINDS if not k.namespaced)


def group_of(api_version: str) -> str:
    """'gateway.networking.k8s.io/v1' -> 'gateway.networking.k8s.io'; 'v1' -> ''."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def key_of(raw: dict[str, Any]) -> ObjectKey:
    meta = raw.get("metadata") or {}
    kind = str(raw.get("kind", ""))
    namespace = "" if kind in CLUSTER_SCOPED else str(meta.get("namespace") or "default")
    # interned: a key is held by every index of the object (provider, emulation, store, translator)
    return ObjectKey(sys.intern(group_of(str(raw.get("apiVersion", "")))), sys.intern(kind), sys.intern(namespace),
                     sys.intern(str(meta.get("name", ""))))


def utc_now() -> str:
    """Now as metadata and conditions write it (RFC 3339, seconds): creationTimestamp,
    lastTransitionTime."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Strings longer than this are kept as they are (names are at most 253 characters;
# longer values, e.g. certificate data, are rarely repeated)
_INTERN_MAX = 253


def interned(value: Any) -> Any:
    """`value` (JSON-shaped: dicts, lists, scalars) rebuilt with its keys and short string
    values interned: one string object per distinct text however many objects hold it
    (issue 30: 15,000 objects held 365,000 strings of 35,000 distinct texts, 20 of 22 MiB
    of them repeats). Interned in the bulk workers, the strings of a burst pickle once
    per chunk."""
    if isinstance(value, dict):
        return {_intern(k): interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interned(v) for v in value]
    if type(value) is str and len(value) <= _INTERN_MAX:
        return sys.intern(value)
    return value


def _intern(key: Any) -> Any:
    return sys.intern(key) if type(key) is str else key
