"""Kubernetes Events: warnings users see with `kubectl describe` on their object, for
what has no status field to carry it (an Ingress's annotations Portico does not honour).

Only the leader records; each (object, message) once per process, so a resync does not
repeat them. A failure to record is logged, never raised (Events are best effort). The
Event names its object's uid: `kubectl describe` shows only Events whose
involvedObject.uid is the object's.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable

from lightkube import AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

from portico.objects import ObjectKey

log = logging.getLogger(__name__)
COMPONENT = "portico"


class KubernetesEvents:
    def __init__(self, client: AsyncClient, is_leader: Callable[[], bool] = lambda: True,
                 uid_of: Callable[[ObjectKey], str | None] = lambda key: None) -> None:
        self.client = client
        self.is_leader = is_leader
        self.uid_of = uid_of
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: list[tuple[ObjectKey, str, str, str]] = []  # while not the leader
        self.recorded = 0

    def warn(self, key: ObjectKey, api_version: str, reason: str, message: str) -> None:
        if not self.is_leader():
            self._held.append((key, api_version, reason, message))
            return
        task = asyncio.get_running_loop().create_task(self._create(key, api_version, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def resume(self) -> None:
        """Leadership gained: record what was held back."""
        held, self._held = self._held, []
        for args in held:
            self.warn(*args)

    async def _create(self, key: ObjectKey, api_version: str, reason: str, message: str) -> None:
        now = datetime.datetime.now(datetime.UTC)
        event = Event(
            metadata=ObjectMeta(generateName=f"{key.name}.", namespace=key.namespace or "default"),
            involvedObject=ObjectReference(apiVersion=api_version, kind=key.kind, name=key.name,
                                           namespace=key.namespace or None, uid=self.uid_of(key)),
            reason=reason, message=message[:1024], type="Warning", source=EventSource(component=COMPONENT),
            firstTimestamp=now, lastTimestamp=now, count=1)
        try:
            await self.client.create(event)
            self.recorded += 1
        except Exception as e:  # noqa: BLE001 (best effort: the warning is in the log too)
            log.warning("could not record an Event on %s: %s", key, e)
