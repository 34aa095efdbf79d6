"""Route rule sessionPersistence (HTTPRouteRule, GRPCRouteRule) → IR session persistence.

Cookie: the cookie named by `cookie.name`, or a generated name unique to the
rule ("If not specified, a unique cookie name SHOULD be generated"), with path
`cookie.path` (default "/"). A Permanent cookie lives `absoluteTimeout`; a
Session cookie has no Max-Age. Header: the header named by `header.name`.
"""

from __future__ import annotations

import hashlib

from portico import ir
from portico.models import Resource, SessionPersistenceConfig
from portico.translator.durations import parse_duration_s


def session_persistence(route: Resource, rule_index: int,
                        sp: SessionPersistenceConfig | None) -> ir.SessionPersistence | None:
    if sp is None:
        return None
    if sp.type == "Header":
        return ir.SessionPersistence("Header", sp.header.name) if sp.header else None
    cookie = sp.cookie
    name = cookie.name if cookie and cookie.name else generated_cookie_name(route, rule_index)
    permanent = cookie is not None and cookie.lifetime_type == "Permanent"
    ttl = parse_duration_s(sp.absolute_timeout) if permanent and sp.absolute_timeout else None
    return ir.SessionPersistence("Cookie", name, ttl, cookie.path if cookie else "/")


def generated_cookie_name(route: Resource, rule_index: int) -> str:
    """Stable across reloads and distinct per route rule."""
    identity = f"{route.kind}/{route.namespace}/{route.name}/{rule_index}"
    return "portico-session-" + hashlib.sha256(identity.encode()).hexdigest()[:12]
