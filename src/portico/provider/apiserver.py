"""What an API server does before it stores an object, for providers without one
(standalone mode's files). A Kubernetes provider has the real API server and
bypasses this.

- Validation: the CRDs' OpenAPI schemas and CEL rules (`portico.validation`),
  transition rules against the previous accepted version; a rejected object is
  not passed on (its previous version keeps serving) and is listed as an error
  with file, field line, path and rule.
- Defaulting, as the CRD schemas say.
- Server metadata: `uid` and `creationTimestamp` set once and kept while the
  object exists (route precedence depends on creation time); `generation`
  starts at 1 and grows on every spec change (for kinds without a spec, e.g.
  Secret or EndpointSlice: any change other than metadata and status);
  `resourceVersion` grows on every change. Values written in a manifest are ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from portico.objects import CLUSTER_SCOPED, ObjectKey, interned, utc_now
from portico.provider import Document, DocumentError, ProviderEvent
from portico.provider.bulk import BULK, BulkPool, Checked, check_all, checked_new, load_files
from portico.provider.manifests import FileResult, digest, field_line
from portico.validation import Violation, checked

if TYPE_CHECKING:
    from portico.seams import Provider

log = logging.getLogger(__name__)

# metadata the API server owns: values written in a manifest are ignored
SERVER_METADATA = ("generation", "uid", "creationTimestamp", "resourceVersion")


def spec_of(raw: dict[str, Any]) -> Any:
    """What a generation counts changes of: `spec`, or for kinds without one
    everything but metadata and status (e.g. Secret data, EndpointSlice endpoints)."""
    if "spec" in raw:
        return raw["spec"]
    return {k: v for k, v in raw.items() if k not in ("apiVersion", "kind", "metadata", "status")}


def content_of(raw: dict[str, Any]) -> dict[str, Any]:
    """The document as written, without status and server-owned metadata."""
    out = {k: v for k, v in raw.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for name in SERVER_METADATA:
        meta.pop(name, None)
    out["metadata"] = meta
    return out


def parse_and_check(paths: Sequence[str]) -> list[FileResult]:
    """A bulk worker's one pass over a burst of files (`FileProvider`'s `loader` in
    standalone mode): each file parsed (`load_files`), and each of its documents checked
    as the API server would check it as a new object (`Document.checked`). A cold start
    is all new objects: their checks are made in the same worker, in parallel, without
    sending every document back to a worker to be checked (issue 30 item 5). The
    emulation makes the checks of an object it already holds again, against it."""
    results = load_files(paths)
    for result in results:
        result.documents = [dataclasses.replace(d, checked=checked_new(content_of(d.raw)))
                            for d in result.documents]
    return results


@dataclass(slots=True)
class _Accepted:
    """What the emulation keeps of an accepted object: the digest of its content as
    written (change detection), and the object as stored, the very dict passed on (the
    store keeps it: one copy), which the API server's transition rules read as oldSelf
    and whose metadata (uid, creationTimestamp, generation) carries over."""

    digest: bytes
    stored: dict[str, Any]


class APIServerEmulation:
    """Wraps a provider: its events come out validated, defaulted and with server metadata."""

    def __init__(self, provider: Provider | None = None, clock: Callable[[], str] = utc_now,
                 new_uid: Callable[[], str] = lambda: str(uuid.uuid4()), pool: BulkPool | None = None) -> None:
        self.provider = provider
        self.pool = pool or BulkPool(workers=1)  # (one: in-process)
        self._clock = clock
        self._new_uid = new_uid
        self._accepted: dict[ObjectKey, _Accepted] = {}
        self._invalid: dict[ObjectKey, DocumentError] = {}
        self._versions = itertools.count(1)

    def next_resource_version(self) -> str:
        """A resourceVersion greater than every one given before (status writes use it too)."""
        return str(next(self._versions))

    async def events(self, stop: asyncio.Event | None = None) -> AsyncIterator[ProviderEvent]:
        assert self.provider is not None, "no provider to wrap"
        async for event in self.provider.events(stop):
            # a burst of objects is checked off the event loop (and across the bulk pool)
            admitted = await asyncio.to_thread(self.admit, event) if len(event.upserts) >= BULK else self.admit(event)
            # the documents as written are not kept while the consumer waits for the next
            # event (the initial load's would be a second copy of every object)
            del event
            yield admitted
            del admitted

    def admit(self, event: ProviderEvent) -> ProviderEvent:
        """One provider sync as the API server would store it: rejected objects left
        out (and listed in `errors`), the others defaulted and with server metadata."""
        deletes = []
        for key in event.deletes:
            self._invalid.pop(key, None)
            if self._accepted.pop(key, None) is not None:
                deletes.append(key)
        results = self._check_burst(event.upserts)
        upserts = [doc for doc in (self._admit_safely(d, results.get(d.key)) for d in event.upserts)
                   if doc is not None]
        invalid = sorted(self._invalid.values(), key=lambda e: (e.file, e.line))
        return ProviderEvent(tuple(upserts), tuple(deletes), event.errors + tuple(invalid), event.initial,
                             event.observed)

    def _check_burst(self, docs: tuple[Document, ...]) -> dict[ObjectKey, Checked]:
        """The API server's checks of a burst of new or changed objects, across the bulk
        pool's processes (`_admit` makes them itself for a few)."""
        results: dict[ObjectKey, Checked] = {}
        todo = []
        for doc in docs:
            current = self._accepted.get(doc.key)
            if current is None and doc.checked is not None:
                results[doc.key] = doc.checked  # checked as a new object where it was parsed
                continue
            if len(docs) < BULK:
                continue  # (`_admit` checks a few itself)
            content = content_of(doc.raw)
            if current is None or current.digest != digest(content):
                todo.append((doc.key, content, current.stored if current is not None else None))
        if not todo:
            return results
        try:
            checks = self.pool.map(check_all, [(content, old) for _, content, old in todo])
        except Exception:  # noqa: BLE001 (each document is then checked, and reported, alone)
            log.exception("checking a burst of %d objects failed; checking them one by one", len(todo))
            return results
        results.update((key, result) for (key, _, _), result in zip(todo, checks, strict=True))
        return results

    def _admit_safely(self, doc: Document, result: Checked | None = None) -> Document | None:
        """`_admit`, with any failure reported for this document alone: one input the
        checks did not foresee never stops the others from being applied."""
        try:
            return self._admit(doc, result)
        except Exception as e:  # noqa: BLE001 (reported, the document is not applied)
            log.exception("could not admit %s from %s:%d", doc.key, doc.source.file, doc.source.line)
            self._invalid[doc.key] = DocumentError(doc.source.file, doc.source.line,
                                                   f"cannot be processed: {type(e).__name__}: {e}", "", str(doc.key))
            return None

    def _admit(self, doc: Document, result: Checked | None = None) -> Document | None:
        content = content_of(doc.raw)
        # (a burst's digests come from the bulk workers, with their checks)
        content_digest = result[2] if result is not None else digest(content)
        current = self._accepted.get(doc.key)
        if current is not None and current.digest == content_digest:
            self._invalid.pop(doc.key, None)  # unchanged, or back to the version that is serving
            return None
        if result is not None:
            violations, defaulted = result[0], result[1]
        else:
            violations, defaulted = checked(content, old=current.stored if current is not None else None)
            defaulted = interned(defaulted)  # (a burst's are interned by the bulk workers)
        if violations:
            self._reject(doc, violations)
            return None
        self._invalid.pop(doc.key, None)
        raw = self._with_metadata(doc.key, defaulted, current)
        self._accepted[doc.key] = _Accepted(content_digest, raw)
        status = doc.raw.get("status")
        return Document(doc.key, {**raw, "status": status} if isinstance(status, dict) else raw, doc.source)

    def _with_metadata(self, key: ObjectKey, raw: dict[str, Any], current: _Accepted | None) -> dict[str, Any]:
        """`raw` (the content, defaulted) with the server's metadata. The generation grows
        when the spec as it would be stored changes (as an API server compares them: a
        default written out is no change)."""
        meta = raw.setdefault("metadata", {})
        if key.kind not in CLUSTER_SCOPED and not meta.get("namespace"):
            meta["namespace"] = key.namespace
        if current is None:
            meta["uid"] = self._new_uid()
            meta["creationTimestamp"] = sys.intern(self._clock())  # (a burst's are mostly the same second)
            meta["generation"] = 1
        else:
            old = current.stored["metadata"]
            meta["uid"] = old["uid"]
            meta["creationTimestamp"] = old["creationTimestamp"]
            bump = spec_of(raw) != spec_of(current.stored)
            meta["generation"] = int(old["generation"]) + (1 if bump else 0)
        meta["resourceVersion"] = self.next_resource_version()
        return raw

    def _reject(self, doc: Document, violations: list[Violation]) -> None:
        v = violations[0]
        line = field_line(doc.source.file, doc.source.line, v.path)
        message = v.message if len(violations) == 1 else f"{v.message} (and {len(violations) - 1} more)"
        problem = DocumentError(doc.source.file, line, message, v.path, str(doc.key), v.rule or "")
        if self._invalid.get(doc.key) != problem:
            serving = "; the previous version keeps serving" if doc.key in self._accepted else ""
            log.error("invalid object not applied: %s%s", problem, serving)
        self._invalid[doc.key] = problem
