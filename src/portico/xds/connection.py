"""One connected Envoy: its ADS stream, the VHDS streams it opened (one per route
configuration it holds), the ordering of what it is sent, and what it has applied.

Ordering ("No errors on change", ARCHITECTURE):
  1. clusters (CDS), endpoints (EDS) and secrets (SDS) of the newest version;
  2. once Envoy has ACKed them and every accepted EDS cluster has its endpoints
     (i.e. is warm), listeners (LDS, with removals) and the jwt_authn config (ECDS), as
     the union of the newest version's providers and those of the routes Envoy holds;
  3. once Envoy holds that config (ACKed), route configurations (RDS) and their virtual
     hosts (VHDS, on the VHDS streams: served from the same snapshot), and the scopes of
     the connection managers scoped by Host (SRDS, with removals: `xds.scopes`). A route
     naming a JWT requirement never reaches Envoy before the requirement does: Envoy
     answers a route whose requirement it lacks 403, and VHDS is a stream of its own,
     not ordered with ADS;
  4. once those are ACKed, the newest version's jwt_authn config alone (the providers
     no route names any more dropped) and removals of the clusters no route uses.
A version is applied when Envoy holds every resource of it (`_applied`).

A route configuration the newest version no longer has (its connection manager went from
VHDS to scoped routes, or its listener was removed) keeps its virtual hosts served, as
Envoy last got them, for as long as Envoy subscribes to it (`draining`): the replaced
listener drains (Envoy's drain time) and its kept-alive connections still find their
routes there; Envoy unsubscribes (and closes that VHDS stream) once it destroys the
listener. The route configuration itself stays as well: RDS resources are never removed,
Envoy drops them when unused. Those held virtual hosts are not part of the version: they
never count toward (or hold back) its being applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from envoy.service.discovery.v3 import discovery_pb2

from portico.xds import jwt
from portico.xds.resources import CLUSTER, ENDPOINT, EXTENSION, LISTENER, ROUTE, SCOPED, SECRET, VHOST
from portico.xds.stream import SERIALS, WILDCARD, Entry, Nack, Snapshot, Stream, Versioned, namespace

log = logging.getLogger("portico.xds")

NackReport = Callable[[str, int, str, str], None]  # (group, version, type URL or "", Envoy's message)


class Connection:
    """One Envoy (group = node.cluster, node = node.id): serves its ADS stream the group's
    newest snapshot in order, its VHDS streams the virtual hosts of the snapshot the ADS
    stream serves routes from, and reports a version once Envoy has applied all of it."""

    def __init__(self, group: str, node: str, newest: Callable[[], Snapshot],
                 on_applied: Callable[[Connection], None], on_nack: NackReport) -> None:
        self.group = group
        self.node = node
        self._newest = newest  # the group's newest snapshot
        self._on_applied = on_applied
        self._on_nack = on_nack
        self.ads: Stream | None = None
        self.vhds: list[Stream] = []
        self.back: Snapshot | None = None  # the snapshot LDS/ECDS are served from
        self.routed: Snapshot | None = None  # the snapshot RDS/VHDS are served from
        self._bridges: tuple[Snapshot, Snapshot, Snapshot] | None = None  # (routed, target, bridge)
        # route configuration -> when Envoy was first sent it (a SERIALS value; 0: it held it
        # at connect): its VHDS stream is one opened after that
        self.route_marks: dict[str, int] = {}
        # route configuration no longer in `routed` that Envoy still subscribes to (a drained
        # listener's) -> its virtual hosts as Envoy last got them, still served by VHDS
        self.draining: dict[str, dict[str, Versioned]] = {}
        self._served: tuple[Snapshot, Snapshot] | None = None  # (routed, routed with `draining`)
        self.applied = 0  # the newest version Envoy has applied
        self.nack_reported = 0  # the newest version a NACK was reported for
        self.last_error = ""

    @property
    def streams(self) -> list[Stream]:
        return ([self.ads] if self.ads is not None else []) + self.vhds

    def wake(self) -> None:
        for stream in self.streams:
            stream.wake()

    # ------------------------------------------------------------ requests

    def handle(self, stream: Stream, req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        if req.type_url not in stream.types:
            log.warning("xds %s: request for unknown type %s", stream.peer, req.type_url)
            return
        if req.type_url == ROUTE:
            if not stream.types[ROUTE].started:
                self.route_marks.update(dict.fromkeys(req.initial_resource_versions, 0))
            for name in req.resource_names_unsubscribe:
                self.route_marks.pop(name, None)
                if self.draining.pop(name, None) is not None:  # the drained listener is gone
                    self._served = None
                    for vhds in self.vhds:  # (the others' streams were given its hosts too: removed)
                        vhds.wake()
        nack = stream.receive(req)
        if nack is not None:
            self._nacked(nack)
        if stream.vhds and self.ads is not None:
            # The ADS stream may now remove clusters or report the version applied: an
            # answer came, or (a reconnecting Envoy) this stream holds all already.
            self.ads.wake()

    def _nacked(self, nack: Nack) -> None:
        self.last_error = nack.message
        self.nack_reported = max(self.nack_reported, nack.sent.version)
        self._on_nack(self.group, nack.sent.version, nack.sent.type_url, nack.message)

    # ------------------------------------------------------------ pushes

    def step(self, stream: Stream) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        """Everything that may be sent now on `stream`, in order."""
        if stream.vhds:
            if self.ads is None or self.routed is None:
                return []
            return stream.push(VHOST, self._with_draining(self.routed), remove=True)
        if stream is not self.ads:
            return []
        target = self._newest()
        out = stream.push(CLUSTER, target, remove=False)
        self._rewarm(stream, out)
        for type_url in (ENDPOINT, SECRET):
            out += stream.push(type_url, target, remove=False)
        if not self._warm(stream, target):
            if self.back is not None:  # new ECDS/RDS subscriptions of the listeners Envoy has
                out += stream.push(EXTENSION, self._bridge(self.back), remove=False)
            if self.routed is not None and self._may_route(stream):
                out += self._push_routes(stream, self.routed, remove=False)
            return out
        self.back = target
        out += stream.push(LISTENER, target, remove=True)
        bridge = self._bridge(target)
        out += stream.push(EXTENSION, bridge, remove=False)
        if not self._extensions_held(stream, bridge):
            if self.routed is not None and self._may_route(stream):  # (new RDS subscriptions, from what may be sent)
                out += self._push_routes(stream, self.routed, remove=False)
            return out
        if self.routed is not target:
            self._drain(stream, self.routed, target)
            self.routed = target
            for vhds in self.vhds:
                vhds.wake()
        out += self._push_routes(stream, target, remove=True)
        if stream.busy(LISTENER, EXTENSION, ROUTE, SCOPED) or not self._vhds_hold(target):
            return out
        # the routes Envoy holds are the newest: the providers only older ones named go
        out += stream.push(EXTENSION, target, remove=False)
        if stream.busy(EXTENSION):
            return out
        if not stream.has_broken(target, (LISTENER, EXTENSION, ROUTE, SCOPED)) and not self._vhds_broken(target):
            # Routes no longer use the removed clusters: remove them now. (After a rejected
            # listener or route table, the old one Envoy kept may still use them.)
            out += stream.push(CLUSTER, target, remove=True)
        self._check_applied(target)
        return out

    def _bridge(self, snap: Snapshot) -> Snapshot:
        """`snap` with the jwt_authn config (ECDS) of it and of the routes Envoy holds."""
        routed = self.routed
        if routed is None or routed is snap:
            return snap
        if self._bridges is not None and self._bridges[0] is routed and self._bridges[1] is snap:
            return self._bridges[2]
        bridged = dict(snap.resources[EXTENSION])
        for name, old in routed.resources[EXTENSION].items():
            new = bridged.get(name)
            merged = jwt.union(new.resource, old.resource) if new is not None and new.version != old.version else None
            if merged is old.resource:
                bridged[name] = old
            elif merged is not None:
                assert new is not None
                bridged[name] = Entry(f"{new.version}+{old.version}", merged)
        out = Snapshot(snap.version, {**snap.resources, EXTENSION: bridged})
        self._bridges = (routed, snap, out)
        return out

    def _may_route(self, stream: Stream) -> bool:
        """May route configurations of `routed` be sent (new subscriptions) while the newest
        version waits? Only while Envoy holds a jwt_authn config naming their requirements:
        `routed`'s own, or the union of it and the newest listeners' version."""
        if self.routed is None:
            return False
        return self._extensions_held(stream, self.routed) or (
            self.back is not None and self._extensions_held(stream, self._bridge(self.back)))

    @staticmethod
    def _extensions_held(stream: Stream, snap: Snapshot) -> bool:
        """Does Envoy hold (ACKed) the jwt_authn config of `snap`, or is there none to wait
        for? An Envoy that asked for routes has a connection manager, and each has the
        jwt_authn filter: it asks for the config too (maybe after the routes)."""
        state = stream.types[EXTENSION]
        desired = snap.resources[EXTENSION]
        routing = stream.types[ROUTE].started or stream.types[SCOPED].started
        if stream.busy(EXTENSION) or (desired and routing and not state.started):
            return False
        return all(state.known.get(n) == desired[n].version for n in desired.keys() & state.subscribed)

    def _push_routes(self, stream: Stream, snap: Snapshot, remove: bool) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        """Route configurations and scopes (those gone removed if `remove`)."""
        out = stream.push(ROUTE, snap, remove=False)
        for resp in out:
            for res in resp.resources:
                if res.name not in self.route_marks:
                    self.route_marks[res.name] = next(SERIALS)
        return out + stream.push(SCOPED, snap, remove=remove)

    def _drain(self, ads: Stream, routed: Snapshot | None, target: Snapshot) -> None:
        """Routes move from `routed` to `target`: hold the virtual hosts of each route
        configuration `target` drops that Envoy still subscribes to (its listener drains);
        a route configuration `target` has again is served from it."""
        if routed is None:
            return
        gone = (routed.resources[ROUTE].keys() - target.resources[ROUTE].keys()) & ads.types[ROUTE].subscribed
        self.draining = {c: kept for c, kept in self.draining.items() if c not in target.resources[ROUTE]}
        if gone:
            for name, entry in routed.resources[VHOST].items():
                config = namespace(name)
                if config in gone:
                    self.draining.setdefault(config, {})[name] = entry
        self._served = None

    def _with_draining(self, snap: Snapshot) -> Snapshot:
        """`snap` with the virtual hosts held for draining listeners (`draining`): what the
        VHDS streams serve."""
        if not self.draining:
            return snap
        if self._served is None or self._served[0] is not snap:
            held = {n: e for kept in self.draining.values() for n, e in kept.items()}
            self._served = (snap, Snapshot(snap.version, {**snap.resources, VHOST: {**held, **snap.resources[VHOST]}}))
        return self._served[1]

    def draining_virtual_hosts(self) -> list[str]:
        """The virtual hosts held for draining listeners (`draining`), by name."""
        return sorted(n for kept in self.draining.values() for n in kept)

    @staticmethod
    def _rewarm(stream: Stream, cds: list[discovery_pb2.DeltaDiscoveryResponse]) -> None:
        """An updated EDS cluster warms again and needs its endpoints resent: Envoy keeps
        the subscription (so asks nothing) and holds the CDS ACK until the cluster is warm."""
        endpoints = stream.types[ENDPOINT]
        for resp in cds:
            for res in resp.resources:
                if res.name in endpoints.subscribed:
                    endpoints.known.pop(res.name, None)

    # ------------------------------------------------------------ gates

    @staticmethod
    def _warm(stream: Stream, snap: Snapshot) -> bool:
        """Have CDS/EDS/SDS been ACKed, with endpoints for every accepted EDS cluster?"""
        if stream.busy(CLUSTER, ENDPOINT, SECRET) or not stream.types[CLUSTER].started:
            return False
        clusters = stream.types[CLUSTER]
        endpoints = stream.types[ENDPOINT]
        for name, entry in snap.resources[ENDPOINT].items():
            accepted = clusters.known.get(name) is not None and name not in clusters.broken
            if accepted and endpoints.known.get(name) != entry.version:
                return False
        return True

    def _vhds_hold(self, snap: Snapshot) -> bool:
        """Do Envoy's VHDS streams hold the virtual hosts of `snap`? Each holds every one of
        them and no other, answered; and each route configuration Envoy was sent has a
        stream of its own: one opened after Envoy got that configuration (Envoy opens one
        per route configuration once it has it, so a stream opened before is another's: a
        replaced listener's may stay open while it drains)."""
        if not self.vhds:
            return not snap.resources[VHOST]
        marks = sorted((m for n, m in self.route_marks.items() if n in snap.resources[ROUTE]), reverse=True)
        serials = [s.serial for s in self.vhds]
        # the i-th newest route configuration needs at least i+1 streams opened after it
        if any(sum(serial > mark for serial in serials) <= i for i, mark in enumerate(marks)):
            return False
        versions = snap.versions(VHOST)
        return all(not s.pending and self._of_version(s.types[VHOST].known) == versions for s in self.vhds)

    def _of_version(self, known: dict[str, str]) -> dict[str, str]:
        """What a VHDS stream holds, less the virtual hosts held for draining listeners
        (they are no part of any version: they never hold back its being applied)."""
        if not self.draining:
            return known
        return {n: v for n, v in known.items() if namespace(n) not in self.draining}

    def _vhds_broken(self, snap: Snapshot) -> bool:
        return any(s.has_broken(snap, (VHOST,)) for s in self.vhds)

    # ------------------------------------------------------------ applied

    def _applied(self, ads: Stream, snap: Snapshot) -> bool:
        """The "version applied" rule: `snap` is applied once every response on every stream
        of this Envoy is answered, its ADS stream holds exactly the wildcard resources
        (listeners, clusters) of `snap` and every named one of it, and its VHDS streams hold
        the virtual hosts (`_vhds_hold`: each route configuration by a stream opened after
        Envoy got it)."""
        if ads.pending or any(s.pending for s in self.vhds):
            return False
        for type_url, state in ads.types.items():
            if type_url in WILDCARD and state.known != snap.versions(type_url):
                return False
            desired = snap.resources[type_url]
            # ECDS: what the listeners Envoy holds subscribe to (a data plane with no HTTP
            # listener never asks for the jwt_authn config)
            names = desired.keys() & state.subscribed if type_url == EXTENSION else desired.keys()
            if any(state.known.get(n) != desired[n].version for n in names):
                return False
        return self._vhds_hold(snap)

    def _check_applied(self, snap: Snapshot) -> None:
        """Everything answered: `snap` is applied if Envoy holds all of it, NACKed if a
        resource it rejected is still wanted unchanged (reported once per version)."""
        ads = self.ads
        if ads is None or ads.pending or not ads.types[LISTENER].started or snap.version <= self.applied:
            return
        if ads.has_broken(snap, ads.types) or self._vhds_broken(snap):
            if snap.version > self.nack_reported:
                self.nack_reported = snap.version
                self._on_nack(self.group, snap.version, "", f"still rejected: {self.last_error}")
            return
        if self._applied(ads, snap):
            self.applied = snap.version
            self._on_applied(self)
