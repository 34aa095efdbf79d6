"""Gateway states with their attached routes → IR listeners.

One IR listener per (address, port, transport). HTTP listeners on a port share
one route configuration whose virtual hosts are the listeners' and routes'
hostnames; HTTPS and TLS listeners get one filter chain each, chosen by SNI.
"""

from __future__ import annotations

from collections import defaultdict

from portico import ir
from portico.translator import hostnames
from portico.translator.gateway import PORT_FAMILY, GatewayState, ListenerState


def build_listeners(gw: GatewayState) -> list[ir.Listener]:
    if gw.address is None or not gw.accepted:
        return []
    by_port: dict[tuple[int, str], list[ListenerState]] = defaultdict(list)
    for ls in gw.listeners:
        if ls.ready:
            by_port[(ls.port, "udp" if ls.protocol == "UDP" else "tcp")].append(ls)
    out = []
    for (port, transport), group in sorted(by_port.items()):
        group.sort(key=lambda ls: hostnames.specificity(ls.spec.hostname))
        name = f"{gw.address}:{port}/{transport}"
        if transport == "udp":
            out.append(ir.Listener(name, gw.address, port, "udp", udp_backends=l4_backends(group[0])))
            continue
        chains = filter_chains(gw, port, group)
        if chains:
            out.append(ir.Listener(name, gw.address, port, "tcp", tuple(chains)))
    return out


def filter_chains(gw: GatewayState, port: int, group: list[ListenerState]) -> list[ir.FilterChain]:
    family = PORT_FAMILY[group[0].protocol]
    prefix = f"{gw.gateway.namespace}/{gw.gateway.name}"
    if family == "http":
        rc = f"{prefix}/{port}"
        return [ir.FilterChain(rc, http=ir.HTTPConfig(rc, virtual_hosts(group)))]
    if family == "tcp":
        return [ir.FilterChain(f"{prefix}/{group[0].qualified_name}", tcp=ir.TCPConfig(l4_backends(group[0])))]
    chains: list[ir.FilterChain] = []
    for ls in group:
        sni = (ls.spec.hostname,) if ls.spec.hostname else ()
        name = f"{prefix}/{ls.qualified_name}"  # ListenerSet listener names may repeat
        if ls.protocol == "HTTPS":
            chains.append(ir.FilterChain(name, sni, ir.DownstreamTLS(tuple(ls.certificates)),
                                         http=ir.HTTPConfig(name, virtual_hosts([ls]))))
        else:
            chains += tls_chains(name, ls)
    return chains


def tls_chains(name: str, ls: ListenerState) -> list[ir.FilterChain]:
    """TLS listeners: one chain per SNI hostname of the attached TLSRoutes; the
    oldest route wins a hostname claimed twice (route precedence)."""
    claimed: dict[str, tuple[ir.WeightedBackend, ...]] = {}
    for r in sorted(ls.l4_routes, key=lambda r: r.precedence):
        for h in r.hostnames:
            claimed.setdefault(h, r.backends)
    tls = ir.DownstreamTLS(tuple(ls.certificates), alpn=()) if ls.tls_mode == "Terminate" else None
    return [ir.FilterChain(f"{name}/{h}", () if h == "*" else (h,), tls, tcp=ir.TCPConfig(backends))
            for h, backends in sorted(claimed.items(), key=lambda kv: hostnames.specificity(kv[0]))]


def l4_backends(ls: ListenerState) -> tuple[ir.WeightedBackend, ...]:
    """TCP/UDP listeners serve one route: the oldest attached (route precedence)."""
    if not ls.l4_routes:
        return ()
    return min(ls.l4_routes, key=lambda r: r.precedence).backends


def virtual_hosts(group: list[ListenerState]) -> tuple[ir.VirtualHost, ...]:
    """Virtual hosts of listeners sharing a route configuration. A hostname that
    a more specific listener also covers belongs to that listener only (listener
    isolation: a request is served by the most specific matching listener)."""
    domains: dict[str, list[object]] = {}
    entries: dict[str, list[tuple[tuple[object, ...], ir.Route]]] = defaultdict(list)
    for ls in group:
        domains.setdefault((ls.spec.hostname or "*").lower(), [])
        for hr in ls.http_routes:
            for h in hr.hostnames:
                if shadowed(h, ls, group):
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
