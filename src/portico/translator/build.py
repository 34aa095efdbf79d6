"""Gateway states with their attached routes → IR listeners.

One IR listener per (address, port, transport). HTTP listeners on a port share
one route configuration whose virtual hosts are the listeners' and routes'
hostnames; HTTPS and TLS listeners get one filter chain each, chosen by SNI.

HTTPS misdirected requests (Listener.hostname): a Host that the SNI-selected
listener does not serve, but another HTTPS listener on the port serves (or
serves more specifically), answers 421; a Host no listener serves, 404.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Sequence
from dataclasses import dataclass, replace

from portico import ir
from portico.objects import ObjectKey
from portico.translator import hostnames
from portico.translator.gateway import PORT_FAMILY, GatewayState, ListenerState, socket_name
from portico.translator.policies import Policies


def build_listeners(gw: GatewayState, policies: Policies) -> list[ir.Listener]:
    if gw.address is None or not gw.programmable:
        return []
    by_port = port_groups(gw)
    out = []
    for (port, transport), group in sorted(by_port.items()):
        name = socket_name(gw.address, port, group[0].protocol)
        if transport == "udp":
            out.append(ir.Listener(name, gw.address, port, "udp", udp_backends=l4_backends(group[0])))
            continue
        chains = filter_chains(gw, port, group, policies)
        if not chains:
            continue
        quic = http3_listener(gw, port, group, chains, udp_taken={p for p, t in by_port if t == "udp"})
        if quic is not None:
            chains = [replace(c, http=replace(c.http, alt_svc=quic.alt_svc)) if c.client.http3 and c.http else c
                      for c in chains]
            out.append(quic.listener)
        out.append(policies.on_port(ir.Listener(name, gw.address, port, "tcp", tuple(chains)), gw.key, group))
    return out


@dataclass(frozen=True)
class QUIC:
    listener: ir.Listener
    alt_svc: str


def http3_listener(gw: GatewayState, port: int, group: list[ListenerState], chains: list[ir.FilterChain],
                   udp_taken: set[int]) -> QUIC | None:
    """ClientTrafficPolicy http3: the port's HTTPS chains (certificates, SNI, routes) also
    on a UDP socket speaking QUIC, advertised to clients by Alt-Svc on the TCP answers with
    the port they reach. Not where a UDP listener of the Gateway binds the port already."""
    h3 = tuple(c for c in chains if c.client.http3 and c.tls is not None and c.http is not None)
    if not h3 or port in udp_taken or gw.address is None:
        return None
    reached = port if gw.placement.bind_address_reachable else group[0].spec.port
    alt_svc = f'h3=":{reached}"; ma=86400'
    h3 = tuple(replace(c, http=replace(c.http, alt_svc=alt_svc)) if c.http else c for c in h3)
    return QUIC(ir.Listener(f"{gw.address}:{port}/quic", gw.address, port, "udp", h3, quic=True), alt_svc)


def served_listeners(gw: GatewayState, listener_set: ObjectKey | None) -> tuple[str, ...]:
    """What Envoy must hold before a Gateway (listener_set None) or one of its
    ListenerSets is Programmed: its ready listeners as bound on the Gateway's address."""
    if gw.address is None or not gw.programmable:
        return ()
    return tuple(sorted(f"{gw.address}:{ls.port}/{ls.protocol}/{ls.spec.hostname or '*'}/{ls.qualified_name}"
                        for ls in gw.listeners if ls.ready
                        and (ls.listener_set.key if ls.listener_set else None) == listener_set))


@dataclass(frozen=True)
class RouteTable:
    """One route configuration: the listeners whose routes it serves (`group`, most
    specific first) and the listeners that may shadow their hostnames (`peers`). HTTP
    listeners on a port share one; each HTTPS listener has its own (its SNI chain)."""

    name: str
    group: tuple[ListenerState, ...]
    peers: tuple[ListenerState, ...]
    https: bool = False


