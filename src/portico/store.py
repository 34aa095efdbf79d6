"""The current objects: a plain cache keyed by (group, kind, namespace, name).

Objects arrive as an API server stored them (metadata included): from the
Kubernetes API, or in standalone mode through `portico.provider.apiserver`'s
emulation. Each object is also parsed (`portico.models.parse_object`); an object
that does not parse is not applied: its previous version keeps serving and the
error is listed. Status is kept apart from the document and set by the control
loop's StatusWriter (`portico.status.store`, which composes it: `portico.status.compose`).
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from portico import kinds
from portico.contracts import Document, DocumentError, ProviderEvent, Source
from portico.models import InvalidObject, Resource, parse_object
from portico.objects import ObjectKey, utc_now

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StoredObject:
    key: ObjectKey
    raw: dict[str, Any]  # Kubernetes shape without status; metadata filled in
    resource: Resource  # the parsed view the translator reads
    source: Source
    document_status: dict[str, Any] = field(default_factory=dict)  # `status` written in the manifest
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def generation(self) -> int:
        return int(self.raw["metadata"]["generation"])

    def to_kubernetes(self) -> dict[str, Any]:
        return {**self.raw, "status": self.status}


class Store:
    def __init__(self, clock: Callable[[], str] = utc_now, next_resource_version: Callable[[], str] | None = None
                 ) -> None:
        self.clock = clock  # lastTransitionTime of the statuses written here (`portico.status.store`)
        counter = itertools.count(1)
        self._next_version = next_resource_version or (lambda: str(next(counter)))
        self._objects: dict[ObjectKey, StoredObject] = {}
        self._load_errors: tuple[DocumentError, ...] = ()
        self._invalid: dict[ObjectKey, DocumentError] = {}
        # keys whose status the control loop wrote (vs. the manifest's own)
        self._owned_status: set[ObjectKey] = set()
        self.revision = 0  # grows with every change of an object or a status (live views poll it)
        # the parsed objects, kept as they change: a snapshot is a copy, not a rebuild
        self._resources: dict[ObjectKey, Resource] = {}
        self._by_kind: dict[str, dict[ObjectKey, Resource]] = {}
        # incremental translation: which objects changed since a snapshot (`changes_since`)
        self.object_revision = 0
        self._log: list[tuple[int, ObjectKey]] = []

    # ------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, key: ObjectKey) -> StoredObject | None:
        return self._objects.get(key)

    def objects(self) -> dict[ObjectKey, StoredObject]:
        return dict(self._objects)

    def resources(self) -> dict[ObjectKey, Resource]:
        return dict(self._resources)

    def of_kind(self, kind: str) -> dict[ObjectKey, Resource]:
        """The parsed objects of one kind (a copy)."""
        return dict(self._by_kind.get(kind, {}))

    def changes_since(self, revision: int) -> frozenset[ObjectKey] | None:
        """Keys of the objects added, changed or deleted after `object_revision` was
        `revision`; None when the log no longer reaches back that far."""
        if revision == self.object_revision:
            return frozenset()
        if not self._log or self._log[0][0] > revision + 1:
            return None
        start = bisect.bisect_right(self._log, revision, key=lambda entry: entry[0])
        return frozenset(key for _, key in self._log[start:])

    def errors(self) -> list[DocumentError]:
        """Documents skipped by the provider and objects not applied, in file order."""
        every = list(self._load_errors) + list(self._invalid.values())
        return sorted(every, key=lambda e: (e.file, e.line))

    def list_objects(self, kind: str | None = None, namespace: str | None = None,
             name: str | None = None) -> list[dict[str, Any]]:
        """Objects in Kubernetes shape (status included), optionally filtered."""
        out = []
        for key in sorted(self._objects):
            if (kind and key.kind != kind) or (namespace is not None and key.namespace != namespace) \
                    or (name and key.name != name):
                continue
            out.append(self._objects[key].to_kubernetes())
        return out

    # ------------------------------------------------------------ writing

    def apply(self, event: ProviderEvent) -> bool:
        """Apply one provider sync; True when an object changed."""
        if event.errors != self._load_errors:
            self.revision += 1
        self._load_errors = event.errors
        changed = False
        for key in event.deletes:
            changed = self.delete(key) or changed
        for doc in event.upserts:
            changed = self.upsert(doc) or changed
        if changed:
            self.revision += 1
        return changed

    def upsert(self, doc: Document) -> bool:
        # without status, the very dict admitted (the API-server emulation keeps it too: one copy)
        raw = {k: v for k, v in doc.raw.items() if k != "status"} if "status" in doc.raw else doc.raw
        document_status = doc.raw.get("status") if isinstance(doc.raw.get("status"), dict) else {}
        current = self._objects.get(doc.key)
        if current is not None and _same_object(current.raw, raw) and (
                (doc.key.group, doc.key.kind) not in STATUS_INPUTS
                or dict(document_status or {}) == current.document_status):
            # Only the resourceVersion or the status moved (a status write, ours or another
            # controller's), or nothing did (a watch re-listing): nothing to translate; the
            # status writer merges the other controllers' entries from the object as it is
            # when it writes. (A Service's status is an input: when it moves, it is translated.)
            self._invalid.pop(doc.key, None)
            current.source = doc.source
            current.raw["metadata"] = raw.get("metadata", current.raw["metadata"])
            current.document_status = dict(document_status or {})
            return False
        try:
            resource = parse_object({**raw, "status": document_status} if document_status else raw)
        except InvalidObject as e:
            self._reject(doc, e)
            return False
        except Exception as e:  # noqa: BLE001 (an input the models did not foresee: reported, not applied)
            log.exception("could not parse %s", doc.key)
            self._reject(doc, InvalidObject("", f"cannot be processed: {type(e).__name__}: {e}"))
            return False
        self._invalid.pop(doc.key, None)
        self._objects[doc.key] = StoredObject(
            doc.key, raw, resource, doc.source, dict(document_status or {}),
            status=current.status if current is not None else dict(document_status or {}),
        )
        self._resources[doc.key] = resource
        self._by_kind.setdefault(doc.key.kind, {})[doc.key] = resource
        self._changed(doc.key)
        return True

    def delete(self, key: ObjectKey) -> bool:
        self._invalid.pop(key, None)
        self._owned_status.discard(key)
        if self._objects.pop(key, None) is None:
            return False
        del self._resources[key]
        self._by_kind[key.kind].pop(key, None)
        self._changed(key)
        return True

    def set_status(self, key: ObjectKey, status: dict[str, Any]) -> bool:
        """Replace the status of `key` (composed by its writer: `portico.status.compose`);
        True when it changed."""
        obj = self._objects.get(key)
        if obj is None:
            return False
        self._owned_status.add(key)
        if obj.status == status:
            return False
        obj.status = status
        obj.raw["metadata"] = {**obj.raw["metadata"], "resourceVersion": self._next_version()}
        self.revision += 1
        return True

    def release_statuses(self, keep: Iterable[ObjectKey]) -> list[ObjectKey]:
        """Objects the control loop wrote status for but no longer owns (e.g. a
        GatewayClass of another controller now) get their manifest's status back."""
        keep = set(keep)
        released = [k for k in self._owned_status if k not in keep]
        for key in released:
            self._owned_status.discard(key)
            obj = self._objects.get(key)
            if obj is not None:
                self.set_status(key, dict(obj.document_status))
                self._owned_status.discard(key)
        return released

    # ------------------------------------------------------------ helpers

    # The change log keeps this many entries: enough for any burst between two snapshots;
    # a snapshot older than that is translated from scratch.
    LOG_SIZE = 200_000

    def _changed(self, key: ObjectKey) -> None:
        self.object_revision += 1
        self._log.append((self.object_revision, key))
        if len(self._log) > 2 * self.LOG_SIZE:
            del self._log[:-self.LOG_SIZE]

    def _reject(self, doc: Document, error: InvalidObject) -> None:
        problem = DocumentError(doc.source.file, doc.source.line, error.message, error.path, str(doc.key))
        if self._invalid.get(doc.key) != problem:
            serving = "; the previous version keeps serving" if doc.key in self._objects else ""
            log.error("invalid object not applied: %s%s", problem, serving)
        self._invalid[doc.key] = problem


VOLATILE_METADATA = ("resourceVersion", "managedFields")
# kinds whose status the translator reads (a Service's load balancer): a status-only change
# of one is translated; of any other kind (controllers' status: ours and others') it is not
STATUS_INPUTS = frozenset((k.group, k.kind) for k in kinds.KINDS if k.status == "input")


def _same_object(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal but for metadata the API server changes on every write (status included)."""
    def meta(raw: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in (raw.get("metadata") or {}).items() if k not in VOLATILE_METADATA}

    return meta(a) == meta(b) and {k: v for k, v in a.items() if k != "metadata"} == \
        {k: v for k, v in b.items() if k != "metadata"}
