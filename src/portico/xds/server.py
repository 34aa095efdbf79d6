"""The ADS server: serves `build(ir)` to Envoy over delta xDS (DeltaAggregatedResources).

One snapshot per Envoy group (Envoy Gateway's snapshot cache keyed by node): an
Envoy's bootstrap names its group as `node.cluster`, and it is only ever served
that group's resources (secrets included). Versions, ACKs and NACKs are per
group, so a NACK from one Gateway's Envoy never holds back another's.

Ordering ("No errors on change", ARCHITECTURE), per Envoy stream:
  1. clusters (CDS), endpoints (EDS) and secrets (SDS) of the newest version;
  2. once Envoy has ACKed them and every accepted EDS cluster has its endpoints
     (i.e. is warm), listeners (LDS, with removals) and route configurations (RDS);
  3. once those are ACKed, removals of the clusters no route uses any more.
A version is ACKed when Envoy holds every resource of it; a NACK is logged with
Envoy's error detail, reported through `on_nack`, and the previous config keeps serving.
Versions superseded before they were fully applied are never ACKed on their own: the
newest one is (`on_ack` is monotonic).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.route.v3 import rds_pb2_grpc
from google.protobuf import any_pb2

from portico.ir import IR
from portico.xds.resources import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    TYPE_URLS,
    VHOST,
    Builder,
    packed,
    resource_version,
)

log = logging.getLogger("portico.xds")

AckCallback = Callable[[str, int], None]  # (group, version)
NackCallback = Callable[[str, int, str], None]  # (group, version, Envoy's message)

_WILDCARD = (CLUSTER, LISTENER)  # LDS and CDS are wildcard subscriptions in Envoy
_ADS_TYPES = (CLUSTER, ENDPOINT, SECRET, LISTENER, ROUTE)
_SPLIT = (LISTENER, ROUTE)  # one response per resource: a NACK then names exactly one resource
_UPDATE = object()  # queue marker: a new snapshot is available
_CLOSED = object()  # queue marker: Envoy closed its request stream


@dataclass(frozen=True)
class _Entry:
    version: str
    resource: any_pb2.Any


class _Versioned(Protocol):
    """A resource as served: an _Entry, or a virtual host as the builder made it."""

    @property
    def version(self) -> str: ...

    @property
    def resource(self) -> any_pb2.Any: ...


def _namespace(name: str) -> str:
    """The route configuration a VHDS resource belongs to (Envoy's namespace matching)."""
    return name.rpartition("/")[0]


_SERIALS = itertools.count(1)


@dataclass(frozen=True)
class Snapshot:
    """One `update()`: type URL -> name -> (content hash, packed resource)."""

    version: int
    resources: dict[str, Mapping[str, _Versioned]]
    _versions: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, repr=False)

    def versions(self, type_url: str) -> dict[str, str]:
        """name -> version (made once per snapshot and type: thousands of virtual hosts)."""
        found = self._versions.get(type_url)
        if found is None:
            found = self._versions[type_url] = {name: e.version for name, e in self.resources[type_url].items()}
        return found


@dataclass
class _Sent:
    type_url: str
    version: int
    names: list[str]


@dataclass
class _TypeState:
    started: bool = False  # Envoy has asked for this type on this stream
    answered: bool = False  # a response of this type was sent on this stream
    subscribed: set[str] = field(default_factory=set)
    known: dict[str, str] = field(default_factory=dict)  # what Envoy holds (sent or declared)
    broken: dict[str, str] = field(default_factory=dict)  # name -> version Envoy rejected
    # Names of a rejected batch: resent one per response to learn which one Envoy rejects.
    split: set[str] = field(default_factory=set)