def route_tables(gw: GatewayState) -> list[RouteTable]:
    """The route configurations `build_listeners` makes for the Gateway's HTTP and HTTPS
    listeners (the incremental path updates exactly these)."""
    if gw.address is None or not gw.programmable:
        return []
    prefix = f"{gw.gateway.namespace}/{gw.gateway.name}"
    out = []
    for (_, transport), group in sorted(port_groups(gw).items()):
        family = PORT_FAMILY[group[0].protocol]
        if transport == "udp" or family == "tcp":
            continue
        if family == "http":
            out.append(RouteTable(f"{prefix}/{group[0].port}", tuple(group), tuple(group)))
            continue
        peers = tuple(o for o in group if o.protocol == "HTTPS")
        out += [RouteTable(f"{prefix}/{ls.qualified_name}", (ls,), peers, https=True) for ls in peers]
    return out


def port_groups(gw: GatewayState) -> dict[tuple[int, str], list[ListenerState]]:
    """Ready listeners by (bound port, transport), most specific hostname first."""
    by_port: dict[tuple[int, str], list[ListenerState]] = defaultdict(list)
    for ls in gw.listeners:
        if ls.ready:
            by_port[(ls.port, "udp" if ls.protocol == "UDP" else "tcp")].append(ls)
    for group in by_port.values():
        group.sort(key=lambda ls: hostnames.specificity(ls.spec.hostname))
    return by_port


def filter_chains(gw: GatewayState, port: int, group: list[ListenerState],
                  policies: Policies) -> list[ir.FilterChain]:
    """The chains of a port, each with the policies of the listeners it serves
    (ClientTrafficPolicy, RateLimitPolicy: `Policies.on_chain`)."""
    family = PORT_FAMILY[group[0].protocol]
    prefix = f"{gw.gateway.namespace}/{gw.gateway.name}"
    key = gw.key
    if family == "http":
        rc = f"{prefix}/{port}"
        return [policies.on_chain(ir.FilterChain(rc, http=ir.HTTPConfig(rc, virtual_hosts(group))), key, group)]
    if family == "tcp":
        chain = ir.FilterChain(f"{prefix}/{group[0].qualified_name}", tcp=ir.TCPConfig(l4_backends(group[0])))
        return [policies.on_chain(chain, key, group[:1])]
    chains: list[ir.FilterChain] = []
    for ls in group:
        name = f"{prefix}/{ls.qualified_name}"  # ListenerSet listener names may repeat
        if ls.protocol == "HTTPS":
            chain = https_chain(name, ls, [o for o in group if o.protocol == "HTTPS"])
            chains.append(policies.on_chain(chain, key, [ls]))
        else:
            chains += [policies.on_chain(c, key, [ls]) for c in tls_chains(name, ls, group)]
    return chains


def https_chain(name: str, ls: ListenerState, peers: list[ListenerState]) -> ir.FilterChain:
    """An HTTPS listener: its SNI, certificates, client validation and virtual
    hosts, plus the 421 answers for Hosts that belong to its peers on the port."""
    sni = (ls.spec.hostname,) if ls.spec.hostname else ()
    tls = ir.DownstreamTLS(tuple(ls.certificates), ls.client_validation)
    own = virtual_hosts([ls], peers)
    misdirected = misdirected_hosts(ls, peers, {d for vh in own for d in vh.domains})
    return ir.FilterChain(name, sni, tls, http=ir.HTTPConfig(name, own + misdirected, catch_all_peer(ls, peers)))


def catch_all_peer(ls: ListenerState, peers: Sequence[ListenerState]) -> bool:
    """Another listener without hostname serves every other Host: 421 for all of them."""
    return bool(ls.spec.hostname) and any(not o.spec.hostname for o in peers if o is not ls)


