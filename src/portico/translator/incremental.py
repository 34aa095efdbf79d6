"""Incremental translation: a change of HTTPRoutes and GRPCRoutes alone patches the
previous translation instead of running the whole pipeline.

Why: a route change used to cost what exists, not what changed. At 10,000 routes the
pipeline re-ran attachment, binding, status rendering, virtual-host assembly and the
scan for clusters in use over every route: over a second per change (docs/benchmarks.md).
Here each changed route is translated alone (`routebinding.translate_route`) and only
what it touches is patched: the listeners it was and is a candidate on (attachedRoutes),
the virtual hosts of its hostnames in the route configurations of those listeners, the
clusters in use per Gateway (reference counts), its own status and its Gateways'.
Everything else keeps its very objects, so comparing the output with the previous one
(control loop, xDS builder) is a matter of identity.

A change of EndpointSlices (the most frequent watch event in Kubernetes: pods scaled,
rolled, rescheduled) is patched too (`patch_slices`): the clusters of the Services those
slices belong to get the endpoints `Backends.endpoints` selects from the new slices, and
nothing else is rebuilt: routes name clusters, so only those clusters change in the
Gateways' IR, and no status reads endpoints but through the rules of `Backends.refused`.
With routes changed in the same sync, the slices are patched first, then the routes.

A patch is made only where it gives exactly the pipeline's output (the property test
`tests/translator/test_incremental_property.py` checks this on random changes); in
every other case the pipeline runs, reusing unchanged routes' rules (`RuleMemo`):
- only HTTPRoutes, GRPCRoutes and EndpointSlices changed since the kept translation;
  same placements;
- no changed slice belongs to `default/kubernetes`: its addresses are refused to every
  backend (`guardrails`); no endpoint that comes or goes is one `Backends.refused` refuses
  to some route (a control port, the API server's, a metadata address): that changes the
  route's ResolvedRefs and whether it has the cluster at all;
- no UDPRoute cluster merges the endpoints of several Services (`l4routes.udp_backends`);
- no BackendTLSPolicy, and no policy targeting anything but Gateways: the policies of a
  route, Service or backend follow the routes (cluster variants, ancestors);
- no listener a changed route reaches, before or after, has candidates of both kinds:
  GRPCRoute cross serving could then re-decide other routes there;
- the Gateways' data planes hold no secrets and the changed routes bring none (a
  cluster with a client certificate brings its secret into the IR).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field, replace

from portico import ir
from portico.models import EndpointSlice, GRPCRoute, HTTPRoute, Resource, Service
from portico.objects import ObjectKey
from portico.translator import grpcroute, httproute
from portico.translator.backends import MEMO_KINDS, Backends, RuleMemo
from portico.translator.build import (
    RouteTable,
    domain_order,
    listener_domain,
    misdirected_hosts,
    route_tables,
    served_hostnames,
    virtual_host,
)
from portico.translator.context import Context, service_of
from portico.translator.gateway import GatewayState, HostRoutes, ListenerState
from portico.translator.guardrails import API_SERVER_SERVICE
from portico.translator.listenerset import ListenerSetState
from portico.translator.localaccess import reserved_problem
from portico.translator.policies import Policies
from portico.translator.routebinding import Candidacy, RouteResult, candidates_of, translate_route
from portico.translator.snapshot import Snapshot, Translation
from portico.translator.status import gateway_status, listenerset_status, route_status

SLICE_KIND = "EndpointSlice"
Entries = list[tuple[tuple[object, ...], ir.Route]]  # (precedence, route) of one route on one domain
Slot = tuple[int, tuple[str, str], ObjectKey]  # (listener's place in its table, route order, route)


@dataclass
class State:
    """A full translation and what it was made of: what `Incremental` patches."""

    snapshot: Snapshot
    ctx: Context
    gateways: dict[ObjectKey, GatewayState]
    listener_sets: list[ListenerSetState]
    backends: Backends
    policies: Policies
    results: dict[ObjectKey, RouteResult]  # HTTPRoutes and GRPCRoutes with a parent of ours
    candidacy: Candidacy
    translation: Translation
    revision: int | None = None
    # filled in by `Incremental.keep`
    patchable: bool = False
    candidates: dict[ObjectKey, list[ListenerState]] = field(default_factory=dict)  # route -> its listeners
    kinds: dict[int, Counter[str]] = field(default_factory=dict)  # id(listener) -> route kinds of candidates
    served: dict[tuple[ObjectKey, int], HostRoutes] = field(default_factory=dict)  # (route, id(listener))
    indexes: dict[ObjectKey, GatewayIndex] = field(default_factory=dict)  # built on first use


class Table:
    """One route configuration, kept as each domain's contributions (`Slot` -> entries)
    and its virtual hosts in `domain_order`, so a route changes only its domains."""

    def __init__(self, spec: RouteTable, served: tuple[ir.VirtualHost, ...]) -> None:
        self.spec = spec
        self.fixed = frozenset(listener_domain(ls) for ls in spec.group)  # a virtual host, routes or not
        self.contributions: dict[str, dict[Slot, Entries]] = {}
        for place, ls in enumerate(spec.group):
            for hr in ls.http_routes:
                for h in served_hostnames(hr.hostnames, ls, spec.peers):
                    self.contributions.setdefault(h, {})[(place, hr.order, key_of(hr))] = contribution(hr)
        own = [vh for vh in served if not vh.name.startswith("misdirected/")]  # as the pipeline built them
        self.keys = [domain_order(vh.name) for vh in own]
        self.hosts = own
        self.served = served
        self.touched: set[str] = set()

    def __contains__(self, domain: object) -> bool:
        return domain in self.fixed or domain in self.contributions

    def add(self, place: int, hr: HostRoutes, ls: ListenerState) -> None:
        for h in served_hostnames(hr.hostnames, ls, self.spec.peers):
            self.contributions.setdefault(h, {})[(place, hr.order, key_of(hr))] = contribution(hr)
            self.touched.add(h)

    def remove(self, place: int, hr: HostRoutes, ls: ListenerState) -> None:
        for h in served_hostnames(hr.hostnames, ls, self.spec.peers):
            slots = self.contributions.get(h, {})
            slots.pop((place, hr.order, key_of(hr)), None)
            if not slots:
                self.contributions.pop(h, None)
            self.touched.add(h)

    def refresh(self) -> tuple[ir.VirtualHost, ...]:
        """The virtual hosts after the touched domains are rebuilt (`build.virtual_hosts`)."""
        for domain in sorted(self.touched):
            key = domain_order(domain)
            at = bisect.bisect_left(self.keys, key)
            exists = at < len(self.keys) and self.keys[at] == key
            if domain in self:
                slots = self.contributions.get(domain, {})
                vh = virtual_host(domain, [e for slot in sorted(slots) for e in slots[slot]])
                if exists:
                    self.hosts[at] = vh
                else:
                    self.keys.insert(at, key)
                    self.hosts.insert(at, vh)
            elif exists:
                del self.keys[at], self.hosts[at]
        self.touched.clear()
        own = tuple(self.hosts)
        self.served = own + misdirected_hosts(self.spec.group[0], self.spec.peers, self) if self.spec.https else own
        return self.served


def key_of(hr: HostRoutes) -> ObjectKey:
    assert hr.route is not None
    return hr.route


def contribution(hr: HostRoutes) -> Entries:
    return [(e.precedence, e.route) for e in hr.entries]


class GatewayIndex:
    """One Gateway's route configurations and the clusters its routes use (counted)."""

    def __init__(self, gw: GatewayState, xds: ir.IR) -> None:
        configs = {c.http.route_config_name: c.http for li in xds.listeners for c in li.filter_chains
                   if c.http is not None}
        self.tables = {spec.name: Table(spec, configs[spec.name].virtual_hosts) for spec in route_tables(gw)}
        self.places: dict[int, list[tuple[Table, int]]] = {}  # id(listener) -> its tables, its place there
        for table in self.tables.values():
            for place, ls in enumerate(table.spec.group):
                self.places.setdefault(id(ls), []).append((table, place))
        self.counts: Counter[str] = Counter()
        for li in xds.listeners:
            self.counts.update(ir.backend_clusters(li.udp_backends))
            self.counts.update(n for c in li.filter_chains if c.tcp is not None
                               for n in ir.backend_clusters(c.tcp.backends))
        for table in self.tables.values():
            for slots in table.contributions.values():
                for entries in slots.values():
                    for _, route in entries:
                        self.counts.update(ir.route_clusters(route))
        self.names = sorted(self.counts)
        self.dirty: set[str] = set()  # names whose count changed since `settle`

    def count(self, hr: HostRoutes, times: int, ls: ListenerState) -> None:
        """Count (times 1) or uncount (-1) the clusters of `hr`'s entries, once per domain
        they serve in each table of the listener (as the IR holds them)."""
        for table, _ in self.places.get(id(ls), []):
            domains = len(served_hostnames(hr.hostnames, ls, table.spec.peers))
            for e in hr.entries:
                for name in ir.route_clusters(e.route):
                    self.counts[name] += times * domains
                    self.dirty.add(name)

    def settle(self) -> bool:
        """`names` after the counts changed; True when the set of clusters in use changed."""
        changed = False
        for name in self.dirty:
            used = self.counts.get(name, 0) > 0
            at = bisect.bisect_left(self.names, name)
            listed = at < len(self.names) and self.names[at] == name
            if not used:
                self.counts.pop(name, None)
            if used != listed:
                changed = True
                if used:
                    self.names.insert(at, name)
                else:
                    del self.names[at]
        self.dirty.clear()
        return changed


