"""Indexes over a snapshot that every translation step reads."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import TypeVar

from portico.models import (
    EndpointSlice,
    LabelSelector,
    Namespace,
    ReferenceGrant,
    Resource,
)
from portico.objects import ObjectKey
from portico.translator.snapshot import Snapshot

R = TypeVar("R", bound=Resource)


class Context:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.by_kind: dict[str, list[Resource]] = defaultdict(list)
        self.by_name: dict[tuple[str, str, str], Resource] = {}
        for key, obj in sorted(snapshot.objects.items()):
            self.by_kind[key.kind].append(obj)
            self.by_name[(key.kind, key.namespace, key.name)] = obj
        self.slices: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
        for s in self.all(EndpointSlice, "EndpointSlice"):
            service = service_of(s)
            if service:
                self.slices[(s.namespace, service)].append(s)

    def advance(self, snapshot: Snapshot, changed: Iterable[ObjectKey]) -> None:
        """Become the context of `snapshot`, which differs from this one's only in the
        objects `changed` (the incremental path): the indexes are patched, not rebuilt."""
        self.snapshot = snapshot
        for key in changed:
            obj = snapshot.objects.get(key)
            name = (key.kind, key.namespace, key.name)
            if key.kind == "EndpointSlice":
                self._reindex_slice(self.by_name.get(name), obj)
            listed = self.by_kind[key.kind]
            at = bisect.bisect_left(listed, key, key=lambda o: o.key)
            present = at < len(listed) and listed[at].key == key
            if obj is None:
                self.by_name.pop(name, None)
                if present:
                    del listed[at]
                continue
            self.by_name[name] = obj
            if present:
                listed[at] = obj
            else:
                listed.insert(at, obj)

    def _reindex_slice(self, old: Resource | None, new: Resource | None) -> None:
        """`slices` with `old` out and `new` in, each Service's list in key order as built."""
        service = service_of(old) if isinstance(old, EndpointSlice) else None
        if old is not None and service:
            listed = self.slices.get((old.namespace, service), [])
            listed[:] = [s for s in listed if s is not old]
        service = service_of(new) if isinstance(new, EndpointSlice) else None
        if isinstance(new, EndpointSlice) and service:
            listed = self.slices[(new.namespace, service)]
            listed.insert(bisect.bisect_left(listed, new.key, key=lambda o: o.key), new)

    def all(self, cls: type[R], kind: str) -> Iterator[R]:
        for obj in self.by_kind.get(kind, ()):
            if isinstance(obj, cls):
                yield obj

    def get(self, cls: type[R], kind: str, namespace: str, name: str) -> R | None:
        obj = self.by_name.get((kind, namespace, name))
        return obj if isinstance(obj, cls) else None

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        ns = self.get(Namespace, "Namespace", "", namespace)
        labels = dict(ns.metadata.labels) if ns else {}
        # Kubernetes sets this label on every namespace (since 1.21).
        labels.setdefault("kubernetes.io/metadata.name", namespace)
        return labels

    def reference_allowed(self, from_group: str, from_kind: str, from_ns: str,
                          to_group: str, to_kind: str, to_ns: str, to_name: str) -> bool:
        """ReferenceGrant rule: a reference to another namespace is allowed only
        when a grant in the target namespace names the source and the target."""
        if from_ns == to_ns:
            return True
        for grant in self.all(ReferenceGrant, "ReferenceGrant"):
            if grant.namespace != to_ns:
                continue
            if not any(f.group == from_group and f.kind == from_kind and f.namespace == from_ns
                       for f in grant.spec.from_):
                continue
            if any(t.group == to_group and t.kind == to_kind and t.name in (None, "", to_name)
                   for t in grant.spec.to):
                return True
        return False


def service_of(endpoint_slice: EndpointSlice) -> str | None:
    """The Service an EndpointSlice belongs to (its kubernetes.io/service-name label)."""
    return endpoint_slice.metadata.labels.get("kubernetes.io/service-name") or None


def selector_matches(selector: LabelSelector, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics (matchLabels AND matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        value = labels.get(req.key)
        ok = {
            "In": present and value in req.values,
            "NotIn": not present or value not in req.values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(req.operator, False)
        if not ok:
            return False
    return True


def object_ref(key: ObjectKey) -> str:
    return f"{key.namespace}/{key.name}"
