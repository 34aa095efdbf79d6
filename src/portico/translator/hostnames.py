"""Hostname matching between listeners and routes (Gateway API Hostname rules).

A hostname is a DNS name, optionally with a leading "*." wildcard label that
matches one or more labels ("*.example.com" matches "a.b.example.com", not
"example.com").
"""

from __future__ import annotations


def _wild(h: str) -> bool:
    return h.startswith("*.")


def matches(pattern: str, host: str) -> bool:
    """Does `pattern` (listener hostname) cover the concrete or wildcard `host`?"""
    pattern, host = pattern.lower(), host.lower()
    if not _wild(pattern):
        return pattern == host
    suffix = pattern[1:]  # ".example.com"
    if _wild(host):
        return host[1:].endswith(suffix)
    return host.endswith(suffix) and len(host) > len(suffix)


def intersect(listener: str | None, route: list[str]) -> list[str]:
    """Hostnames a route serves on a listener (HTTPRoute spec.hostnames rules).

    No listener hostname: the route's own (or "*"). No route hostnames: the
    listener's. Otherwise each route hostname that matches the listener, or the
    listener hostname when a route wildcard is wider than it.
    """
    if not route:
        return [listener or "*"]
    if not listener:
        return list(dict.fromkeys(h.lower() for h in route))
    out: list[str] = []
    for h in route:
        if matches(listener, h):
            out.append(h.lower())
        elif matches(h, listener):
            out.append(listener.lower())
    return list(dict.fromkeys(out))


def specificity(hostname: str | None) -> tuple[int, int]:
    """Sort key, most specific first: exact names, then wildcards by length, then none."""
    if not hostname or hostname == "*":
        return (2, 0)
    if _wild(hostname):
        return (1, -len(hostname))
    return (0, -len(hostname))
