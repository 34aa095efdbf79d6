"""One delta xDS stream (ADS or VHDS) as the protocol sees it: per type, what Envoy asked
for and holds, the responses awaiting its answer, and the responses that bring it to a
snapshot. The ordering of types and the ACK rule are the Envoy connection's
(`portico.xds.connection`): this module only speaks the delta protocol.

A NACK of a batch names the bad resource only in prose, so the batch's resources are
resent one per response (`split`) to learn which one Envoy rejects.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from portico.xds.resources import CLUSTER, ENDPOINT, EXTENSION, LISTENER, ROUTE, SCOPED, SECRET, TYPE_URLS, VHOST

log = logging.getLogger("portico.xds")

# LDS, CDS and scoped RDS are wildcard subscriptions in Envoy (every connection manager's
# scoped RDS subscription is given every scope: `xds.scopes` keys them apart)
WILDCARD = (CLUSTER, LISTENER, SCOPED)
ADS_TYPES = (CLUSTER, ENDPOINT, SECRET, LISTENER, EXTENSION, ROUTE, SCOPED)
_SPLIT = (LISTENER, ROUTE)  # one response per resource: a NACK then names exactly one resource
UPDATE = object()  # queue marker: something this stream may send has changed
CLOSED = object()  # queue marker: Envoy closed its request stream

# Stream serials and route configuration marks share one clock: a VHDS stream "opened after
# Envoy got a route configuration" is one whose serial is above the configuration's mark.
SERIALS = itertools.count(1)


@dataclass(frozen=True)
class Entry:
    version: str
    resource: any_pb2.Any


class Versioned(Protocol):
    """A resource as served: an Entry, or a virtual host as the builder made it."""

    @property
    def version(self) -> str: ...

    @property
    def resource(self) -> any_pb2.Any: ...


@dataclass(frozen=True)
class Snapshot:
    """One `XdsServer.update()`: type URL -> name -> (content hash, packed resource)."""

    version: int
    resources: dict[str, Mapping[str, Versioned]]
    _versions: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, repr=False)

    def versions(self, type_url: str) -> dict[str, str]:
        """name -> version (made once per snapshot and type: thousands of virtual hosts)."""
        found = self._versions.get(type_url)
        if found is None:
            found = self._versions[type_url] = {name: e.version for name, e in self.resources[type_url].items()}
        return found


def empty(version: int = 0) -> Snapshot:
    return Snapshot(version, {t: {} for t in TYPE_URLS})


def namespace(name: str) -> str:
    """The route configuration a VHDS resource belongs to (Envoy's namespace matching)."""
    return name.rpartition("/")[0]


@dataclass
class Sent:
    type_url: str
    version: int
    names: list[str]


@dataclass(frozen=True)
class Nack:
    """Envoy rejected `sent`, saying `message`."""

    sent: Sent
    message: str


@dataclass
class TypeState:
    started: bool = False  # Envoy has asked for this type on this stream
    answered: bool = False  # a response of this type was sent on this stream
    subscribed: set[str] = field(default_factory=set)
    known: dict[str, str] = field(default_factory=dict)  # what Envoy holds (sent or declared)
    broken: dict[str, str] = field(default_factory=dict)  # name -> version Envoy rejected
    # Names of a rejected batch: resent one per response to learn which one Envoy rejects.
    split: set[str] = field(default_factory=set)


class Stream:
    """One gRPC stream from an Envoy: its request queue and per-type delta state."""

    def __init__(self, peer: str, vhds: bool = False) -> None:
        self.peer = peer
        self.certificate: dict[str, str] = {}  # the peer's client certificate: serial, expires (mutual TLS)
        self.vhds = vhds
        self.kind = "VHDS" if vhds else "ADS"
        self.serial = next(SERIALS)
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.types: dict[str, TypeState] = {t: TypeState() for t in ((VHOST,) if vhds else ADS_TYPES)}
        self.pending: dict[str, Sent] = {}
        self.nonces = itertools.count(1)

    def wake(self) -> None:
        self.queue.put_nowait(UPDATE)

    async def requests(self) -> list[discovery_pb2.DeltaDiscoveryRequest] | None:
        """Wait for one event, then take every queued one (coalescing updates): the requests
        among them (maybe none: an update), or None once Envoy closed the stream."""
        items = [await self.queue.get()]
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        out = []
        for item in items:
            if item is CLOSED:
                return None
            if isinstance(item, discovery_pb2.DeltaDiscoveryRequest):
                out.append(item)
        return out

    # ------------------------------------------------------------ requests

    def receive(self, req: discovery_pb2.DeltaDiscoveryRequest) -> Nack | None:
        """Take in a request of a type this stream serves: subscriptions, what a reconnecting
        Envoy holds, and its answer to a response (the NACK, if it is one)."""
        state = self.types[req.type_url]
        if not state.started:
            state.started = True
            # Envoy reconnecting tells what it holds: do not resend those.
            state.known.update(req.initial_resource_versions)
        state.subscribed.update(n for n in req.resource_names_subscribe if n != "*")
        for name in req.resource_names_unsubscribe:
            state.subscribed.discard(name)
            # (VHDS names a route configuration: it unsubscribes from all its virtual hosts)
            for held in [name] if not self.vhds else [n for n in state.known if namespace(n) == name]:
                state.known.pop(held, None)
                state.broken.pop(held, None)
                state.split.discard(held)
        return self._answer(req) if req.response_nonce else None

    def _answer(self, req: discovery_pb2.DeltaDiscoveryRequest) -> Nack | None:
        sent = self.pending.pop(req.response_nonce, None)
        if sent is None:
            return None
        state = self.types[sent.type_url]
        for name in sent.names:
            state.split.discard(name)
        if not req.HasField("error_detail"):
            for name in sent.names:
                state.broken.pop(name, None)
            return None
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
        return Nack(sent, req.error_detail.message)

    # ------------------------------------------------------------ state

    def busy(self, *type_urls: str) -> bool:
        """Is a response of one of `type_urls` awaiting Envoy's answer?"""
        return any(s.type_url in type_urls for s in self.pending.values())

    def has_broken(self, snap: Snapshot, type_urls: Iterable[str]) -> bool:
        """Is some resource Envoy rejected still wanted, unchanged, in `snap`?"""
        for type_url in type_urls:
            desired = snap.resources[type_url]
            for name, version in self.types[type_url].broken.items():
                entry = desired.get(name)
                if entry is not None and entry.version == version:
                    return True
        return False

    # ------------------------------------------------------------ pushes

    def push(self, type_url: str, snap: Snapshot, remove: bool) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        """The responses bringing what Envoy holds of `type_url` to `snap` (with removals of
        wildcard types if `remove`)."""
        state = self.types[type_url]
        if not state.started:
            return []
        desired = snap.resources[type_url]
        if type_url == VHOST:
            changed, removed = self._vhds_changes(snap)
        elif type_url == SCOPED:
            changed, removed = self._scope_changes(snap, remove)
        else:
            names = desired.keys() if type_url in WILDCARD else state.subscribed & desired.keys()
            changed = sorted(n for n in names if state.known.get(n) != desired[n].version)
            # Named types (RDS, EDS, SDS) are never removed: Envoy unsubscribes when unused.
            removed = sorted(n for n in state.known if n not in desired) if remove and type_url in WILDCARD else []
        batches: list[tuple[list[str], list[str]]]
        if type_url in _SPLIT:
            batches = [([n], []) for n in changed] + ([([], removed)] if removed else [])
        else:
            alone = [n for n in changed if n in state.split]
            together = [n for n in changed if n not in state.split]
            batches = [([n], []) for n in alone]
            batches += [(together, removed)] if together or removed else []
        if not batches and not state.answered and type_url in WILDCARD:
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
            state.broken.pop(name, None)
        for name in removed:
            state.known.pop(name, None)
            state.broken.pop(name, None)
        self.pending[nonce] = Sent(type_url, snap.version, upserts)
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

    def _scope_changes(self, snap: Snapshot, remove: bool) -> tuple[list[str], list[str]]:
        """The scopes of the snapshot Envoy does not hold as they are, and (if `remove`)
        those it holds that are gone: set operations on dict views, in C (thousands)."""
        versions, known = snap.versions(SCOPED), self.types[SCOPED].known
        removed = sorted(known.keys() - versions.keys()) if remove else []
        return sorted(n for n, _ in versions.items() - known.items()), removed