class Incremental:
    """The memo of a control loop (`Snapshot.memo`): the rules of unchanged routes
    (`RuleMemo`) and the last translation's state, patched for a change of routes alone."""

    def __init__(self) -> None:
        self.rules = RuleMemo()
        self.state: State | None = None
        self.patches = 0  # translations made by patching (for tests and benchmarks)

    def forget(self) -> None:
        self.state = None

    def keep(self, snapshot: Snapshot, state: State) -> None:
        """After a full translation: index it for the next patch."""
        state.revision = snapshot.revision
        state.patchable = (state.policies.gateways_only()
                           and not any(out.xds.secrets for out in state.translation.gateways.values()))
        if state.patchable:
            for ls, candidates in state.candidacy.values():
                state.kinds[id(ls)] = Counter(c.result.route.kind for c in candidates)
                for c in candidates:
                    state.candidates.setdefault(c.result.route.key, []).append(ls)
            for gw in state.gateways.values():
                for ls in gw.listeners:
                    for hr in ls.http_routes:
                        state.served[(key_of(hr), id(ls))] = hr
                # now, not at the first patch: a user's first change after a start does
                # not wait for the indexes of thousands of routes (12 ms at 3000)
                if gw.key in state.translation.gateways:
                    state.indexes[gw.key] = GatewayIndex(gw, state.translation.gateways[gw.key].xds)
        self.state = state

    def patch(self, snapshot: Snapshot) -> Translation | None:
        """The translation of `snapshot` made by patching the kept one; None when a
        condition of the module docstring does not hold (the pipeline runs)."""
        state = self.state
        if state is None or not state.patchable:
            return None
        changed = changed_keys(state, snapshot)
        if changed is None:
            return None
        slices = sorted(k for k in changed if k.kind == SLICE_KIND)
        routes = sorted(k for k in changed if k.kind != SLICE_KIND)
        out = patch_slices(state, snapshot, slices) if slices else None
        if not slices or (out is not None and routes):
            out = Patch(state, snapshot, routes).apply()  # after the slices': on their clusters
        if out is None:
            self.state = None  # a patch given up half-way may have changed the state
        else:
            self.patches += 1
        return out


