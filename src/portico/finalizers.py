"""The GatewayClass finalizer `gateway-exists-finalizer.gateway.networking.k8s.io`
(GatewayClass spec: "implementations SHOULD add it while Gateways use the class"):
a class of ours carries it while any Gateway names it, so deleting the class waits
for its Gateways, and loses it when the last one goes.

Run after every change the provider delivers (and when leadership is gained), by the
leader only; a merge patch of metadata.finalizers naming the resourceVersion read, so
another writer's finalizers are never dropped (a 409 waits for the next change, which
the watch brings). Other finalizers on the class are kept as they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from lightkube import AsyncClient
from lightkube.types import PatchType

from portico.kubeapi import Kind
from portico.objects import GATEWAY_GROUP
from portico.store import Store

log = logging.getLogger(__name__)
FINALIZER = "gateway-exists-finalizer.gateway.networking.k8s.io"


class ClassFinalizers:
    def __init__(self, client: AsyncClient, store: Store, controller_name: str, gateway_class: Kind,
                 is_leader: Callable[[], bool] = lambda: True) -> None:
        self.client = client
        self.store = store
        self.controller_name = controller_name
        self.gateway_class = gateway_class
        self.is_leader = is_leader
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def schedule(self) -> None:
        """Look again soon (one look at a time; changes during it get one more)."""
        if not self.is_leader():
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        self._again = True
        while self._again and self.is_leader():
            self._again = False
            try:
                await self.reconcile()
            except Exception as e:  # noqa: BLE001 (the next change tries again)
                log.warning("GatewayClass finalizers: %s: %s", type(e).__name__, e)

    async def reconcile(self) -> None:
        objects = self.store.objects()
        used = {str((o.raw.get("spec") or {}).get("gatewayClassName") or "")
                for k, o in objects.items() if (k.group, k.kind) == (GATEWAY_GROUP, "Gateway")}
        for key, obj in objects.items():
            if (key.group, key.kind) != (GATEWAY_GROUP, "GatewayClass") or \
                    (obj.raw.get("spec") or {}).get("controllerName") != self.controller_name:
                continue
            meta = obj.raw["metadata"]
            finalizers = list(meta.get("finalizers") or [])
            wanted = key.name in used and not meta.get("deletionTimestamp")
            if wanted == (FINALIZER in finalizers) or (meta.get("deletionTimestamp") and FINALIZER not in finalizers):
                continue
            new = [*finalizers, FINALIZER] if wanted else [f for f in finalizers if f != FINALIZER]
            patch = {"metadata": {"finalizers": new or None, "resourceVersion": meta.get("resourceVersion")}}
            await self.client.patch(self.gateway_class.resource(), key.name, patch, patch_type=PatchType.MERGE)
            log.info("GatewayClass %s: finalizer %s", key.name, "added" if wanted else "removed")