class _Stream:
    """The state of one Envoy's delta ADS stream and the ordering rules above; or, `vhds`,
    of its VHDS stream, which serves the virtual hosts of the snapshot its ADS stream
    serves routes from (so they follow the same ordering)."""

    def __init__(self, server: XdsServer, peer: str, allowed_group: str | None = None, vhds: bool = False) -> None:
        self.server = server
        self.peer = peer
        self.vhds = vhds
        self.serial = next(_SERIALS)
        self.group: str | None = None  # node.cluster of the first request
        self.node = ""  # node.id of the first request: pairs an Envoy's ADS and VHDS streams
        # mTLS: the only group this peer's certificate lets it ask for (None: a local channel)
        self.allowed_group = allowed_group
        self.refused = ""
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.types: dict[str, _TypeState] = {t: _TypeState() for t in ((VHOST,) if vhds else _ADS_TYPES)}
        self.pending: dict[str, _Sent] = {}
        self.nonces = itertools.count(1)
        self.back: Snapshot | None = None  # the snapshot LDS/RDS are served from
        # route configuration -> when Envoy was first sent it here (a `serial`; 0: it held it
        # at connect): its VHDS stream is one opened after that
        self.route_marks: dict[str, int] = {}
        self.applied = 0
        self.nack_reported = 0
        self.last_error = ""

    # ------------------------------------------------------------ requests

    def handle(self, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        log.debug(
            "xds %s: request %s nonce=%r +%d -%d%s",
            self.peer,
            req.type_url.rsplit(".", 1)[-1],
            req.response_nonce,
            len(req.resource_names_subscribe),
            len(req.resource_names_unsubscribe),
            " NACK" if req.HasField("error_detail") else "",
        )
        if self.group is None:
            if self.allowed_group is not None and req.node.cluster != self.allowed_group:
                # an Envoy serves only its own Gateway: a certificate names exactly one
                self.refused = (f"node {req.node.id!r} asks for group {req.node.cluster!r}, its certificate "
                                f"names {self.allowed_group!r}")
                log.warning("xds %s: refused: %s", self.peer, self.refused)
                return
            self.group, self.node = req.node.cluster, req.node.id
            log.info("xds %s: node %r of group %r%s", self.peer, req.node.id, self.group,
                     " (VHDS)" if self.vhds else "")
        if self.refused:
            return
        state = self.types.get(req.type_url)
        if state is None:
            log.warning("xds %s: request for unknown type %s", self.peer, req.type_url)
            return
        if not state.started:
            state.started = True
            # Envoy reconnecting tells what it holds: do not resend those.
            state.known.update(req.initial_resource_versions)
            if req.type_url == ROUTE:
                self.route_marks.update(dict.fromkeys(req.initial_resource_versions, 0))
        state.subscribed.update(n for n in req.resource_names_subscribe if n != "*")
        for name in req.resource_names_unsubscribe:
            state.subscribed.discard(name)
            if req.type_url == ROUTE:
                self.route_marks.pop(name, None)
            # (VHDS names a route configuration: it unsubscribes from all its virtual hosts)
            for held in [name] if not self.vhds else [n for n in state.known if _namespace(n) == name]:
                state.known.pop(held, None)
                state.broken.pop(held, None)
                state.split.discard(held)
        if req.response_nonce:
            self._on_reply(req)
        if self.vhds:
            # Its ADS stream may now remove clusters or report the version applied: an
            # answer came, or (a reconnecting Envoy) this stream holds all already.
            self.server._nudge(self, vhds=False)

    def _on_reply(self, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        sent = self.pending.pop(req.response_nonce, None)
        if sent is None:
            return
        state = self.types[sent.type_url]
        for name in sent.names:
            state.split.discard(name)
        if not req.HasField("error_detail"):
            for name in sent.names:
                state.broken.pop(name, None)
            return
        message = req.error_detail.message
        if len(sent.names) > 1:
            # Envoy applies the good resources of a batch and names the bad one only in
            # prose: resend each alone so ACK/NACK pinpoints it (identical updates are no-ops).
            for name in sent.names:
                state.known.pop(name, None)
                state.split.add(name)
        else:
            for name in sent.names:
                if name in state.known:
                    state.broken[name] = state.known[name]
        self.last_error = message
        self.nack_reported = max(self.nack_reported, sent.version)
        self.server._report_nack(self.group or "", sent.version, sent.type_url, message)

    # ------------------------------------------------------------ pushes

    def step(self) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        """Everything that may be sent now, in order."""
        if self.vhds:
            ads = self.server._ads_stream(self)
            return self._push(VHOST, ads.back, remove=True) if ads is not None and ads.back is not None else []
        target = self.server._group(self.group or "").snapshot
        out = self._push(CLUSTER, target, remove=False)
        self._rewarm(out)
        for type_url in (ENDPOINT, SECRET):
            out += self._push(type_url, target, remove=False)
        if not self._warm(target):
            if self.back is not None:  # new RDS subscriptions of the listeners Envoy has
                out += self._push(ROUTE, self.back, remove=False)
            return out
        if self.back is not target:
            self.back = target
            self.server._nudge(self, vhds=True)
        out += self._push(LISTENER, target, remove=True)
        out += self._push(ROUTE, target, remove=False)
        if self._busy(LISTENER, ROUTE) or not self._vhds_synced(target):
            return out
        if not self._has_broken(target, LISTENER, ROUTE) and not self._vhds_broken(target):
            # Routes no longer use the removed clusters: remove them now. (After a rejected
            # listener or route table, the old one Envoy kept may still use them.)
            out += self._push(CLUSTER, target, remove=True)
        self._check_applied(target)
        return out

    def _push(self, type_url: str, snap: Snapshot, remove: bool) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        state = self.types[type_url]
        if not state.started:
            return []
        desired = snap.resources[type_url]
        if type_url == VHOST:
            changed, removed = self._vhds_changes(snap)
        else:
            names = desired.keys() if type_url in _WILDCARD else state.subscribed & desired.keys()
            changed = sorted(n for n in names if state.known.get(n) != desired[n].version)
            # Named types (RDS, EDS, SDS) are never removed: Envoy unsubscribes when unused.
            removed = sorted(n for n in state.known if n not in desired) if remove and type_url in _WILDCARD else []
        batches: list[tuple[list[str], list[str]]]
        if type_url in _SPLIT:
            batches = [([n], []) for n in changed] + ([([], removed)] if removed else [])
        else:
            alone = [n for n in changed if n in state.split]
            together = [n for n in changed if n not in state.split]
            batches = [([n], []) for n in alone]
            batches += [(together, removed)] if together or removed else []
        if not batches and not state.answered and type_url in _WILDCARD:
            # Envoy's initialization waits for a first CDS/LDS answer, even an empty one.
            batches = [([], [])]
        return [self._response(type_url, snap, upserts, gone) for upserts, gone in batches]

    def _response(
        self, type_url: str, snap: Snapshot, upserts: list[str], removed: list[str]
    ) -> discovery_pb2.DeltaDiscoveryResponse:
        state = self.types[type_url]
        state.answered = True
        nonce = str(next(self.nonces))
        resp = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=str(snap.version), type_url=type_url, nonce=nonce, removed_resources=removed
        )
        for name in upserts:
            entry = snap.resources[type_url][name]
            resp.resources.add(name=name, version=entry.version, resource=entry.resource)
            state.known[name] = entry.version
            if type_url == ROUTE:
                self.route_marks.setdefault(name, next(_SERIALS))
            state.broken.pop(name, None)
        for name in removed:
            state.known.pop(name, None)
            state.broken.pop(name, None)
        self.pending[nonce] = _Sent(type_url, snap.version, upserts)
        log.debug(
            "xds %s: push v%d %s +%d -%d",
            self.peer,
            snap.version,
            type_url.rsplit(".", 1)[-1],
            len(upserts),
            len(removed),
        )
        return resp

    def _vhds_changes(self, snap: Snapshot) -> tuple[list[str], list[str]]:
        """The virtual hosts of the snapshot Envoy does not hold as they are, and those it
        holds that are gone: set operations on dict views, in C (thousands of hosts). All
        of them: Envoy asks VHDS for no names, and each of its VHDS subscriptions takes the
        resources named under its route configuration and ignores the others, undecoded."""
        versions, known = snap.versions(VHOST), self.types[VHOST].known
        return sorted(n for n, _ in versions.items() - known.items()), sorted(known.keys() - versions.keys())

    def _rewarm(self, cds: list[discovery_pb2.DeltaDiscoveryResponse]) -> None:
        """An updated EDS cluster warms again and needs its endpoints resent: Envoy keeps
        the subscription (so asks nothing) and holds the CDS ACK until the cluster is warm."""
        endpoints = self.types[ENDPOINT]
        for resp in cds:
            for res in resp.resources:
                if res.name in endpoints.subscribed:
                    endpoints.known.pop(res.name, None)

    # ------------------------------------------------------------ gates

    def _busy(self, *type_urls: str) -> bool:
        return any(s.type_url in type_urls for s in self.pending.values())

    def _has_broken(self, snap: Snapshot, *type_urls: str) -> bool:
        """Is some resource Envoy rejected still wanted, unchanged, in `snap`?"""
        for type_url in type_urls:
            desired = snap.resources[type_url]
            for name, version in self.types[type_url].broken.items():
                entry = desired.get(name)
                if entry is not None and entry.version == version:
                    return True
        return False

    def _warm(self, snap: Snapshot) -> bool:
        """Have CDS/EDS/SDS been ACKed, with endpoints for every accepted EDS cluster?"""
        if self._busy(CLUSTER, ENDPOINT, SECRET) or not self.types[CLUSTER].started:
            return False
        clusters = self.types[CLUSTER]
        endpoints = self.types[ENDPOINT]
        for name, entry in snap.resources[ENDPOINT].items():
            accepted = clusters.known.get(name) is not None and name not in clusters.broken
            if accepted and endpoints.known.get(name) != entry.version:
                return False
        return True

    def _vhds_synced(self, snap: Snapshot) -> bool:
        """Does each of Envoy's VHDS streams hold every virtual host of `snap`, and no
        other, answered; and has each route configuration Envoy was sent its stream?
        Envoy opens one per route configuration once it has it (so a stream opened before
        is another's: a removed listener's may stay open while it drains)."""
        streams = self.server._vhds_streams(self)
        if not streams:
            return not snap.resources[VHOST]
        marks = sorted((m for n, m in self.route_marks.items() if n in snap.resources[ROUTE]), reverse=True)
        serials = [s.serial for s in streams]
        if any(sum(serial > mark for serial in serials) <= i for i, mark in enumerate(marks)):
            return False
        versions = snap.versions(VHOST)
        return all(not s.pending and s.types[VHOST].known == versions for s in streams)

    def _vhds_broken(self, snap: Snapshot) -> bool:
        desired = snap.resources[VHOST]
        return any((e := desired.get(n)) is not None and e.version == v
                   for s in self.server._vhds_streams(self) for n, v in s.types[VHOST].broken.items())

    def _check_applied(self, snap: Snapshot) -> None:
        """Everything answered: `snap` is ACKed if Envoy holds all of it, NACKed if a resource
        it rejected is still wanted unchanged (reported once per version)."""
        if self.pending or not self.types[LISTENER].started or snap.version <= self.applied:
            return
        if self._has_broken(snap, *self.types) or self._vhds_broken(snap):
            vhds = self.server._vhds_streams(self)  # (they report what they were sent themselves)
            if snap.version > max([self.nack_reported, *(s.nack_reported for s in vhds)]):
                self.nack_reported = snap.version
                error = self.last_error or next((s.last_error for s in vhds if s.last_error), "")
                self.server._report_nack(self.group or "", snap.version, "", f"still rejected: {error}")
            return
        for type_url, state in self.types.items():
            if type_url in _WILDCARD and state.known != snap.versions(type_url):
                return
            if any(state.known.get(n) != e.version for n, e in snap.resources[type_url].items()):
                return
        if not self._vhds_synced(snap):
            return
        self.applied = snap.version
        self.server._stream_applied(self.group or "")


async def _serve(server: XdsServer, requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
                 context: grpc.aio.ServicerContext, vhds: bool) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
    """One Envoy stream, ADS or VHDS: requests in, `step()`'s responses out."""
    allowed = _certificate_group(context) if server.mtls else None
    if server.mtls and allowed is None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no Portico gateway identity in the certificate")
    stream = _Stream(server, context.peer(), allowed, vhds)
    reader = asyncio.create_task(_read(requests, stream.queue))
    server._streams.add(stream)
    kind = "VHDS" if vhds else "ADS"
    log.info("xds: Envoy connected from %s (%s)", stream.peer, kind)
    try:
        while await _drain(stream):
            if stream.refused:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, stream.refused)
            for resp in stream.step():
                yield resp
    finally:
        reader.cancel()
        server._streams.discard(stream)
        log.info("xds: Envoy %s stream from %s closed", kind, stream.peer)


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer,  # type: ignore[misc]
               rds_pb2_grpc.VirtualHostDiscoveryServiceServicer):  # type: ignore[misc]
    """Both delta services Envoy streams from: ADS and VHDS (`_serve`)."""

    def __init__(self, server: XdsServer) -> None:
        self.server = server

    async def DeltaAggregatedResources(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        async for response in _serve(self.server, request_iterator, context, vhds=False):
            yield response

    async def DeltaVirtualHosts(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        async for response in _serve(self.server, request_iterator, context, vhds=True):
            yield response


def _certificate_group(context: grpc.aio.ServicerContext) -> str | None:
    """The xDS group the peer's client certificate names (its URI SAN, `portico.infra.pki`)."""
    from portico.infra.pki import group_of_identity

    auth = context.auth_context()
    for key in ("peer_spiffe_id", "x509_uri_san", "peer_uri"):
        for value in auth.get(key, ()):
            group = group_of_identity(value.decode() if isinstance(value, bytes) else str(value))
            if group:
                return group
    return None


async def _read(requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], queue: asyncio.Queue[object]) -> None:
    try:
        async for req in requests:
            queue.put_nowait(req)
    except (asyncio.CancelledError, grpc.aio.AioRpcError):
        pass
    finally:
        queue.put_nowait(_CLOSED)


async def _drain(stream: _Stream) -> bool:
    """Wait for one event, then take every queued one (coalescing updates). False when closed."""
    items = [await stream.queue.get()]
    while not stream.queue.empty():
        items.append(stream.queue.get_nowait())
    for item in items:
        if item is _CLOSED:
            return False
        if isinstance(item, discovery_pb2.DeltaDiscoveryRequest):
            stream.handle(item)
    return True


def _empty(version: int = 0) -> Snapshot:
    return Snapshot(version, {t: {} for t in TYPE_URLS})


@dataclass
class _Built:
    """One type of one update: the builder's resources, their entries, and the entries by
    id(resource) (the next update reuses those of resources the builder reused)."""

    resources: dict[str, Any]
    entries: dict[str, _Entry]
    cache: dict[int, tuple[Any, _Entry]]


@dataclass
class _Group:
    """One Envoy group's newest snapshot, the builder memo behind it and its ACK state."""

    snapshot: Snapshot = field(default_factory=_empty)
    builder: Builder = field(default_factory=Builder)
    # type URL -> what the last update built of it
    inputs: dict[str, _Built] = field(default_factory=dict)
    acked: int = 0


class XdsServer:
    """Delta ADS server with one configuration per Envoy group (node.cluster)."""

    def __init__(self, on_ack: AckCallback | None = None, on_nack: NackCallback | None = None) -> None:
        self.on_ack = on_ack
        self.on_nack = on_nack
        self._groups: dict[str, _Group] = {}
        self._streams: set[_Stream] = set()
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.mtls = False  # serving Envoys over mutual TLS: each gets only the group its certificate names

    def version(self, group: str) -> int:
        """The newest version of `group` passed to Envoy (0 before its first `update`)."""
        return self._group(group).snapshot.version

    def acked_version(self, group: str) -> int:
        """The newest version of `group` every connected Envoy of it has fully applied (0: none)."""
        return self._group(group).acked

    def _group(self, name: str) -> _Group:
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = _Group()
        return group

    async def start(self, host: str, port: int = 0) -> int:
        """Listen on host:port (0: ephemeral); returns the bound port."""
        return await self._start(f"{host}:{port}")

    async def start_unix(self, path: str) -> None:
        """Listen on the Unix socket `path`, readable and writable by this user only
        (put it in a private directory too: the mode is set once the socket exists)."""
        await self._start(f"unix:{path}")
        os.chmod(path, 0o600)

    async def start_mtls(self, host: str, port: int, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> int:
        """Listen on host:port over TLS, requiring a client certificate the CA issued
        (Kubernetes mode: Envoy pods connect from the network)."""
        credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca_pem,
                                                  require_client_auth=True)
        self.mtls = True
        return await self._start(f"{host}:{port}", credentials)

    async def _start(self, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
        self._loop = asyncio.get_running_loop()
        server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", 256 * 1024 * 1024),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ]
        )
        servicer = _Servicer(self)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
        rds_pb2_grpc.add_VirtualHostDiscoveryServiceServicer_to_server(servicer, server)
        bound: int = (server.add_secure_port(address, credentials) if credentials is not None
                      else server.add_insecure_port(address))
        if bound == 0:
            raise OSError(f"xds: cannot listen on {address}")
        await server.start()
        self._server = server
        log.info("xds: ADS server listening on %s", address if address.startswith("unix:") else
                 f"{address.rpartition(':')[0]}:{bound}")
        return bound

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    def update(self, group: str, ir: IR) -> int:
        """Build `ir` as the newest version of `group` and push what changed; returns its version."""
        state = self._group(group)
        entries: dict[str, Mapping[str, _Versioned]] = {}
        built = state.builder.build(ir)
        for type_url, by_name in built.wire().items():
            if type_url == VHOST:  # made with their versions and packed (thousands of them)
                entries[type_url] = built.virtual_hosts
                continue
            before = state.inputs.get(type_url)
            if before is None or before.resources is not by_name:  # else the builder reused the whole dict
                cache = before.cache if before is not None else {}
                before = state.inputs[type_url] = _Built(by_name, {}, {})
                for name, msg in by_name.items():
                    before.entries[name] = self._entry(msg, cache, before.cache)
            entries[type_url] = before.entries
        state.snapshot = Snapshot(state.snapshot.version + 1, entries)
        self._notify(group)
        return state.snapshot.version

    def remove(self, group: str) -> None:
        """Forget `group`: its Envoys (if any still connect) are served nothing."""
        state = self._groups.pop(group, None)
        if state is not None and any(s.group == group for s in self._streams):
            self._groups[group] = _Group(snapshot=_empty(state.snapshot.version + 1))
            self._notify(group)

    @staticmethod
    def _entry(msg: Any, previous: dict[int, tuple[Any, _Entry]], cache: dict[int, tuple[Any, _Entry]]) -> _Entry:
        """Hash and pack `msg`, unless the builder reused it from the previous update."""
        cached = previous.get(id(msg))
        entry = cached[1] if cached is not None and cached[0] is msg else _Entry(resource_version(msg), packed(msg))
        cache[id(msg)] = (msg, entry)  # holding msg keeps its id() unique
        return entry

    def _notify(self, group: str) -> None:
        loop = self._loop
        for stream in [s for s in self._streams if s.group in (group, None)]:
            if loop is None or _running_loop() is loop:
                stream.queue.put_nowait(_UPDATE)
            else:
                loop.call_soon_threadsafe(stream.queue.put_nowait, _UPDATE)

    def _peers(self, stream: _Stream, vhds: bool) -> list[_Stream]:
        """The same Envoy's (group and node) streams of the other kind, oldest first."""
        return sorted((s for s in self._streams if s.vhds is vhds and s.group == stream.group
                       and s.node == stream.node and not s.refused), key=lambda s: s.serial)

    def _ads_stream(self, stream: _Stream) -> _Stream | None:
        """A VHDS stream's ADS stream: the newest of its Envoy."""
        peers = self._peers(stream, vhds=False)
        return peers[-1] if peers else None

    def _vhds_streams(self, stream: _Stream) -> list[_Stream]:
        return self._peers(stream, vhds=True)

    def _nudge(self, stream: _Stream, vhds: bool) -> None:
        """Wake the same Envoy's streams of the other kind: what they may send has changed."""
        for peer in self._peers(stream, vhds):
            peer.queue.put_nowait(_UPDATE)

    def _stream_applied(self, group: str) -> None:
        state = self._group(group)
        version = min(s.applied for s in self._streams if s.group == group and not s.vhds)
        if version <= state.acked:
            return
        state.acked = version
        log.info("xds: group %s version %d ACKed", group, version)
        if self.on_ack is not None:
            self.on_ack(group, version)

    def _report_nack(self, group: str, version: int, type_url: str, message: str) -> None:
        kind = type_url.rsplit(".", 1)[-1] or "config"
        log.warning("xds: Envoy of group %s rejected %s of version %d: %s", group, kind, version, message)
        if self.on_nack is not None:
            self.on_nack(group, version, message)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        return loop
    except RuntimeError:
        return None