def changed_keys(state: State, snapshot: Snapshot) -> set[ObjectKey] | None:
    """The routes changed since the kept translation; None if anything else changed."""
    before = state.snapshot
    if (snapshot.placements != before.placements or snapshot.controller_name != before.controller_name
            or snapshot.discovered != before.discovered):
        return None
    if snapshot.changes is not None and state.revision is not None and snapshot.changes[0] == state.revision:
        keys = set(snapshot.changes[1])
    else:  # no change log: compare (the store keeps unchanged objects identical)
        old, new = before.objects, snapshot.objects
        keys = {k for k, v in new.items() if old.get(k) is not v} | {k for k in old if k not in new}
    # routes that entered or left quarantine (`Snapshot.quarantined`) are changed too
    held, was = snapshot.quarantined, before.quarantined
    keys |= {k for k in held.keys() | was.keys() if held.get(k) != was.get(k)}
    if any(k.kind not in MEMO_KINDS and k.kind != SLICE_KIND for k in keys):
        return None
    return keys


def patch_slices(state: State, snapshot: Snapshot, keys: list[ObjectKey]) -> Translation | None:
    """The kept translation with the clusters of the Services whose EndpointSlices
    changed given their new endpoints (`Backends.endpoints`: the pipeline's selection);
    None when that would not be the pipeline's output (see the module docstring)."""
    ctx, backends, before = state.ctx, state.backends, state.snapshot.objects
    services = {(k.namespace, name) for k in keys for obj in (before.get(k), snapshot.objects.get(k))
                if isinstance(obj, EndpointSlice) and (name := service_of(obj)) is not None}
    if API_SERVER_SERVICE in services:  # its addresses are refused to every backend (guardrails)
        return None
    if any(name not in backends.origins for name in backends.clusters):  # UDPRoute clusters merge endpoints
        return None
    ports = [(svc, port) for ns, name in sorted(services)
             if (svc := ctx.get(Service, "Service", ns, name)) is not None and svc.spec.type != "ExternalName"
             for port in svc.spec.ports]
    old = [backends.endpoints(svc, port) for svc, port in ports]
    ctx.advance(snapshot, keys)
    endpoints: dict[tuple[str, str, str], tuple[ir.Endpoint, ...]] = {}
    for (svc, port), was in zip(ports, old, strict=True):
        now = backends.endpoints(svc, port)
        # the first port of a number, as `Backends.resolve` picks it
        endpoints.setdefault((svc.namespace, svc.name, str(port.port)), now)
        # an endpoint refused to a route (a control port, the API server, metadata) coming or
        # going changes that route's ResolvedRefs and whether it has the cluster at all
        if any(not plain(backends, svc, e) for e in set(was) ^ set(now)):
            return None
    clusters: dict[str, ir.Cluster] = {}
    for name, (ns, service, _) in backends.origins.items():
        cluster = backends.clusters.get(name)
        prefix = f"{ns}/{service}/"
        if cluster is None or (ns, service) not in services or cluster.dns or not name.startswith(prefix):
            continue  # not a Service's, or an ExternalName Service's (resolved by DNS)
        if cluster.tls is not None or cluster.fallback is not None:
            return None  # variants of a BackendTLSPolicy or a fallback: not under a patchable state
        selected = endpoints.get((ns, service, name[len(prefix):].split("/", 1)[0]))
        if selected is None:
            return None
        if selected != cluster.endpoints:
            clusters[name] = backends.clusters[name] = replace(cluster, endpoints=selected)
    remember(backends.memo, snapshot, keys, clusters)
    gateways = dict(state.translation.gateways)
    for key, out in gateways.items():
        if any(c.name in clusters for c in out.xds.clusters):
            gateways[key] = replace(out, xds=replace(out.xds, clusters=tuple(
                clusters.get(c.name, c) for c in out.xds.clusters)))
    translation = Translation(gateways, dict(state.translation.statuses), frozenset(), state.translation.issuers)
    state.snapshot, state.translation, state.revision = snapshot, translation, snapshot.revision
    return translation


