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
from dataclasses import dataclass, replace

from portico import ir
from portico.objects import ObjectKey
from portico.translator import hostnames
from portico.translator.gateway import PORT_FAMILY, GatewayState, ListenerState, socket_name
from portico.translator.listenerpolicy import ListenerPolicies
from portico.translator.policies import RoutePolicies


def build_listeners(gw: GatewayState, policies: RoutePolicies) -> list[ir.Listener]:
    if gw.address is None or not gw.programmable:
        return []
    lp = ListenerPolicies(policies, gw)
    by_port: dict[tuple[int, str], list[ListenerState]] = defaultdict(list)
    for ls in gw.listeners:
        if ls.ready:
            by_port[(ls.port, "udp" if ls.protocol == "UDP" else "tcp")].append(ls)
    out = []
    for (port, transport), group in sorted(by_port.items()):
        group.sort(key=lambda ls: hostnames.specificity(ls.spec.hostname))
        name = socket_name(gw.address, port, group[0].protocol)
        if transport == "udp":
            out.append(ir.Listener(name, gw.address, port, "udp", udp_backends=l4_backends(group[0])))
            continue
        chains = filter_chains(gw, port, group, lp)
        if not chains:
            continue
        quic = http3_listener(gw, port, group, chains, udp_taken={p for p, t in by_port if t == "udp"})
        if quic is not None:
            chains = [replace(c, http=replace(c.http, alt_svc=quic.alt_svc)) if c.client.http3 and c.http else c
                      for c in chains]
            out.append(quic.listener)
        out.append(ir.Listener(name, gw.address, port, "tcp", tuple(chains), proxy_protocol=lp.proxy_protocol(group)))
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


def filter_chains(gw: GatewayState, port: int, group: list[ListenerState],
                  lp: ListenerPolicies) -> list[ir.FilterChain]:
    """The chains of a port, each with the ClientTrafficPolicy and RateLimitPolicy of
    the listeners it serves (listenerpolicy)."""
    family = PORT_FAMILY[group[0].protocol]
    prefix = f"{gw.gateway.namespace}/{gw.gateway.name}"
    if family == "http":
        rc = f"{prefix}/{port}"
        return [lp.chain(ir.FilterChain(rc, http=ir.HTTPConfig(rc, virtual_hosts(group))), group)]
    if family == "tcp":
        chain = ir.FilterChain(f"{prefix}/{group[0].qualified_name}", tcp=ir.TCPConfig(l4_backends(group[0])))
        return [lp.chain(chain, group[:1])]
    chains: list[ir.FilterChain] = []
    for ls in group:
        name = f"{prefix}/{ls.qualified_name}"  # ListenerSet listener names may repeat
        if ls.protocol == "HTTPS":
            chains.append(lp.chain(https_chain(name, ls, [o for o in group if o.protocol == "HTTPS"]), [ls]))
        else:
            chains += [lp.chain(c, [ls]) for c in tls_chains(name, ls, group)]
    return chains


def https_chain(name: str, ls: ListenerState, peers: list[ListenerState]) -> ir.FilterChain:
    """An HTTPS listener: its SNI, certificates, client validation and virtual
    hosts, plus the 421 answers for Hosts that belong to its peers on the port."""
    sni = (ls.spec.hostname,) if ls.spec.hostname else ()
    tls = ir.DownstreamTLS(tuple(ls.certificates), ls.client_validation)
    own = virtual_hosts([ls], peers)
    misdirected = misdirected_hosts(ls, peers, {d for vh in own for d in vh.domains})
    # Another listener without hostname serves every other Host: 421 for all of them.
    catch_all_peer = bool(ls.spec.hostname) and any(not o.spec.hostname for o in peers if o is not ls)
    return ir.FilterChain(name, sni, tls, http=ir.HTTPConfig(name, own + misdirected, catch_all_peer))


def misdirected_hosts(ls: ListenerState, peers: list[ListenerState], own: set[str]) -> tuple[ir.VirtualHost, ...]:
    """Virtual hosts answering 421 for the hostnames of the other HTTPS listeners
    on the port (the Host belongs to another listener than the SNI chose)."""
    names = sorted({o.spec.hostname.lower() for o in peers if o is not ls and o.spec.hostname} - own,
                   key=hostnames.specificity)
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


def virtual_hosts(group: list[ListenerState], peers: list[ListenerState] | None = None) -> tuple[ir.VirtualHost, ...]:
    """Virtual hosts of listeners sharing a route configuration. A hostname that
    a more specific listener (of the group, or of `peers`) also covers belongs
    to that listener only (listener isolation: a request is served by the most
    specific matching listener)."""
    peers = group if peers is None else peers
    domains: dict[str, list[object]] = {}
    entries: dict[str, list[tuple[tuple[object, ...], ir.Route]]] = defaultdict(list)
    for ls in group:
        domains.setdefault((ls.spec.hostname or "*").lower(), [])
        for hr in ls.http_routes:
            for h in hr.hostnames:
                if shadowed(h, ls, peers):
                    continue
                domains.setdefault(h, [])
                entries[h] += [(e.precedence, e.route) for e in hr.entries]
    return tuple(
        ir.VirtualHost(domain, (domain,), tuple(r for _, r in sorted(entries[domain], key=lambda e: e[0])))
        for domain in sorted(domains, key=hostnames.specificity)
    )


def shadowed(host: str, ls: ListenerState, group: list[ListenerState]) -> bool:
    mine = hostnames.specificity(ls.spec.hostname)
    return any(o is not ls and o.spec.hostname and hostnames.specificity(o.spec.hostname) < mine
               and hostnames.matches(o.spec.hostname, host) for o in group)