def misdirected_hosts(ls: ListenerState, peers: Sequence[ListenerState],
                      own: Container[str]) -> tuple[ir.VirtualHost, ...]:
    """Virtual hosts answering 421 for the hostnames of the other HTTPS listeners
    on the port (the Host belongs to another listener than the SNI chose)."""
    names = sorted({h for o in peers if o is not ls and o.spec.hostname
                    if (h := o.spec.hostname.lower()) not in own}, key=domain_order)
    action = ir.RouteAction(direct_status=421)
    return tuple(ir.VirtualHost(f"misdirected/{h}", (h,), (ir.Route(f"misdirected/{h}", ir.RouteMatch(), action),))
                 for h in names)


def tls_chains(name: str, ls: ListenerState, group: list[ListenerState]) -> list[ir.FilterChain]:
    """TLS listeners: one chain per SNI hostname of the attached TLSRoutes; the
    oldest route wins a hostname claimed twice (route precedence), and a more
    specific listener on the port wins a hostname it covers (listener isolation)."""
    claimed: dict[str, tuple[ir.WeightedBackend, ...]] = {}
    for r in sorted(ls.l4_routes, key=lambda r: r.precedence):
        for h in r.hostnames:
            if not shadowed(h, ls, group):
                claimed.setdefault(h, r.backends)
    tls = ir.DownstreamTLS(tuple(ls.certificates), alpn=()) if ls.tls_mode == "Terminate" else None
    return [ir.FilterChain(f"{name}/{h}", () if h == "*" else (h,), tls, tcp=ir.TCPConfig(backends))
            for h, backends in sorted(claimed.items(), key=lambda kv: hostnames.specificity(kv[0]))]


def l4_backends(ls: ListenerState) -> tuple[ir.WeightedBackend, ...]:
    """TCP/UDP listeners serve one route: the oldest attached (route precedence)."""
    if not ls.l4_routes:
        return ()
    return min(ls.l4_routes, key=lambda r: r.precedence).backends


def virtual_hosts(group: Sequence[ListenerState], peers: Sequence[ListenerState] | None = None
                  ) -> tuple[ir.VirtualHost, ...]:
    """Virtual hosts of listeners sharing a route configuration. A hostname that
    a more specific listener (of the group, or of `peers`) also covers belongs
    to that listener only (listener isolation: a request is served by the most
    specific matching listener)."""
    peers = group if peers is None else peers
    entries: dict[str, list[tuple[tuple[object, ...], ir.Route]]] = {}
    for ls in group:
        entries.setdefault(listener_domain(ls), [])
        for hr in ls.http_routes:
            for h in served_hostnames(hr.hostnames, ls, peers):
                entries.setdefault(h, []).extend((e.precedence, e.route) for e in hr.entries)
    return tuple(virtual_host(domain, entries[domain]) for domain in sorted(entries, key=domain_order))


def listener_domain(ls: ListenerState) -> str:
    """Every listener has a virtual host of its own hostname, routes or not (a 404 there)."""
    return (ls.spec.hostname or "*").lower()


def served_hostnames(names: list[str], ls: ListenerState, peers: Sequence[ListenerState]) -> list[str]:
    """A route's hostnames on `ls` that no more specific peer listener covers."""
    return [h for h in names if not shadowed(h, ls, peers)]


def domain_order(domain: str) -> tuple[tuple[int, int], str]:
    """Virtual hosts most specific first, then by name (Envoy picks a domain by its own
    rules whatever the order; a total order keeps configurations comparable)."""
    return hostnames.specificity(domain), domain


def virtual_host(domain: str, entries: list[tuple[tuple[object, ...], ir.Route]]) -> ir.VirtualHost:
    """A domain's routes by HTTPRoute precedence (stable: ties keep route order)."""
    return ir.VirtualHost(domain, (domain,), tuple(r for _, r in sorted(entries, key=lambda e: e[0])))


def shadowed(host: str, ls: ListenerState, group: Sequence[ListenerState]) -> bool:
    mine = hostnames.specificity(ls.spec.hostname)
    return any(o is not ls and o.spec.hostname and hostnames.specificity(o.spec.hostname) < mine
               and hostnames.matches(o.spec.hostname, host) for o in group)
