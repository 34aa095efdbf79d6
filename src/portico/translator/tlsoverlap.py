"""ListenerConditionOverlappingTLSConfig (Gateway API, GEP-3567).

HTTPS listeners on one port whose hostnames overlap (one covers a name the other
serves, or one has no hostname) invite HTTP/2 connection coalescing: a client reuses
a connection made for one listener's certificate for a host of the other. The spec:
controllers MUST detect overlapping hostnames and MAY detect overlapping
certificates; the condition MUST be set on every listener involved, with reason
OverlappingCertificates when both hold; it is negative polarity (never set False).

Portico keeps serving such listeners: a request that reaches the wrong listener
over a coalesced connection is answered 421 Misdirected Request (`build`), which
makes clients open a new connection. The condition says why that can happen.
"""

from __future__ import annotations

import functools
from collections import defaultdict

from portico.translator import hostnames
from portico.translator.conditions import Cond
from portico.translator.gateway import GatewayState, ListenerState

CONDITION = "OverlappingTLSConfig"


def overlap(a: str | None, b: str | None) -> bool:
    """Can one request host belong to both (a missing hostname matches every host)?"""
    if not a or not b:
        return True
    return hostnames.matches(a, b) or hostnames.matches(b, a)


@functools.lru_cache(maxsize=1024)
def dns_names(cert_pem: str) -> tuple[str, ...]:
    """The DNS subject alternative names of the first certificate of a chain."""
    from cryptography import x509  # (here: a configuration without TLS never loads it)

    try:
        cert = x509.load_pem_x509_certificates(cert_pem.encode())[0]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, IndexError, x509.ExtensionNotFound):
        return ()
    return tuple(san.value.get_values_for_type(x509.DNSName))


def certificate_overlap(a: ListenerState, b: ListenerState) -> tuple[str, str] | None:
    """A pair of overlapping SANs of the two listeners' certificates, if any."""
    for ca in a.certificates:
        for cb in b.certificates:
            for x in dns_names(ca.cert_pem):
                for y in dns_names(cb.cert_pem):
                    if overlap(x, y):
                        return x, y
    return None


def mark_overlapping_tls(gw: GatewayState) -> None:
    """Set OverlappingTLSConfig on the Gateway's accepted HTTPS listeners (its own and
    its ListenerSets') that overlap another on the same port."""
    by_port: dict[int, list[ListenerState]] = defaultdict(list)
    for ls in gw.listeners:
        if ls.protocol == "HTTPS" and ls.accepted:
            by_port[ls.port].append(ls)
    found: dict[int, Cond] = {}  # id(listener) -> its condition
    for group in by_port.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                for one, other in ((a, b), (b, a)):
                    cond = overlap_condition(one, other)
                    if cond is not None and (id(one) not in found or cond.reason == "OverlappingCertificates"
                                             and found[id(one)].reason != cond.reason):
                        found[id(one)] = cond
    for ls in gw.listeners:
        if id(ls) in found:
            ls.conds.append(found[id(ls)])


def overlap_condition(ls: ListenerState, other: ListenerState) -> Cond | None:
    sans = certificate_overlap(ls, other)
    if sans is not None:
        return Cond(CONDITION, True, "OverlappingCertificates",
                    f"certificate name {sans[0]} overlaps {sans[1]} of listener {other.qualified_name}; "
                    "requests coalesced onto the wrong connection are answered 421")
    if overlap(ls.spec.hostname, other.spec.hostname):
        mine, theirs = ls.spec.hostname or "(any)", other.spec.hostname or "(any)"
        return Cond(CONDITION, True, "OverlappingHostnames",
                    f"hostname {mine} overlaps {theirs} of listener {other.qualified_name}; "
                    "requests coalesced onto the wrong connection are answered 421")
    return None
