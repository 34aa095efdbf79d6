"""A Kubernetes API server double: kmock's emulator, extended with what the
controller's tests need and kmock keeps simple.

kmock's `KubernetesEmulator` serves HTTP, parses Kubernetes URLs into
(resource, namespace, name, subresource, action) and renders Kubernetes errors.
Its object store merges dicts without resourceVersions, so this subclass keeps
its own, with the API server semantics the controller relies on:

- resourceVersion: one counter for all objects; lists carry the current one;
  uid, generation (bumped on spec changes only) and creationTimestamp are set.
- watch: from a resourceVersion (events after it are replayed), 410 Gone once
  that version was compacted away (`compact()`), BOOKMARK events when asked for,
  the server-side timeout, and `drop_watches()` to cut every open stream.
- the status subresource: writes to `/status` change only status; writes to the
  object never change status.
- optimistic concurrency: a write naming a stale metadata.resourceVersion is 409.
- PUT (replace), JSON merge patch, server-side apply (create or merge; field
  ownership is not modelled) and DELETE.
- faults: resources not installed (404) until `install()`, resources a client
  may not read (`forbid()`: 403), the whole server going away (`down`).

Every write is recorded in `writes` (method, path, resource plural, namespace,
name, subresource) for tests that count status writes.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

NAMESPACES = re.compile(r"/api/v1/namespaces(?:/([^/]+))?(?:/(status))?")
Key = tuple[str, str, str, str]  # group, plural, namespace ("" cluster-scoped), name


@dataclass(frozen=True)
class Write:
    method: str
    plural: str
    namespace: str
    name: str
    subresource: str | None


@dataclass
class Event:
    version: int
    group: str
    plural: str
    type: str
    object: dict[str, Any]


@dataclass
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool


@attrs.define(kw_only=True)
class KubeAPI(kmock.KubernetesEmulator):
    store: dict[Key, dict[str, Any]] = attrs.field(factory=dict)
    kinds: dict[tuple[str, str], Resource] = attrs.field(factory=dict)
    forbidden: set[tuple[str, str]] = attrs.field(factory=set)
    history: list[Event] = attrs.field(factory=list)
    writes: list[Write] = attrs.field(factory=list)
    down: bool = False
    base_url: str = ""  # set by tests/kube/support.running
    bookmark_interval: float = 0.2
    _counter: Any = attrs.field(factory=lambda: itertools.count(1))
    _version: int = 0
    _oldest: int = 0  # watches from a version before this one get 410 Gone
    _tick: asyncio.Event | None = None  # set (and replaced) on every change
    _generation_of_drops: int = 0

    # ------------------------------------------------------------ test controls

    def install(self, group: str, version: str, kind: str, plural: str, namespaced: bool = True) -> None:
        self.kinds[(group, plural)] = Resource(group, version, kind, plural, namespaced)

    def forbid(self, group: str, plural: str) -> None:
        self.forbidden.add((group, plural))

    def compact(self) -> None:
        """Forget the event history: watches from older versions get 410 Gone."""
        self.history.clear()
        self._oldest = self._version + 1

    async def drop_watches(self) -> None:
        self._generation_of_drops += 1
        await self._notify()

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object directly (as another client would), status included."""
        res = self._resource_of(obj)
        key = self._key(res, obj["metadata"].get("namespace", "default") if res.namespaced else "",
                        obj["metadata"]["name"])
        current = self.store.get(key)
        stored = self._stamp(copy.deepcopy(obj), current, spec_change=True)
        self.store[key] = stored
        self._record(res, "MODIFIED" if current else "ADDED", stored)
        return stored

    def remove(self, group: str, plural: str, namespace: str, name: str) -> None:
        res = self.kinds[(group, plural)]
        obj = self.store.pop(self._key(res, namespace, name))
        self._record(res, "DELETED", obj)

    def get(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        res = self.kinds[(group, plural)]
        return self.store.get(self._key(res, namespace, name))

    @property
    def seen(self) -> list[rendering.Request]:
        """Every request served so far."""
        return list(self._requests)

    def status_writes(self, plural: str | None = None) -> list[Write]:
        return [w for w in self.writes if w.subresource == "status" and (plural is None or w.plural == plural)]

    # ------------------------------------------------------------ serving

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock 0.8 cannot parse the URLs of Namespace objects themselves (/api/v1/namespaces[/name]).
        match = NAMESPACES.fullmatch(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        await raw_request.read()
        try:
            data = await raw_request.json()
        except ValueError:
            data = None
        query = dict(raw_request.query)
        name = match.group(1)
        request = rendering.Request(
            raw_request=raw_request, url=raw_request.url, method=raw_request.method, params=query,
            headers=dict(raw_request.headers), body=await raw_request.read(), data=data,
            resource=kmock.resource("", "v1", "namespaces"), namespace=None, name=name,
            subresource=match.group(2))
        return await self._handle(request)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if self.down:
            return _status(503, "ServiceUnavailable", "the API server is unavailable")
        if request.resource is None:
            return await super()._handle(request)
        if self._tick is None:
            self._tick = asyncio.Event()
        group, plural = request.resource.group or "", request.resource.plural or ""
        res = self.kinds.get((group, plural))
        if res is None:
            return _status(404, "NotFound", f"the server could not find the requested resource ({plural})")
        if (group, plural) in self.forbidden:
            return _status(403, "Forbidden", f"{plural}.{group} is forbidden: RBAC: access denied")
        method = str(request.method.value).upper()
        namespace = request.namespace or ""
        if method == "GET" and request.params.get("watch") in ("true", "1"):
            return await self._watch(request, res, namespace)
        if method == "GET" and request.name is None:
            return self._list(res, namespace)
        if method == "GET":
            obj = self.store.get(self._key(res, namespace, request.name or ""))
            return aiohttp.web.json_response(obj) if obj else _not_found(res, request.name or "")
        if method == "POST":
            return await self._create(request, res, namespace)
        if method in ("PUT", "PATCH"):
            return await self._update(request, res, namespace, method)
        if method == "DELETE":
            return await self._delete(request, res, namespace)
        return _status(405, "MethodNotAllowed", f"{method} is not allowed")

    def _list(self, res: Resource, namespace: str) -> aiohttp.web.Response:
        items = [o for (g, p, ns, _), o in sorted(self.store.items())
                 if (g, p) == (res.group, res.plural) and (not namespace or ns == namespace)]
        return aiohttp.web.json_response({
            "apiVersion": _api_version(res), "kind": f"{res.kind}List",
            "metadata": {"resourceVersion": str(self._version)}, "items": items})

    async def _create(self, request: rendering.Request, res: Resource, namespace: str) -> aiohttp.web.Response:
        body = _body(request)
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):  # as the API server: a unique suffix
            meta["name"] = f"{meta['generateName']}{self._version + 1:05x}"
        name = meta.get("name", "")
        key = self._key(res, namespace or meta.get("namespace", ""), name)
        if key in self.store:
            return _status(409, "AlreadyExists", f'{res.plural} "{name}" already exists')
        body.pop("status", None)
        if res.namespaced:
            body["metadata"]["namespace"] = key[2]
        stored = self._stamp(body, None, spec_change=True)
        self.store[key] = stored
        self._write(request, res, key)
        await self._emit(res, "ADDED", stored)
        return aiohttp.web.json_response(stored, status=201)

    async def _update(self, request: rendering.Request, res: Resource, namespace: str,
                      method: str) -> aiohttp.web.Response:
        key = self._key(res, namespace, request.name or "")
        current = self.store.get(key)
        body = _body(request)
        content_type = request.headers.get("Content-Type", "")
        apply = "apply-patch" in content_type
        if current is None and not apply:
            return _not_found(res, request.name or "")
        wanted = str(body.get("metadata", {}).get("resourceVersion") or "")
        if current is not None and wanted and wanted != current["metadata"]["resourceVersion"]:
            return _status(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{request.name}": '
                                            "the object has been modified; please apply your changes to the "
                                            "latest version and try again")
        status_only = request.subresource == "status"
        base = copy.deepcopy(current) if current is not None else {
            "apiVersion": _api_version(res), "kind": res.kind,
            "metadata": {"name": request.name, **({"namespace": namespace} if res.namespaced else {})}}
        if method == "PUT":
            merged = {**body, "metadata": {**base["metadata"], **body.get("metadata", {})}}
        else:
            merged = merge_patch(base, body)
        if status_only:  # only status changes through /status
            merged = {**base, "status": merged.get("status", {})}
        elif current is not None:  # never status through the object
            merged["status"] = current.get("status", {})
            if not merged["status"]:
                merged.pop("status")
        else:
            merged.pop("status", None)
        if current is not None and _same(merged, current):
            return aiohttp.web.json_response(current)  # a no-op write changes nothing, as in Kubernetes
        stored = self._stamp(merged, current, spec_change=not status_only)
        self.store[key] = stored
        self._write(request, res, key)
        await self._emit(res, "MODIFIED" if current else "ADDED", stored)
        return aiohttp.web.json_response(stored, status=200 if current else 201)

    async def _delete(self, request: rendering.Request, res: Resource, namespace: str) -> aiohttp.web.Response:
        key = self._key(res, namespace, request.name or "")
        obj = self.store.pop(key, None)
        if obj is None:
            return _not_found(res, request.name or "")
        self._write(request, res, key)
        await self._emit(res, "DELETED", obj)
        return aiohttp.web.json_response(obj)

    async def _watch(self, request: rendering.Request, res: Resource, namespace: str) -> aiohttp.web.StreamResponse:
        assert request._raw_request is not None
        response = aiohttp.web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request._raw_request)
        since_param = request.params.get("resourceVersion")
        bookmarks = request.params.get("allowWatchBookmarks") == "true"
        timeout = float(request.params.get("timeoutSeconds") or 300)
        deadline = asyncio.get_running_loop().time() + timeout
        drops = self._generation_of_drops

        async def send(event: dict[str, Any]) -> None:
            await response.write(json.dumps(event).encode() + b"\n")

        if since_param in (None, ""):
            since = self._version
            for (g, p, ns, _), obj in sorted(self.store.items()):
                if (g, p) == (res.group, res.plural) and (not namespace or ns == namespace):
                    await send({"type": "ADDED", "object": obj})
        else:
            since = int(since_param)
            if since < self._oldest - 1:
                await send({"type": "ERROR", "object": {
                    "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410, "reason": "Expired",
                    "message": f"too old resource version: {since} ({self._oldest - 1})"}})
                await response.write_eof()
                return response
        last_bookmark = asyncio.get_running_loop().time()
        while True:
            for event in [e for e in self.history if e.version > since]:
                since = event.version
                if (event.group, event.plural) == (res.group, res.plural) and \
                        (not namespace or event.object["metadata"].get("namespace", "") == namespace):
                    await send({"type": event.type, "object": event.object})
            now = asyncio.get_running_loop().time()
            if self.down or drops != self._generation_of_drops or now >= deadline:
                break
            if bookmarks and now - last_bookmark >= self.bookmark_interval:
                last_bookmark = now
                await send({"type": "BOOKMARK", "object": {
                    "apiVersion": _api_version(res), "kind": res.kind,
                    "metadata": {"resourceVersion": str(self._version)}}})
            tick = self._tick or asyncio.Event()
            try:
                await asyncio.wait_for(tick.wait(), timeout=min(self.bookmark_interval, deadline - now))
            except TimeoutError:
                pass
        with_eof = response.write_eof()
        await with_eof
        return response

    # ------------------------------------------------------------ helpers

    def _key(self, res: Resource, namespace: str, name: str) -> Key:
        return (res.group, res.plural, namespace if res.namespaced else "", name)

    def _resource_of(self, obj: dict[str, Any]) -> Resource:
        api_version = obj["apiVersion"]
        group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
        return next(r for r in self.kinds.values() if r.group == group and r.kind == obj["kind"])

    def _stamp(self, obj: dict[str, Any], current: dict[str, Any] | None, spec_change: bool) -> dict[str, Any]:
        self._version = next(self._counter)
        meta = obj.setdefault("metadata", {})
        old = (current or {}).get("metadata", {})
        meta["resourceVersion"] = str(self._version)
        meta["uid"] = old.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = old.get("creationTimestamp") or \
            datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        generation = int(old.get("generation", 0))
        if current is None or (spec_change and obj.get("spec") != current.get("spec")):
            generation += 1
        meta["generation"] = max(generation, 1)
        return obj

    def _record(self, res: Resource, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":  # a deletion is a change of its own
            self._version = next(self._counter)
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._version)}}
        self.history.append(Event(self._version, res.group, res.plural, kind, copy.deepcopy(obj)))
        self._wake()

    async def _emit(self, res: Resource, kind: str, obj: dict[str, Any]) -> None:
        self._record(res, kind, obj)

    async def _notify(self) -> None:
        self._wake()

    def _wake(self) -> None:
        if self._tick is not None:
            self._tick.set()
            self._tick = asyncio.Event()

    def _write(self, request: rendering.Request, res: Resource, key: Key) -> None:
        self.writes.append(Write(str(request.method.value).upper(), res.plural, key[2], key[3], request.subresource))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = ("resourceVersion", "generation", "uid", "creationTimestamp", "managedFields")
    def clean(o: dict[str, Any]) -> dict[str, Any]:
        return {**o, "metadata": {k: v for k, v in o.get("metadata", {}).items() if k not in strip}}
    return clean(a) == clean(b)


def _body(request: rendering.Request) -> dict[str, Any]:
    data = request.data
    if isinstance(data, dict):
        return copy.deepcopy(data)
    if request.body:
        import yaml
        loaded = yaml.safe_load(request.body)
        return loaded if isinstance(loaded, dict) else {}
    return {}


def _api_version(res: Resource) -> str:
    return f"{res.group}/{res.version}" if res.group else res.version


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                                      "code": code, "reason": reason, "message": message}, status=code)


def _not_found(res: Resource, name: str) -> aiohttp.web.Response:
    return _status(404, "NotFound", f'{res.plural} "{name}" not found')