def plain(backends: Backends, svc: Service, endpoint: ir.Endpoint) -> bool:
    """Whether no rule refuses `endpoint` of `svc` to any route (`Backends.refused`: a
    Service's endpoints are the platform's, so only these two may refuse them)."""
    return (reserved_problem(endpoint, backends.access.reserved) is None
            and backends.guardrails.category("Service", svc.namespace, svc.name, endpoint) is None)


def remember(memo: RuleMemo | None, snapshot: Snapshot, keys: list[ObjectKey], clusters: dict[str, ir.Cluster]
             ) -> None:
    """The memo's world and kept clusters as the pipeline would have them after this change:
    a later pipeline run reusing its rules registers the new clusters, not the old."""
    if memo is None:
        return
    for key in keys:
        obj = snapshot.objects.get(key)
        if obj is None:
            memo.world.pop(key, None)
        else:
            memo.world[key] = obj
    if clusters:
        for kept in memo.current.values():
            recorded = kept[2]
            for i, (cluster, origin) in enumerate(recorded):
                if cluster.name in clusters:
                    recorded[i] = (clusters[cluster.name], origin)


class Patch:
    """One patch: the changed routes out of the kept state, their new versions in."""

    def __init__(self, state: State, snapshot: Snapshot, changed: list[ObjectKey]) -> None:
        self.state = state
        self.snapshot = snapshot
        self.changed = changed
        self.touched: dict[ObjectKey, GatewayState] = {}  # Gateways whose listeners changed

    def apply(self) -> Translation | None:
        state, snapshot = self.state, self.snapshot
        state.ctx.advance(snapshot, self.changed)
        memo = state.backends.memo
        if memo is not None:
            memo.previous = memo.current  # unchanged routes stay; changed ones are new objects
        before = len(state.backends.clusters)
        news: dict[ObjectKey, RouteResult | None] = {}
        for key in self.changed:
            obj = snapshot.objects.get(key)
            news[key] = self.translate(obj) if obj is not None else None
            if memo is not None and obj is None:
                memo.current.pop(key, None)
        if not self.unmixed(news) or any(self.unprogrammable(key, new) for key, new in news.items()):
            return None
        for key, new in news.items():
            self.unbind(key)
            if new is not None and not self.bind(key, new):
                return None
        return self.output(news, grew=len(state.backends.clusters) != before)

    def translate(self, obj: Resource) -> RouteResult | None:
        state = self.state
        if isinstance(obj, HTTPRoute):
            return translate_route(state.ctx, state.gateways, state.backends, state.policies, obj,
                                   httproute.translate_rule, httproute.entries_of)
        assert isinstance(obj, GRPCRoute)
        return translate_route(state.ctx, state.gateways, state.backends, state.policies, obj,
                               grpcroute.translate_rule, grpcroute.entries_of)

    def unmixed(self, news: dict[ObjectKey, RouteResult | None]) -> bool:
        """No listener reached, before or after, holds candidates of two route kinds."""
        kinds = self.state.kinds
        after: dict[int, Counter[str]] = {}
        for key, new in news.items():
            for ls in self.state.candidates.get(key, []):
                after.setdefault(id(ls), Counter(kinds.get(id(ls), {})))[key.kind] -= 1
            for ls, _ in candidates_of(new) if new is not None else []:
                after.setdefault(id(ls), Counter(kinds.get(id(ls), {})))[key.kind] += 1
        for lid, counts in after.items():
            if len(+Counter(kinds.get(lid, {}))) > 1 or len(+counts) > 1:
                return False
        for lid, counts in after.items():
            kinds[lid] = +counts
        return True

    def unprogrammable(self, key: ObjectKey, new: RouteResult | None) -> bool:
        """The route was or is attached without anything to program (every rule dropped): it
        counts in attachedRoutes all the same, which `bind_routes` does (the pipeline runs)."""
        old = self.state.results.get(key)
        return (new is not None and new.entries is None) or (old is not None and old.entries is None)

    def unbind(self, key: ObjectKey) -> None:
        """The kept route leaves its listeners (on an unmixed listener it was accepted)."""
        state = self.state
        state.results.pop(key, None)
        for ls in state.candidates.pop(key, []):
            index = self.index(ls)  # first: a new index reads the listener as kept
            hr = state.served.pop((key, id(ls)))
            at = next(i for i, x in enumerate(ls.http_routes) if x is hr)
            del ls.http_routes[at]
            ls.attached_routes -= 1
            index.count(hr, -1, ls)
            for table, place in index.places.get(id(ls), []):
                table.remove(place, hr, ls)

    def bind(self, key: ObjectKey, new: RouteResult) -> bool:
        """The new route joins its listeners (accepted: no rival kind there); False when
        it brings a secret (a cluster with a client certificate)."""
        state = self.state
        state.results[key] = new
        for ls, candidate in candidates_of(new):
            assert new.entries is not None
            hr = HostRoutes(candidate.hostnames, new.entries(ls), key, candidate.order)
            if any(self.has_secret(name) for e in hr.entries for name in ir.route_clusters(e.route)):
                return False
            index = self.index(ls)  # first: a new index reads the listener as kept
            ls.http_routes.append(hr)
            ls.attached_routes += 1
            state.served[(key, id(ls))] = hr
            state.candidates.setdefault(key, []).append(ls)
            index.count(hr, 1, ls)
            for table, place in index.places.get(id(ls), []):
                table.add(place, hr, ls)
        return True

    def has_secret(self, name: str) -> bool:
        cluster = self.state.backends.clusters.get(name)
        return cluster is not None and cluster.tls is not None and cluster.tls.client_cert_secret is not None

    def index(self, ls: ListenerState) -> GatewayIndex:
        gw = self.state.gateways[ls.gateway.key]
        self.touched[gw.key] = gw
        found = self.state.indexes.get(gw.key)
        if found is None:
            found = self.state.indexes[gw.key] = GatewayIndex(gw, self.state.translation.gateways[gw.key].xds)
        return found

    def output(self, news: dict[ObjectKey, RouteResult | None], grew: bool) -> Translation:
        state, controller = self.state, self.snapshot.controller_name
        before = state.translation
        statuses = dict(before.statuses)
        gateways = dict(before.gateways)
        changes = set(self.changed)
        for key, new in news.items():
            if new is None:
                statuses.pop(key, None)
            else:
                statuses[key] = route_status(new.route, new.parents, new.conds, controller)
        for key, gw in self.touched.items():
            index = state.indexes[key]
            gateways[key] = replace(gateways[key], xds=patched_ir(gateways[key].xds, index, state.backends, grew))
            statuses[key] = gateway_status(gw)
            changes.add(key)
            for lset in state.listener_sets:
                if lset.gateway is gw:
                    statuses[lset.key] = listenerset_status(lset)
                    changes.add(lset.key)
        out = Translation(gateways, statuses, frozenset(changes), state.translation.issuers)
        state.snapshot, state.translation, state.revision = self.snapshot, out, self.snapshot.revision
        return out


def patched_ir(xds: ir.IR, index: GatewayIndex, backends: Backends, grew: bool) -> ir.IR:
    """The Gateway's IR with its touched route configurations and clusters in use."""
    configs = {name: table.refresh() for name, table in index.tables.items() if table.touched}
    listeners = tuple(patched_listener(li, configs) for li in xds.listeners) if configs else xds.listeners
    clusters = xds.clusters
    if index.settle() or grew:
        clusters = tuple(backends.clusters[n] for n in index.names if n in backends.clusters)
    return replace(xds, listeners=listeners, clusters=clusters)


def patched_listener(li: ir.Listener, configs: dict[str, tuple[ir.VirtualHost, ...]]) -> ir.Listener:
    if not any(c.http is not None and c.http.route_config_name in configs for c in li.filter_chains):
        return li
    chains = tuple(replace(c, http=replace(c.http, virtual_hosts=configs[c.http.route_config_name]))
                   if c.http is not None and c.http.route_config_name in configs else c
                   for c in li.filter_chains)
    return replace(li, filter_chains=chains)
