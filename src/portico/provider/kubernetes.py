"""Kubernetes mode's provider: list+watch every kind the translator reads.

One informer per kind (client-go's reflector, in asyncio): list, then watch from
the list's resourceVersion with bookmarks (so a reconnect resumes where the last
event or bookmark left off), relist on 410 Gone (the diff against the cache
becomes upserts and deletes), back off on errors. A kind whose CRD is not
installed (404) is reported once and tried again every `retry_missing` seconds,
so it is picked up when it appears; a kind we may not read (403) is logged
clearly and retried the same way while the other kinds keep working.

Which objects are kept: every object of the Gateway API kinds, Services,
EndpointSlices and Namespaces; of Secrets only those holding a TLS key pair or a
CA bundle (`tls.crt`, `ca.crt`), the only Secrets a Gateway or policy can
reference; of ConfigMaps every one (a parametersRef may name any), but the data
only of those holding a CA bundle (`ca.crt`), the only data the translator reads.

Memory stays bounded in a big cluster: every LIST is paginated (`page_size`
objects a request, as client-go's reflector does), managedFields are dropped from
every object as it arrives, and Secrets are selected on the server by type: Helm
release and service-account-token Secrets (most of a cluster's Secret bytes, and
never a certificate a Gateway can use) are not even sent.
The first event is the complete initial load: it is sent once every informer has
listed (or found its kind missing or forbidden).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from typing import Any

import httpx2 as httpx  # lightkube's HTTP client
from lightkube import ALL_NS, AsyncClient, operators
from lightkube.core import resource as lightkube_resource
from lightkube.core.exceptions import ApiError
from lightkube.core.selector import build_selector
from lightkube.types import on_error_raise

from portico import kinds
from portico.kubeapi import Kind, status_code
from portico.objects import ObjectKey, key_of
from portico.provider import Document, ProviderEvent, Source

log = logging.getLogger(__name__)




# every kind the table marks watched, at the version it names first (the storage version)
KINDS: tuple[Kind, ...] = tuple(Kind(k.group, k.versions[0], k.kind, k.plural, k.namespaced) for k in kinds.WATCHED)

# Kinds the table lists at several versions (an older Gateway API release, v1.2-v1.4, serves
# TLSRoute at v1alpha2/v1alpha3, TCPRoute and UDPRoute at v1alpha2): watched at the first of
# them that API discovery lists, so such a cluster's routes are not taken for missing.
VERSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    (k.group, k.kind): k.versions for k in kinds.WATCHED if len(k.versions) > 1}

SECRET_KEYS = ("tls.crt", "ca.crt")
# Secret types that never hold a certificate for a Gateway: not listed or watched at all
UNRELATED_SECRET_TYPES = ("helm.sh/release.v1", "kubernetes.io/service-account-token")


def kept(kind: Kind, obj: dict[str, Any]) -> bool:
    """Whether the cache keeps an object (only Secrets a reference can use, only the
    Gateway API's CRDs)."""
    if kind.kind == "CustomResourceDefinition":
        return (obj.get("spec") or {}).get("group") == kinds.GATEWAY_GROUP
    if kind.kind != "Secret":
        return True
    data = {**(obj.get("data") or {}), **(obj.get("stringData") or {})}
    return any(k in data for k in SECRET_KEYS)


class KubernetesProvider:
    """Object events from the API server (see the module docstring)."""

    def __init__(self, client: AsyncClient, kinds: Iterable[Kind] = KINDS, *, retry_missing: float = 30.0,
                 backoff: tuple[float, float] = (0.5, 30.0), batch_window: float = 0.0,
                 watch_timeout: int = 300, page_size: int = 500) -> None:
        self.client = client
        self.kinds = tuple(kinds)
        self.retry_missing = retry_missing
        self.backoff = backoff
        self.batch_window = batch_window
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self._changes: list[Document | ObjectKey] = []  # in arrival order; a key alone is a delete
        self._observed: float | None = None  # when the first of them arrived (a change's timeline starts)
        self._wake = asyncio.Event()
        self._listed: set[Kind] = set()
        self._first_list = asyncio.Event()
        self._failed: asyncio.Task[None] | None = None
        self.unavailable: dict[Kind, str] = {}  # kinds not watched now, and why (for readiness and logs)
        # (group, kind) -> the Kind at the version the cluster serves (a status writer shares it)
        self.served: dict[tuple[str, str], Kind] = {(k.group, k.kind): k for k in self.kinds}

    async def events(self, stop: asyncio.Event | None = None) -> AsyncIterator[ProviderEvent]:
        informers = [asyncio.create_task(self._inform(kind), name=f"watch {kind.kind}") for kind in self.kinds]
        for task in informers:
            task.add_done_callback(self._informer_ended)
        try:
            await self._wait_for(self._first_list)
            yield self._drain(initial=True)
            while stop is None or not stop.is_set():
                await self._wait_for_change(stop)
                self._raise_if_failed()
                # The events already received join this one. No wait by default: the control
                # loop batches what arrives while it translates or pushes (a burst costs a few
                # translations, bounded by work in flight), so a window here only delayed every
                # change (20 ms of the watch-to-200 time: bench/kube_propagation.py).
                await asyncio.sleep(self.batch_window)
                event = self._drain()
                if event.upserts or event.deletes:
                    yield event
        finally:
            for task in informers:
                task.cancel()
            await asyncio.gather(*informers, return_exceptions=True)

    def _informer_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._failed = task
            self._wake.set()
            self._first_list.set()

    def _raise_if_failed(self) -> None:
        """An informer that died would leave its kind stale for ever: fail loudly instead."""
        if self._failed is not None:
            raise RuntimeError(f"{self._failed.get_name()} failed") from self._failed.exception()

    async def _wait_for(self, event: asyncio.Event) -> None:
        await event.wait()
        self._raise_if_failed()

    async def _wait_for_change(self, stop: asyncio.Event | None) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait())]
        if stop is not None:
            waiters.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    def _drain(self, initial: bool = False) -> ProviderEvent:
        """The queued changes, the last change of each object winning."""
        latest: dict[ObjectKey, Document | None] = {}
        for item in self._changes:
            if isinstance(item, Document):
                latest[item.key] = item
            else:
                latest[item] = None
        self._changes.clear()
        self._wake.clear()
        observed, self._observed = self._observed, None
        upserts = tuple(d for d in latest.values() if d is not None)
        deletes = tuple(k for k, d in latest.items() if d is None)
        return ProviderEvent(upserts=upserts, deletes=deletes, initial=initial, observed=observed)

    def _put(self, item: Document | ObjectKey) -> None:
        if self._observed is None:
            self._observed = time.monotonic()
        self._changes.append(item)
        self._wake.set()

    # ------------------------------------------------------------ one informer

    async def _inform(self, wanted: Kind) -> None:
        kind = wanted
        cache: dict[ObjectKey, str] = {}  # key -> resourceVersion of what was sent
        version: str | None = None
        failures = 0
        while True:
            try:
                if version is None:
                    kind = await self._discover(wanted)
                    res = kind.resource()
                    version = await self._list(kind, res, cache)
                    self._mark_listed(wanted)
                    failures = 0
                version = await self._watch(kind, res, cache, version)
            except asyncio.CancelledError:
                raise
            except httpx.HTTPStatusError as e:  # lightkube's ApiError, or a refused watch request
                code = status_code(e)
                if code == 410:  # Gone: the resourceVersion is too old; list again
                    log.info("%s watch expired (410 Gone): listing again", kind.kind)
                    version = None
                    continue
                if code in (403, 404):
                    self._unavailable(wanted, code, e)
                    self._mark_listed(wanted)
                    version = None
                    await asyncio.sleep(self.retry_missing)
                    continue
                failures += 1
                await self._back_off(kind, failures, e)
            except Exception as e:  # noqa: BLE001 (connection errors: the API server may come back)
                failures += 1
                await self._back_off(kind, failures, e)

    async def _discover(self, kind: Kind) -> Kind:
        """The kind at the first of its versions (VERSIONS) the API server's discovery lists."""
        versions = VERSIONS.get((kind.group, kind.kind))
        if not versions:
            return kind
        inner = self.client._client  # noqa: SLF001 (lightkube has no discovery call)
        for version in versions:
            request = inner._client.build_request("GET", f"/apis/{kind.group}/{version}")  # noqa: SLF001
            response = await inner.send(request)  # type: ignore[no-untyped-call]
            if response.status_code == 404:
                continue
            response.raise_for_status()
            if any(r.get("name") == kind.plural for r in response.json().get("resources") or []):
                found = replace(kind, version=version)
                if found != self.served.get((kind.group, kind.kind)):
                    log.info("%s is served at %s", kind.kind, found.api_version)
                self.served[(kind.group, kind.kind)] = found
                return found
        return kind

    async def _list(self, kind: Kind, res: Any, cache: dict[ObjectKey, str]) -> str:
        fields: dict[str, Any] | None = \
            {"type": operators.not_in(UNRELATED_SECRET_TYPES)} if kind.kind == "Secret" else None
        listing = self.client.list(res, namespace=ALL_NS if self._namespaced(res) else None,
                                   chunk_size=self.page_size, fields=fields)
        seen: dict[ObjectKey, dict[str, Any]] = {}
        async for obj in listing:
            raw = self._raw(kind, obj)
            if kept(kind, raw):
                seen[key_of(raw)] = raw
        for gone in [k for k in self.unavailable if (k.group, k.kind) == (kind.group, kind.kind)]:
            log.info("%s is available again", kind.kind)
            del self.unavailable[gone]
        for key in [k for k in cache if k not in seen]:  # gone while we were not watching
            del cache[key]
            self._put(key)
        for key, raw in seen.items():
            self._upsert(cache, key, raw)
        return listing.resourceVersion

    async def _watch(self, kind: Kind, res: Any, cache: dict[ObjectKey, str], version: str) -> str:
        """Watch from `version` until the server ends the stream; the last version seen."""
        async for event, obj in self._watch_stream(kind, res, version):
            raw = self._raw(kind, obj)
            version = str((raw.get("metadata") or {}).get("resourceVersion") or version)
            if event == "BOOKMARK":
                continue
            key = key_of(raw)
            if event == "DELETED" or not kept(kind, raw):
                if cache.pop(key, None) is not None:
                    self._put(key)
            else:
                self._upsert(cache, key, raw)
        return version

    def _watch_stream(self, kind: Kind, res: Any, version: str) -> AsyncIterator[tuple[str, Any]]:
        # lightkube's watch() has no allowWatchBookmarks parameter: the request is
        # prepared the same way with it added. Errors are ours to handle (relist on 410).
        inner = self.client._client  # noqa: SLF001
        namespace = ALL_NS if self._namespaced(res) else None
        fields = build_selector({"type": operators.not_in(UNRELATED_SECRET_TYPES)}, for_fields=True) \
            if kind.kind == "Secret" else None
        br = inner.prepare_request("list", res=res, namespace=namespace, watch=True, params={
            "resourceVersion": version, "allowWatchBookmarks": "true", "timeoutSeconds": self.watch_timeout,
            "fieldSelector": fields})
        stream: AsyncIterator[tuple[str, Any]] = inner.watch(br, on_error=on_error_raise)
        return stream

    @staticmethod
    def _namespaced(res: Any) -> bool:
        return issubclass(res, lightkube_resource.NamespacedResource)

    def _raw(self, kind: Kind, obj: Any) -> dict[str, Any]:
        raw = dict(obj.to_dict() if hasattr(obj, "to_dict") else obj)
        # list items come without apiVersion and kind
        raw.setdefault("apiVersion", kind.api_version)
        raw.setdefault("kind", kind.kind)
        if (raw.get("metadata") or {}).get("managedFields") is not None:  # never read; often half an object
            raw["metadata"] = {k: v for k, v in raw["metadata"].items() if k != "managedFields"}
        if kind.kind == "CustomResourceDefinition":  # its annotations and group only: schemas are big
            spec = raw.get("spec") or {}
            raw = {**raw, "spec": {"group": spec.get("group"), "names": spec.get("names")}}
            raw.pop("status", None)
        if kind.kind == "ConfigMap" and "ca.crt" not in (raw.get("data") or {}):
            raw = {k: v for k, v in raw.items() if k not in ("data", "binaryData")}
        return raw

    def _upsert(self, cache: dict[ObjectKey, str], key: ObjectKey, raw: dict[str, Any]) -> None:
        version = str((raw.get("metadata") or {}).get("resourceVersion", ""))
        if cache.get(key) == version and version:
            return
        cache[key] = version
        self._put(Document(key, raw, Source(f"{raw['apiVersion']} {key}", 0)))

    def _mark_listed(self, kind: Kind) -> None:
        self._listed.add(kind)
        if len(self._listed) == len(self.kinds):
            self._first_list.set()

    def _unavailable(self, kind: Kind, code: int, error: httpx.HTTPStatusError) -> None:
        message = error.status.message if isinstance(error, ApiError) else ""
        why = "not installed (no such resource)" if code == 404 else f"forbidden: {message or 'RBAC denies list/watch'}"
        if self.unavailable.get(kind) != why:
            level = logging.INFO if code == 404 else logging.ERROR
            log.log(level, "%s (%s) %s; trying again every %.0f s, other kinds are unaffected",
                    kind.kind, kind.api_version, why, self.retry_missing)
        self.unavailable[kind] = why

    async def _back_off(self, kind: Kind, failures: int, error: Exception) -> None:
        first, cap = self.backoff
        delay = min(cap, first * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)
        log.warning("%s watch failed (%s: %s); retrying in %.1f s", kind.kind, type(error).__name__, error, delay)
        await asyncio.sleep(delay)
