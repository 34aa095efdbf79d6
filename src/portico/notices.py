"""What Portico says once about input it does not (fully) serve: objects of kinds it
does not translate, and what of an Ingress is not served. Said in the log, and as a
Warning Event on the object where there are Events (Kubernetes mode), never silently
ignored and never repeated on every sync.
"""

from __future__ import annotations

import logging

from portico.contracts import ProviderEvent
from portico.models import Other, model_for
from portico.objects import ObjectKey
from portico.seams import EventRecorder

log = logging.getLogger("portico.control")

# kinds without a model of their own that are served all the same (`portico.ingress`)
SERVED_OTHER_KINDS = {("networking.k8s.io", "Ingress"), ("networking.k8s.io", "IngressClass")}


class Notices:
    def __init__(self, events: EventRecorder | None = None) -> None:
        self.events = events
        self.ignored_kinds: set[tuple[str, str]] = set()
        self.ingress_notes: set[tuple[ObjectKey | None, str]] = set()

    def ignored(self, event: ProviderEvent) -> None:
        """Objects of kinds Portico does not serve are stored and listed, not translated:
        say so once per kind, naming the first one."""
        for doc in event.upserts:
            kind = (doc.key.group, doc.key.kind)
            if kind in self.ignored_kinds or model_for(str(doc.raw.get("apiVersion", "")), doc.key.kind) is not Other \
                    or kind in SERVED_OTHER_KINDS:
                continue
            self.ignored_kinds.add(kind)
            log.warning("%s objects (%s) are not served by Portico: they are stored and listed, nothing routes "
                        "them (first: %s at %s:%d)", doc.key.kind, doc.key.group or "core", doc.key,
                        doc.source.file, doc.source.line)

    def ingress(self, notes: tuple[tuple[ObjectKey | None, str], ...]) -> None:
        """What of an Ingress is not served (`portico.translator.ingress`), each note once."""
        for key, note in notes:
            if (key, note) in self.ingress_notes:
                continue
            self.ingress_notes.add((key, note))
            log.warning("Ingress %s not fully served: %s", f"{key.namespace}/{key.name}" if key else "", note)
            if key is not None and self.events is not None:
                self.events.warn(key, "networking.k8s.io/v1", "NotServed", note)
