"""The current objects, with Kubernetes metadata semantics (see ARCHITECTURE, "store").

- `metadata.generation` starts at 1 and grows by 1 on every spec change (for
  kinds without a spec, e.g. Secret or EndpointSlice: any change of the content
  other than metadata and status);
- `metadata.uid` and `metadata.creationTimestamp` are set when an object is
  first seen and kept while it exists (route precedence depends on creation time);
- `metadata.resourceVersion` grows on every change, status included.

Each object is also parsed (`portico.models.parse_object`). An object that does
not parse is not applied: its previous valid version keeps serving and the
error is listed. Status is kept apart from the document and set by the control loop.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from portico.models import InvalidObject, Resource, parse_object
from portico.objects import CLUSTER_SCOPED, ObjectKey
from portico.provider import Document, DocumentError, ProviderEvent, Source
from portico.validation import Violation, apply_defaults, validate
from portico.validation.cli import field_line

log = logging.getLogger(__name__)

# metadata the store owns: values written in a manifest are ignored
SERVER_METADATA = ("generation", "uid", "creationTimestamp", "resourceVersion")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec_of(raw: dict[str, Any]) -> Any:
    """What a generation counts changes of: `spec`, or for kinds without one
    everything but metadata and status (e.g. Secret data, EndpointSlice endpoints)."""
    if "spec" in raw:
        return raw["spec"]
    return {k: v for k, v in raw.items() if k not in ("apiVersion", "kind", "metadata", "status")}


def _content(raw: dict[str, Any]) -> dict[str, Any]:
    """The document as written, without status and server-owned metadata."""
    out = {k: v for k, v in raw.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for name in SERVER_METADATA:
        meta.pop(name, None)
    out["metadata"] = meta
    return out


# list entries that keep their identity across status updates, by the field naming them
_ENTRY_KEYS = ("type", "name", "parentRef", "ancestorRef")


def _entry_id(entry: Any) -> Any:
    if isinstance(entry, dict):
        for name in _ENTRY_KEYS:
            if name in entry:
                return name, repr(entry[name])
    return None


def stamp_transitions(new: Any, old: Any, clock: Callable[[], str]) -> Any:
    """`new` with every condition's lastTransitionTime set: the old time when the
    matching old condition had the same status, else now. Conditions are matched
    by type, and the lists holding them by listener name / parentRef / ancestorRef."""
    if isinstance(new, dict):
        old_map = old if isinstance(old, dict) else {}
        out = {k: stamp_transitions(v, old_map.get(k), clock) for k, v in new.items()}
        if "type" in out and "status" in out and "lastTransitionTime" in new:
            same = old_map.get("status") == out["status"] and old_map.get("lastTransitionTime")
            out["lastTransitionTime"] = old_map["lastTransitionTime"] if same else clock()
        return out
    if isinstance(new, list):
        old_list = old if isinstance(old, list) else []
        by_id = {_entry_id(e): e for e in old_list if _entry_id(e) is not None}
        return [stamp_transitions(e, by_id.get(_entry_id(e)) if _entry_id(e) is not None
                                  else (old_list[i] if i < len(old_list) else None), clock)
                for i, e in enumerate(new)]
    return new


@dataclass
class StoredObject:
    key: ObjectKey
    raw: dict[str, Any]  # Kubernetes shape without status; metadata filled in
    resource: Resource  # the parsed view the translator reads
    source: Source
    content: dict[str, Any]  # as written (for change detection)
    document_status: dict[str, Any] = field(default_factory=dict)  # `status` written in the manifest
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def generation(self) -> int:
        return int(self.raw["metadata"]["generation"])

    def to_kubernetes(self) -> dict[str, Any]:
        return {**self.raw, "status": self.status}


class Store:
    def __init__(self, clock: Callable[[], str] = utc_now,
                 new_uid: Callable[[], str] = lambda: str(uuid.uuid4())) -> None:
        self._clock = clock
        self._new_uid = new_uid
        self._objects: dict[ObjectKey, StoredObject] = {}
        self._load_errors: tuple[DocumentError, ...] = ()
        self._invalid: dict[ObjectKey, DocumentError] = {}
        self._resource_version = 0
        # keys whose status the control loop wrote (vs. the manifest's own)
        self._owned_status: set[ObjectKey] = set()

    # ------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, key: ObjectKey) -> StoredObject | None:
        return self._objects.get(key)

    def objects(self) -> dict[ObjectKey, StoredObject]:
        return dict(self._objects)

    def resources(self) -> dict[ObjectKey, Resource]:
        return {key: obj.resource for key, obj in self._objects.items()}

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
        self._load_errors = event.errors
        changed = False
        for key in event.deletes:
            changed = self.delete(key) or changed
        for doc in event.upserts:
            changed = self.upsert(doc) or changed
        return changed

    def upsert(self, doc: Document) -> bool:
        content = _content(doc.raw)
        current = self._objects.get(doc.key)
        if current is not None and current.content == content and doc.key not in self._invalid:
            current.source = doc.source
            return False
        # What an API server does before storing: schema and CEL validation, then
        # defaulting. A rejected object is not applied; the previous one keeps serving.
        violations = validate(content, old=current.content if current is not None else None)
        if violations:
            self._reject_violations(doc, violations)
            return False
        raw = apply_defaults(self._with_metadata(doc.key, content, current))
        document_status = doc.raw.get("status") if isinstance(doc.raw.get("status"), dict) else {}
        try:
            resource = parse_object({**raw, "status": document_status} if document_status else raw)
        except InvalidObject as e:
            self._reject(doc, e)
            return False
        self._invalid.pop(doc.key, None)
        if current is not None and current.content == content:
            return False  # back to the version that is serving
        self._objects[doc.key] = StoredObject(
            doc.key, raw, resource, doc.source, content, dict(document_status or {}),
            status=current.status if current is not None else dict(document_status or {}),
        )
        return True

    def delete(self, key: ObjectKey) -> bool:
        self._invalid.pop(key, None)
        self._owned_status.discard(key)
        return self._objects.pop(key, None) is not None

    def set_status(self, key: ObjectKey, status: dict[str, Any]) -> bool:
        """Replace the status of `key`; True when it changed. Conditions get their
        lastTransitionTime here: kept while a condition's status stays the same."""
        obj = self._objects.get(key)
        if obj is None:
            return False
        self._owned_status.add(key)
        status = stamp_transitions(status, obj.status, self._clock)
        if obj.status == status:
            return False
        obj.status = status
        obj.raw["metadata"]["resourceVersion"] = self._next_version()
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

    def _next_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _with_metadata(self, key: ObjectKey, content: dict[str, Any],
                       current: StoredObject | None) -> dict[str, Any]:
        raw = copy.deepcopy(content)
        meta = raw["metadata"]
        if key.kind not in CLUSTER_SCOPED and not meta.get("namespace"):
            meta["namespace"] = key.namespace
        if current is None:
            meta["uid"] = self._new_uid()
            meta["creationTimestamp"] = self._clock()
            meta["generation"] = 1
        else:
            old = current.raw["metadata"]
            meta["uid"] = old["uid"]
            meta["creationTimestamp"] = old["creationTimestamp"]
            bump = spec_of(content) != spec_of(current.content)
            meta["generation"] = int(old["generation"]) + (1 if bump else 0)
        meta["resourceVersion"] = self._next_version()
        return raw

    def _reject_violations(self, doc: Document, violations: list[Violation]) -> None:
        v = violations[0]
        line = field_line(doc.source.file, doc.source.line, v.path)
        message = v.message if len(violations) == 1 else f"{v.message} (and {len(violations) - 1} more)"
        self._record_invalid(doc, DocumentError(doc.source.file, line, message, v.path, str(doc.key), v.rule or ""))

    def _reject(self, doc: Document, error: InvalidObject) -> None:
        self._record_invalid(doc, DocumentError(doc.source.file, doc.source.line, error.message, error.path,
                                                str(doc.key)))

    def _record_invalid(self, doc: Document, problem: DocumentError) -> None:
        if self._invalid.get(doc.key) != problem:
            serving = "; the previous version keeps serving" if doc.key in self._objects else ""
            log.error("invalid object not applied: %s%s", problem, serving)
        self._invalid[doc.key] = problem
