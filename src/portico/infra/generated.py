"""What Portico generated in the cluster, as the API server holds it (Kubernetes mode):
the per-Gateway ServiceAccounts, ConfigMaps, Secrets, Deployments, Services, HPAs and
PodDisruptionBudgets (`portico.infra.kubernetes.render`), listed and watched by their
labels only (`app.kubernetes.io/managed-by=portico`, `app.kubernetes.io/name=portico-proxy`
and this controller's `gateway.portico.dev/controller`), so the infrastructure notices an
object deleted or edited by hand (drift: applied again) and knows what it created that is
no longer wanted (pruned). Objects without these labels are never seen, so never touched.

Only metadata is kept (kind, namespace, name, uid, resourceVersion, generation, labels,
ownerReferences): enough to tell an object changed and whose it is.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx  # lightkube's HTTP client
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.types import on_error_raise

from portico.kubeapi import Kind, status_code

log = logging.getLogger(__name__)

GENERATED = (Kind("", "v1", "ServiceAccount", "serviceaccounts"), Kind("", "v1", "ConfigMap", "configmaps"),
             Kind("", "v1", "Secret", "secrets"), Kind("apps", "v1", "Deployment", "deployments"),
             Kind("", "v1", "Service", "services"),
             Kind("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
             Kind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"))
KIND_BY_NAME = {k.kind: k for k in GENERATED}

ObjectId = tuple[str, str, str]  # kind, namespace, name


@dataclass(frozen=True)
class Observed:
    """An object of ours as the API server last showed it."""

    kind: str
    namespace: str
    name: str
    uid: str
    version: str  # what changes when someone changes the object: its generation, else resourceVersion
    labels: tuple[tuple[str, str], ...]
    owner: tuple[str, str, str] | None  # the controller ownerReference: kind, name, uid

    @property
    def id(self) -> ObjectId:
        return (self.kind, self.namespace, self.name)


def observed_of(kind: str, raw: dict[str, Any]) -> Observed:
    meta = raw.get("metadata") or {}
    owner = next(((r.get("kind", ""), r.get("name", ""), r.get("uid", ""))
                  for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    return Observed(kind, meta.get("namespace", ""), meta.get("name", ""), str(meta.get("uid") or ""),
                    change_version(raw), tuple(sorted((meta.get("labels") or {}).items())), owner)


def change_version(raw: dict[str, Any]) -> str:
    """A Deployment's status changes all the time: its generation counts spec changes only.
    Kinds without a generation (ConfigMap, Secret, ServiceAccount) have their resourceVersion."""
    meta = raw.get("metadata") or {}
    generation = meta.get("generation")
    return f"g{generation}" if generation else f"r{meta.get('resourceVersion', '')}"


class GeneratedObjects:
    """List+watch of the objects of ours (see the module docstring): `on_synced()` once
    every kind was listed, `on_event(observed, deleted)` after every change from then on."""

    def __init__(self, client: AsyncClient, labels: dict[str, str], kinds: tuple[Kind, ...] = GENERATED,
                 watch_timeout: int = 300) -> None:
        self.client = client
        self.labels = labels
        self.kinds = kinds
        self.watch_timeout = watch_timeout
        self.objects: dict[ObjectId, Observed] = {}
        self.on_event: Callable[[Observed, bool], None] = lambda observed, deleted: None
        self.on_synced: Callable[[], None] = lambda: None
        self._listed: set[str] = set()
        self.synced = asyncio.Event()  # every kind listed once

    async def run(self) -> None:
        await asyncio.gather(*(self._run(kind) for kind in self.kinds))

    async def run_until(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set (a service of `portico.runtime.Mode`)."""
        watching = asyncio.create_task(self.run())
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({watching, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watching, stopped):
                task.cancel()
            await asyncio.gather(watching, stopped, return_exceptions=True)

    async def _run(self, kind: Kind) -> None:
        res = kind.resource()
        version: str | None = None
        failures = 0
        while True:
            try:
                if version is None:
                    version = await self._list(kind, res)
                    failures = 0
                version = await self._watch(kind, res, version)
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPStatusError, ApiError) as e:
                if status_code(e) == 410:
                    version = None
                    continue
                failures += 1
                await self._back_off(kind, failures, e)
            except Exception as e:  # noqa: BLE001 (the API server may come back)
                failures += 1
                await self._back_off(kind, failures, e)

    async def _back_off(self, kind: Kind, failures: int, error: BaseException) -> None:
        delay = min(30.0, 0.5 * 2 ** min(failures, 6)) * random.uniform(0.8, 1.2)  # noqa: S311
        log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                "watching the generated %ss failed (%s); again in %.1f s", kind.kind, error, delay)
        await asyncio.sleep(delay)

    async def _list(self, kind: Kind, res: Any) -> str:
        labels: dict[str, Any] = dict(self.labels)
        listing = self.client.list(res, namespace="*", labels=labels)
        seen: dict[ObjectId, Observed] = {}
        async for obj in listing:
            raw = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
            observed = observed_of(kind.kind, raw)
            seen[observed.id] = observed
        for gone in [o for i, o in self.objects.items() if i[0] == kind.kind and i not in seen]:
            del self.objects[gone.id]
            self._event(gone, True)
        for observed in seen.values():
            if self.objects.get(observed.id) != observed:
                self.objects[observed.id] = observed
                self._event(observed, False)
        self._listed.add(kind.kind)
        if len(self._listed) == len(self.kinds) and not self.synced.is_set():
            self.synced.set()
            self.on_synced()
        return str(listing.resourceVersion)

    async def _watch(self, kind: Kind, res: Any, version: str) -> str:
        inner = self.client._client  # noqa: SLF001 (as the provider: errors are ours, 410 relists)
        selector = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        br = inner.prepare_request("list", res=res, namespace="*", watch=True, params={
            "resourceVersion": version, "allowWatchBookmarks": "true", "timeoutSeconds": self.watch_timeout,
            "labelSelector": selector})
        async for event, obj in inner.watch(br, on_error=on_error_raise):
            raw = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
            version = str((raw.get("metadata") or {}).get("resourceVersion") or version)
            if event == "BOOKMARK":
                continue
            observed = observed_of(kind.kind, raw)
            if event == "DELETED":
                if self.objects.pop(observed.id, None) is not None:
                    self._event(observed, True)
            elif self.objects.get(observed.id) != observed:
                self.objects[observed.id] = observed
                self._event(observed, False)
        return version

    def _event(self, observed: Observed, deleted: bool) -> None:
        if self.synced.is_set():
            self.on_event(observed, deleted)
