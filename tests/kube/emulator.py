"""A strict Kubernetes API server double: kmock's emulator, extended with what a
real kube-apiserver enforces and the controller relies on.

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
- authentication and RBAC (`tests/kube/rbac.py`): every request carries a bearer
  token known to the double (`token()`), mapped to a user, by default the
  controller's ServiceAccount checked against the RBAC objects of
  `portico install render`; a denial is 403 in the real Status shape.
- an audit log (`audit`) of every request: client, user, verb, resource,
  subresource, namespace, name, the rule that allowed it, the answer's code, when.
- validation (`tests/kube/validation.py`): 422 Invalid as kube-apiserver answers.
- server-side apply (`tests/kube/apply.py`): managedFields per field manager,
  409 conflicts unless forced, fields a manager stops applying removed; applying
  an object that does not exist needs `create` too (patch-to-create).
- OwnerReferencesPermissionEnforcement (on by default): an ownerReference that
  sets blockOwnerDeletion needs `update` on the owner's `finalizers` (403 otherwise).
- garbage collection: an object whose owners are all gone (by uid) is deleted,
  shortly after, in the background, as the garbage collector does.
- discovery: /apis/<group> and /apis/<group>/<version> list what is installed, and
  a kind is served at its installed version only.
- LIST with limit/continue (the continue token expires with `compact()`), a
  field selector on Secrets' `type`, equality-based label selectors (`k=v`,
  `k!=v`, `k`, `!k`), watches closed after `watch_limit` seconds.
- SelfSubjectAccessReview (authorization.k8s.io/v1, once `install()`ed): any
  authenticated user may ask whether it may do something; the answer is the RBAC
  authorizer's, `status.allowed` and, for a denial, the reason.
- deleting a Namespace deletes every object in it (the namespace controller).
- faults (`tests/kube/faults.py`): resources not installed (404) until
  `install()`, resources a client may not read (`forbid()`: 403), the whole
  server going away (`down`), and errors or delays on the requests a test picks
  (`fault()`); and a clock offset per client (`clock()`) for Lease tests.

Every write is recorded in `writes` (method, path, resource plural, namespace,
name, subresource) for tests that count status writes.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import copy
import datetime
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

from kube import apply as ssa
from kube.faults import Fault
from kube.rbac import MASTERS, Authorizer, Grant, denial
from kube.rbac import Request as Attributes
from kube.validation import validate

NAMESPACES = re.compile(r"/api/v1/namespaces(?:/([^/]+))?(?:/(status))?")
DISCOVERY = re.compile(r"/apis/([^/]+)(?:/([^/]+))?")
Key = tuple[str, str, str, str]  # group, plural, namespace ("" cluster-scoped), name
WRITES = ("create", "update", "patch", "delete", "deletecollection")


@dataclass(frozen=True)
class Write:
    method: str
    plural: str
    namespace: str
    name: str
    subresource: str | None


@dataclass
class AuditEntry:
    """One request as the API server's audit log has it."""

    client: str  # the name the client's token was issued under
    user: str
    verb: str
    group: str
    resource: str
    subresource: str | None
    namespace: str
    name: str | None
    start: float  # loop time the request arrived
    end: float = 0.0  # ... and was answered
    code: int = 0
    grant: Grant | None = None
    object: dict[str, Any] | None = None  # what a successful write stored
    also: list[str] = field(default_factory=list)  # verbs authorized besides (create, for an apply that creates)
    # (group, resource path, verb) authorized besides on other resources (an owner's finalizers)
    elsewhere: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def resource_path(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


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


class Rejected(Exception):
    def __init__(self, response: aiohttp.web.Response) -> None:
        self.response = response


@attrs.define(kw_only=True)
class KubeAPI(kmock.KubernetesEmulator):
    store: dict[Key, dict[str, Any]] = attrs.field(factory=dict)
    kinds: dict[tuple[str, str], Resource] = attrs.field(factory=dict)
    forbidden: set[tuple[str, str]] = attrs.field(factory=set)
    history: list[Event] = attrs.field(factory=list)
    writes: list[Write] = attrs.field(factory=list)
    audit: list[AuditEntry] = attrs.field(factory=list)
    faults: list[Fault] = attrs.field(factory=list)
    authorizer: Authorizer | None = None  # None: every authenticated user may do anything
    tokens: dict[str, tuple[str, str]] = attrs.field(factory=dict)  # token -> (client name, user)
    offsets: dict[str, float] = attrs.field(factory=dict)  # client name -> its clock's offset (s)
    owners: dict[Key, ssa.Owners] = attrs.field(factory=dict)
    down: bool = False
    base_url: str = ""  # set by tests/kube/support.running
    bookmark_interval: float = 0.2
    watch_limit: float | None = None  # the server ends every watch after this many seconds
    gc_delay: float = 0.05
    # the admission plugin OpenShift and hardened clusters enable: blockOwnerDeletion needs
    # `update` on the owner's finalizers
    owner_references_permission_enforcement: bool = True
    _counter: Any = attrs.field(factory=lambda: itertools.count(1))
    _version: int = 0
    _oldest: int = 0  # watches from a version before this one get 410 Gone
    _tick: asyncio.Event | None = None  # set (and replaced) on every change
    _generation_of_drops: int = 0
    _gc_pending: bool = False

    # ------------------------------------------------------------ test controls

    def install(self, group: str, version: str, kind: str, plural: str, namespaced: bool = True) -> None:
        self.kinds[(group, plural)] = Resource(group, version, kind, plural, namespaced)

    def forbid(self, group: str, plural: str) -> None:
        self.forbidden.add((group, plural))

    def authorize(self, rbac_objects: Iterable[dict[str, Any]]) -> None:
        """From now on, requests are checked against these RBAC objects."""
        self.authorizer = Authorizer(rbac_objects)

    def token(self, client: str, user: str = MASTERS) -> str:
        """A bearer token for a client acting as `user`."""
        token = f"token-{client}-{len(self.tokens)}"
        self.tokens[token] = (client, user)
        return token

    def clock(self, client: str) -> Callable[[], datetime.datetime]:
        """The wall clock of a client, off by `offsets[client]` seconds (its time, not the server's)."""
        return lambda: datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=self.offsets.get(client, 0))

    def fault(self, **spec: Any) -> Fault:
        f = Fault(**spec)
        self.faults.append(f)
        return f

    def compact(self) -> None:
        """Forget the event history: watches from older versions get 410 Gone."""
        self.history.clear()
        self._oldest = self._version + 1

    async def drop_watches(self) -> None:
        self._generation_of_drops += 1
        await self._notify()

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object directly (as an admin would), status included; validated."""
        res = self._resource_of(obj)
        key = self._key(res, obj["metadata"].get("namespace", "default") if res.namespaced else "",
                        obj["metadata"]["name"])
        current = self.store.get(key)
        errors = validate(res.kind, obj, current)
        if errors:
            raise ValueError(f"{res.kind} {key[3]} is invalid: {'; '.join(errors)}")
        stored = self._stamp(copy.deepcopy(obj), current, spec_change=True)
        self._own(key, current, stored, "kubectl", res)
        self.store[key] = stored
        self._record(res, "MODIFIED" if current else "ADDED", stored)
        self._collect_soon()
        return stored

    def remove(self, group: str, plural: str, namespace: str, name: str) -> None:
        res = self.kinds[(group, plural)]
        key = self._key(res, namespace, name)
        obj = self.store.pop(key)
        self.owners.pop(key, None)
        self._record(res, "DELETED", obj)
        self._collect_soon()

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
        discovery = DISCOVERY.fullmatch(raw_request.path)
        if discovery is not None and raw_request.method == "GET":
            return self._discovery(discovery.group(1), discovery.group(2))
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

    def _discovery(self, group: str, version: str | None) -> aiohttp.web.Response:
        kinds = [r for r in self.kinds.values() if r.group == group]
        versions = sorted({r.version for r in kinds})
        if not versions or (version is not None and version not in versions):
            return _status(404, "NotFound", "the server could not find the requested resource")
        if version is None:
            entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            return _json({"kind": "APIGroup", "apiVersion": "v1", "name": group,
                                              "versions": entries, "preferredVersion": entries[-1]})
        return _json({"kind": "APIResourceList", "apiVersion": "v1",
                                          "groupVersion": f"{group}/{version}", "resources": [
            {"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced, "kind": r.kind,
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}
            for r in kinds if r.version == version]})

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if self.down:
            return _status(503, "ServiceUnavailable", "the API server is unavailable")
        if request.resource is None:
            return await super()._handle(request)
        if self._tick is None:
            self._tick = asyncio.Event()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if token not in self.tokens:
            return _status(401, "Unauthorized", "Unauthorized")
        client, user = self.tokens[token]
        group, plural = request.resource.group or "", request.resource.plural or ""
        method = str(request.method.value).upper()
        namespace = request.namespace or ""
        verb = _verb(method, request)
        loop = asyncio.get_running_loop()
        entry = AuditEntry(client, user, verb, group, plural, request.subresource, namespace, request.name,
                           start=loop.time())
        self.audit.append(entry)
        # a request the client gave up on is still carried out, as a real server does with a
        # write it has received (a renewal that hung arrives late)
        return await asyncio.shield(self._audited(request, entry, method))

    async def _audited(self, request: rendering.Request, entry: AuditEntry,
                       method: str) -> aiohttp.web.StreamResponse:
        response = await self._authorized(request, entry, method)
        entry.end = asyncio.get_running_loop().time()
        entry.code = response.status
        if entry.verb in WRITES and response.status < 300 and isinstance(response, aiohttp.web.Response) \
                and response.body:
            entry.object = json.loads(response.body)  # type: ignore[arg-type]
        return response

    async def _authorized(self, request: rendering.Request, entry: AuditEntry,
                          method: str) -> aiohttp.web.StreamResponse:
        attributes = Attributes(entry.user, entry.verb, entry.group, entry.resource, entry.subresource,
                                entry.namespace, entry.name)
        if (entry.group, entry.resource, entry.verb) == ("authorization.k8s.io", "selfsubjectaccessreviews",
                                                          "create") and (entry.group, entry.resource) in self.kinds:
            return self._access_review(request, entry)  # (system:basic-user: every user may ask)
        entry.grant = self._allows(attributes)
        if entry.grant is None:
            return _forbidden(attributes)
        for fault in self.faults:
            if fault.matches(entry.verb, entry.resource_path, entry.client):
                fault.hits += 1
                await asyncio.sleep(fault.delay)
                if fault.code is not None:
                    return _fault_response(fault, entry.verb)
                break
        res = self.kinds.get((entry.group, entry.resource))
        version = request.resource.version if request.resource is not None else None
        if res is None or (version and version != res.version):
            return _status(404, "NotFound", f"the server could not find the requested resource ({entry.resource})")
        if (res.group, res.plural) in self.forbidden:
            return _status(403, "Forbidden", f"{res.plural}.{res.group} is forbidden: RBAC: access denied")
        namespace = entry.namespace
        try:
            if entry.verb == "watch":
                return await self._watch(request, res, namespace)
            if entry.verb == "list":
                return self._list(res, namespace, request.params)
            if entry.verb == "get":
                obj = self.store.get(self._key(res, namespace, request.name or ""))
                return _json(obj) if obj else _not_found(res, request.name or "")
            if method == "POST":
                return await self._create(request, res, namespace, entry)
            if method in ("PUT", "PATCH"):
                return await self._update(request, res, namespace, method, entry)
            if method == "DELETE":
                return await self._delete(request, res, namespace)
        except Rejected as e:
            return e.response
        return _status(405, "MethodNotAllowed", f"{method} is not allowed")

    def _allows(self, attributes: Attributes) -> Grant | None:
        if self.authorizer is None:
            return Grant(MASTERS, attributes.group, attributes.resource_path, attributes.verb)
        return self.authorizer.allows(attributes)

    def _access_review(self, request: rendering.Request, entry: AuditEntry) -> aiohttp.web.Response:
        body = _body(request)
        attrs = (body.get("spec") or {}).get("resourceAttributes") or {}
        asked = Attributes(entry.user, attrs.get("verb", ""), attrs.get("group", ""), attrs.get("resource", ""),
                           attrs.get("subresource") or None, attrs.get("namespace", ""), attrs.get("name") or None)
        allowed = self._allows(asked) is not None
        status: dict[str, Any] = {"allowed": allowed}
        if not allowed:
            status["reason"] = denial(asked)
        return _json({**body, "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                      "status": status}, status=201)

    def _list(self, res: Resource, namespace: str, params: dict[str, str]) -> aiohttp.web.Response:
        try:
            selected = _selector(res, params)
        except ValueError as e:
            return _status(400, "BadRequest", str(e))
        version, after = self._version, None
        if params.get("continue"):
            version, after = json.loads(base64.b64decode(params["continue"]))
            if version < self._oldest - 1:
                return _status(410, "Expired", "The provided continue parameter is too old to display a consistent "
                                               "list result. You can start a new list without the continue parameter.")
        items = [o for (g, p, ns, n), o in sorted(self.store.items())
                 if (g, p) == (res.group, res.plural) and (not namespace or ns == namespace) and selected(o)
                 and (after is None or [ns, n] > after)]
        meta: dict[str, Any] = {"resourceVersion": str(version)}
        limit = int(params.get("limit") or 0)
        if limit and len(items) > limit:
            items = items[:limit]
            last = items[-1]["metadata"]
            meta["continue"] = base64.b64encode(json.dumps(
                [version, [last.get("namespace", "") if res.namespaced else "", last["name"]]]).encode()).decode()
        return _json({"apiVersion": _api_version(res), "kind": f"{res.kind}List",
                                          "metadata": meta, "items": items})

    async def _create(self, request: rendering.Request, res: Resource, namespace: str,
                      entry: AuditEntry) -> aiohttp.web.Response:
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
        self._validate(res, body, None)
        self._check_owner_references(entry, body, None)
        stored = self._stamp(body, None, spec_change=True)
        self._own(key, None, stored, request.params.get("fieldManager") or entry.client, res)
        self.store[key] = stored
        self._write(request, res, key)
        await self._emit(res, "ADDED", stored)
        self._collect_soon()
        return _json(stored, status=201)

    async def _update(self, request: rendering.Request, res: Resource, namespace: str,
                      method: str, entry: AuditEntry) -> aiohttp.web.Response:
        key = self._key(res, namespace, request.name or "")
        current = self.store.get(key)
        body = _body(request)
        content_type = request.headers.get("Content-Type", "")
        apply = "apply-patch" in content_type
        status_only = request.subresource == "status"
        if current is None and not apply:
            return _not_found(res, request.name or "")
        if current is None:  # patch-to-create: the client must be allowed to create, too
            attributes = Attributes(entry.user, "create", res.group, res.plural, None, namespace, request.name)
            if self._allows(attributes) is None:
                return _forbidden(attributes)
            entry.also.append("create")
        wanted = str(body.get("metadata", {}).get("resourceVersion") or "")
        if current is not None and wanted and wanted != current["metadata"]["resourceVersion"]:
            return _status(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{request.name}": '
                                            "the object has been modified; please apply your changes to the "
                                            "latest version and try again")
        base = copy.deepcopy(current) if current is not None else {
            "apiVersion": _api_version(res), "kind": res.kind,
            "metadata": {"name": request.name, **({"namespace": namespace} if res.namespaced else {})}}
        manager = request.params.get("fieldManager") or entry.client
        owners = copy.deepcopy(self.owners.get(key) or ssa.Owners())
        if apply and not status_only:
            try:
                merged = ssa.apply(current, body, owners, manager, force=request.params.get("force") == "true")
            except ssa.Conflict as conflict:
                return _status(409, "Conflict", conflict.message())
            if current is None:
                merged["metadata"].update(base["metadata"])
        elif method == "PUT":
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
        if not (apply and not status_only):
            ssa.updated(current, merged, owners, manager)
        merged["metadata"]["managedFields"] = ssa.managed_fields(owners, _api_version(res))
        if current is not None and _same(merged, current) and \
                _untimed(merged["metadata"]["managedFields"]) == _untimed(current["metadata"].get("managedFields")):
            return _json(current)  # a no-op write changes nothing, as in Kubernetes (not even the time)
        self._validate(res, merged, current)
        self._check_owner_references(entry, merged, current)
        stored = self._stamp(merged, current, spec_change=not status_only)
        self.owners[key] = owners
        self.store[key] = stored
        self._write(request, res, key)
        await self._emit(res, "MODIFIED" if current else "ADDED", stored)
        self._collect_soon()
        return _json(stored, status=200 if current else 201)

    async def _delete(self, request: rendering.Request, res: Resource, namespace: str) -> aiohttp.web.Response:
        key = self._key(res, namespace, request.name or "")
        obj = self.store.pop(key, None)
        if obj is None:
            return _not_found(res, request.name or "")
        self.owners.pop(key, None)
        self._write(request, res, key)
        await self._emit(res, "DELETED", obj)
        if res.kind == "Namespace":  # the namespace controller deletes its contents
            for inner in [k for k in self.store if k[2] == key[3] and self.kinds[(k[0], k[1])].namespaced]:
                self._record(self.kinds[(inner[0], inner[1])], "DELETED", self.store.pop(inner))
                self.owners.pop(inner, None)
        self._collect_soon()
        return _json(obj)

    async def _watch(self, request: rendering.Request, res: Resource, namespace: str) -> aiohttp.web.StreamResponse:
        assert request._raw_request is not None
        try:
            selected = _selector(res, request.params)
        except ValueError as e:
            return _status(400, "BadRequest", str(e))
        response = aiohttp.web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request._raw_request)
        since_param = request.params.get("resourceVersion")
        bookmarks = request.params.get("allowWatchBookmarks") == "true"
        timeout = float(request.params.get("timeoutSeconds") or 300)
        if self.watch_limit is not None:
            timeout = min(timeout, self.watch_limit)
        deadline = asyncio.get_running_loop().time() + timeout

        async def send(event: dict[str, Any]) -> None:
            await response.write(json.dumps(event).encode() + b"\n")

        if since_param in (None, ""):
            since = self._version
            for (g, p, ns, _), obj in sorted(self.store.items()):
                if (g, p) == (res.group, res.plural) and (not namespace or ns == namespace) and selected(obj):
                    await send({"type": "ADDED", "object": obj})
        else:
            since = int(since_param)
            if since < self._oldest - 1:
                await send({"type": "ERROR", "object": _gone(since, self._oldest - 1)})
                await response.write_eof()
                return response
        try:
            await self._stream(res, namespace, selected, send, since, bookmarks, deadline)
        except ConnectionResetError:  # the client went away
            return response
        await response.write_eof()
        return response

    async def _stream(self, res: Resource, namespace: str, selected: Callable[[dict[str, Any]], bool],
                      send: Callable[[dict[str, Any]], Any], since: int, bookmarks: bool, deadline: float) -> None:
        drops = self._generation_of_drops
        last_bookmark = asyncio.get_running_loop().time()
        while True:
            for event in self.history[bisect.bisect_right(self.history, since, key=lambda e: e.version):]:
                since = event.version
                if (event.group, event.plural) == (res.group, res.plural) and selected(event.object) and \
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

    # ------------------------------------------------------------ garbage collection

    def _collect_soon(self) -> None:
        if self._gc_pending:
            return
        try:
            asyncio.get_running_loop().call_later(self.gc_delay, self._collect)
            self._gc_pending = True
        except RuntimeError:  # no loop (a test setting objects up before starting): at the next write
            pass

    def _collect(self) -> None:
        """The garbage collector: an object whose owners are all gone (no object of that
        kind, name and uid) is deleted (background propagation), then its own dependents."""
        self._gc_pending = False
        while True:
            uids = {(o["kind"], o["metadata"]["name"], o["metadata"]["uid"]) for o in self.store.values()}
            known = {r.kind for r in self.kinds.values()}
            garbage = [key for key, o in self.store.items() if (refs := o["metadata"].get("ownerReferences"))
                       and all(r["kind"] in known and (r["kind"], r["name"], r["uid"]) not in uids for r in refs)]
            if not garbage:
                return
            for key in garbage:
                obj = self.store.pop(key)
                self.owners.pop(key, None)
                self._record(self.kinds[(key[0], key[1])], "DELETED", obj)

    # ------------------------------------------------------------ helpers

    def _validate(self, res: Resource, obj: dict[str, Any], current: dict[str, Any] | None) -> None:
        errors = validate(res.kind, obj, current)
        if errors:
            name = obj.get("metadata", {}).get("name", "")
            raise Rejected(_json({
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": 422,
                "reason": "Invalid", "message": f'{res.kind} "{name}" is invalid: {"; ".join(errors)}',
                "details": {"name": name, "group": res.group, "kind": res.kind, "causes": [
                    {"reason": "FieldValueInvalid", "message": e, "field": e.split(":")[0]} for e in errors]}},
                status=422))

    def _check_owner_references(self, entry: AuditEntry, obj: dict[str, Any], current: dict[str, Any] | None) -> None:
        """OwnerReferencesPermissionEnforcement (kubernetes plugin/pkg/admission/gc): a reference
        that newly sets blockOwnerDeletion needs `update` on its owner's `finalizers`
        subresource, or the write is forbidden."""
        if not self.owner_references_permission_enforcement:
            return
        before = {(r.get("apiVersion"), r.get("kind"), r.get("name"), r.get("uid"))
                  for r in ((current or {}).get("metadata") or {}).get("ownerReferences") or []
                  if r.get("blockOwnerDeletion")}
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
            if not ref.get("blockOwnerDeletion") or \
                    (ref.get("apiVersion"), ref.get("kind"), ref.get("name"), ref.get("uid")) in before:
                continue
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            owner = next((r for r in self.kinds.values() if (r.group, r.kind) == (group, ref.get("kind"))), None)
            plural = owner.plural if owner is not None else f"{str(ref.get('kind', '')).lower()}s"
            asked = Attributes(entry.user, "update", group, plural, "finalizers", entry.namespace, ref.get("name"))
            if self._allows(asked) is not None:
                entry.elsewhere.append((group, asked.resource_path, "update"))
                continue
            raise Rejected(_status(
                403, "Forbidden", f"{entry.resource} \"{obj['metadata'].get('name', '')}\" is forbidden: cannot "
                "set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: "
                f"{denial(asked)}"))

    def _own(self, key: Key, current: dict[str, Any] | None, stored: dict[str, Any], manager: str,
             res: Resource) -> None:
        owners = self.owners.setdefault(key, ssa.Owners())
        ssa.updated(current, stored, owners, manager)
        stored["metadata"]["managedFields"] = ssa.managed_fields(owners, _api_version(res))

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


def _verb(method: str, request: rendering.Request) -> str:
    if method == "GET":
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    if method == "DELETE":
        return "delete" if request.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def _selector(res: Resource, params: Mapping[str, str]) -> Callable[[dict[str, Any]], bool]:
    """The fieldSelector and labelSelector of a list or watch, both to hold."""
    fields = _field_selector(res, params.get("fieldSelector") or "")
    labels = _label_selector(params.get("labelSelector") or "")
    return lambda obj: fields(obj) and labels(obj)


def _label_selector(selector: str) -> Callable[[dict[str, Any]], bool]:
    """Equality-based label selectors (`k=v`, `k==v`, `k!=v`, `k`, `!k`), comma-separated, as
    the API server reads them (set-based ones are not modelled: 400). A watch event is
    sent for an object its selector selects as the event shows it."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if " in " in term or " notin " in term or "(" in term:
            raise ValueError(f"set-based label selectors are not modelled by the double: {term!r}")
        if "!=" in term:
            key, value = term.split("!=", 1)
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in term:
            key, value = re.split(r"==|=", term, maxsplit=1)
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif term.startswith("!"):
            tests.append(lambda labels, k=term[1:]: k not in labels)
        else:
            tests.append(lambda labels, k=term: k in labels)

    def selected(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(test(labels) for test in tests)

    return selected


def _field_selector(res: Resource, selector: str) -> Callable[[dict[str, Any]], bool]:
    """metadata.name, metadata.namespace and, for Secrets, type; = == and != (as the API server)."""
    tests: list[tuple[list[str], str, bool]] = []
    for term in filter(None, selector.split(",")):
        negate = "!=" in term
        field_name, value = re.split(r"!=|==|=", term, maxsplit=1)
        fields = {"metadata.name": ["metadata", "name"], "metadata.namespace": ["metadata", "namespace"]}
        if res.kind == "Secret":
            fields["type"] = ["type"]
        if field_name not in fields:
            raise ValueError(f'"{field_name}" is not a known field selector: only "{", ".join(fields)}"')
        tests.append((fields[field_name], value, negate))

    def selected(obj: dict[str, Any]) -> bool:
        for path, value, negate in tests:
            found: Any = obj
            for part in path:
                found = (found or {}).get(part)
            if (str(found or "") == value) == negate:
                return False
        return True

    return selected


def _untimed(fields: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{k: v for k, v in f.items() if k != "time"} for f in fields or []]


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


def _json(obj: Any, status: int = 200) -> aiohttp.web.Response:
    """A JSON answer as kube-apiserver sends it (Content-Type without a charset: lightkube
    turns only exactly `application/json` errors into ApiError)."""
    return aiohttp.web.Response(body=json.dumps(obj).encode(), status=status, content_type="application/json")


def _status(code: int, reason: str, message: str, **extra: Any) -> aiohttp.web.Response:
    return _json({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                                      "code": code, "reason": reason, "message": message, **extra}, status=code)


def _forbidden(r: Attributes) -> aiohttp.web.Response:
    return _status(403, "Forbidden", denial(r), details={"name": r.name or "", "group": r.group, "kind": r.resource})


def _gone(since: int, oldest: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410, "reason": "Expired",
            "message": f"too old resource version: {since} ({oldest})"}


def _fault_response(fault: Fault, verb: str) -> aiohttp.web.Response:
    if fault.code == 410 and verb == "watch":  # as a watch ends when its version is gone: an ERROR event
        return aiohttp.web.Response(body=json.dumps({"type": "ERROR", "object": _gone(0, 1)}).encode() + b"\n",
                                    content_type="application/json")
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    response = _status(fault.code or 500, fault.reason, f"injected fault: {fault.reason}",
                       **({"details": {"retryAfterSeconds": fault.retry_after}} if fault.retry_after else {}))
    if headers:
        response.headers.update(headers)
    return response


def _not_found(res: Resource, name: str) -> aiohttp.web.Response:
    return _status(404, "NotFound", f'{res.plural} "{name}" not found')
