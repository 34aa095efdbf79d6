"""Routes a public Gateway exposes without authentication (issue 29's guardrail): read by
`portico analyze` (a finding per route) and the topology page (such routes marked).

A Gateway is public when its annotation `gateway.portico.dev/public` is "true" (the
platform team says it faces the Internet; Istio and Envoy Gateway users mark Gateways
with annotations too). A rule of a route attached to it that sends requests to a
backend is authenticated when:
- its SecurityPolicy, the most specific one (the rule's, the route's, else the
  listener's, else the Gateway's: the whole policy wins, as translation applies them)
  authenticates callers: jwt (not optional), oidc, basicAuth, apiKeyAuth or extAuth; or
- the rule has an ExternalAuth filter (HTTPRoute).
A TCP, TLS or UDP route on a public Gateway authenticates no one by Portico. A route
annotated `gateway.portico.dev/allow-unauthenticated: "true"` is public on purpose and
not reported.

Pure: objects (as stored, with statuses) in, exposures out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PUBLIC = "gateway.portico.dev/public"
ALLOW_UNAUTHENTICATED = "gateway.portico.dev/allow-unauthenticated"
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute")
AUTHENTICATING = ("jwt", "oidc", "basicAuth", "apiKeyAuth", "extAuth")


@dataclass(frozen=True)
class Exposure:
    route: str  # "Kind namespace/name"
    route_id: str  # "Kind/namespace/name" (the topology's node id)
    gateway: str  # "namespace/name"
    rules: tuple[str, ...]  # the rules exposed (their names, else their indexes)
    message: str


def public_gateways(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(_ns(o), o["metadata"]["name"]) for o in objects if o.get("kind") == "Gateway"
            and str(((o.get("metadata") or {}).get("annotations") or {}).get(PUBLIC, "")).lower() == "true"}


def unauthenticated(objects: list[dict[str, Any]], controller: str) -> list[Exposure]:
    public = public_gateways(objects)
    if not public:
        return []
    listeners = {(_ns(o), o["metadata"]["name"]): [str(ls.get("name")) for ls in (o.get("spec") or {}).get(
        "listeners") or []] for o in objects if o.get("kind") == "Gateway"}
    policies = [p for p in objects if p.get("kind") == "SecurityPolicy"]
    out = []
    for route in (o for o in objects if o.get("kind") in ROUTE_KINDS):
        annotations = (route.get("metadata") or {}).get("annotations") or {}
        if str(annotations.get(ALLOW_UNAUTHENTICATED, "")).lower() == "true":
            continue
        for (gw_ns, gw), sections in sorted(_attachments(route, controller).items()):
            if (gw_ns, gw) not in public:
                continue
            if None in sections:  # attached to every listener of the Gateway
                sections = set(listeners.get((gw_ns, gw), [])) or sections
            exposed = _exposed_rules(route, policies, (gw_ns, gw), sections)
            if not exposed:
                continue
            kind, ns, name = route["kind"], _ns(route), route["metadata"]["name"]
            what = ("no SecurityPolicy with jwt, oidc, basicAuth, apiKeyAuth or extAuth"
                    + (" and no ExternalAuth filter" if kind == "HTTPRoute" else "")
                    if kind in ("HTTPRoute", "GRPCRoute") else
                    f"Portico authenticates no one on a {kind}: use an HTTPRoute with a SecurityPolicy, or a "
                    "private Gateway")
            several = len(exposed) > 1
            out.append(Exposure(
                f"{kind} {ns}/{name}", f"{kind}/{ns}/{name}", f"{gw_ns}/{gw}", tuple(exposed),
                f"rule{'s' if several else ''} {', '.join(exposed)} on public Gateway {gw_ns}/{gw} ({PUBLIC}) "
                f"send{'' if several else 's'} requests to backends without authentication ({what}); annotate "
                f"the route "
                f'{ALLOW_UNAUTHENTICATED}: "true" if that is intended'))
    return out


def _attachments(route: dict[str, Any], controller: str) -> dict[tuple[str, str], set[str | None]]:
    """The Gateways the route is attached to (and the listeners: None for all), by its
    status entries of ours that say Accepted, else (no status yet) by its parentRefs."""
    ns = _ns(route)
    entries = [p for p in (route.get("status") or {}).get("parents") or [] if p.get("controllerName") == controller]
    refs = [p.get("parentRef") or {} for p in entries
            if any(c.get("type") == "Accepted" and c.get("status") == "True" for c in p.get("conditions") or [])] \
        if entries else (route.get("spec") or {}).get("parentRefs") or []
    out: dict[tuple[str, str], set[str | None]] = {}
    for ref in refs:
        if ref.get("kind", "Gateway") != "Gateway":
            continue
        out.setdefault((ref.get("namespace", ns), ref.get("name", "")), set()).add(ref.get("sectionName"))
    return out


def _exposed_rules(route: dict[str, Any], policies: list[dict[str, Any]], gateway: tuple[str, str],
                   sections: set[str | None]) -> list[str]:
    out = []
    for i, rule in enumerate((route.get("spec") or {}).get("rules") or []):
        if not rule.get("backendRefs"):
            continue  # a redirect or a direct answer exposes no backend
        if any(f.get("type") == "ExternalAuth" for f in rule.get("filters") or []):
            continue
        policy = _policy_for_rule(route, rule.get("name"), policies) or _policy_for_gateway(gateway, sections,
                                                                                              policies)
        if _authenticates(policy):
            continue
        out.append(str(rule.get("name") or i))
    return out


def _policy_for_rule(route: dict[str, Any], rule: str | None, policies: list[dict[str, Any]]) -> dict[str, Any] | None:
    whole = None
    for p in policies:
        if _ns(p) != _ns(route):
            continue
        for ref in (p.get("spec") or {}).get("targetRefs") or []:
            if ref.get("kind") != route["kind"] or ref.get("name") != route["metadata"]["name"]:
                continue
            if ref.get("sectionName") is None:
                whole = whole or p
            elif rule is not None and ref.get("sectionName") == rule:
                return p
    return whole


def _policy_for_gateway(gateway: tuple[str, str], sections: set[str | None],
                        policies: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The Gateway's policy for the route's listeners: a listener's own, else the Gateway's
    (the least covered listener decides: a rule is exposed where any listener exposes it)."""
    whole = None
    by_listener: dict[str, dict[str, Any]] = {}
    for p in policies:
        if _ns(p) != gateway[0]:
            continue
        for ref in (p.get("spec") or {}).get("targetRefs") or []:
            if ref.get("kind") == "Gateway" and ref.get("name") == gateway[1]:
                if ref.get("sectionName") is None:
                    whole = whole or p
                else:
                    by_listener.setdefault(ref["sectionName"], p)
    if None in sections:  # every listener, none of them known: the Gateway's policy
        return whole
    found = [by_listener.get(s) or whole for s in sections if s is not None]
    return None if any(f is None for f in found) else _least(found)


def _least(found: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    return next((p for p in found if not _authenticates(p)), found[0] if found else None)


def _authenticates(policy: dict[str, Any] | None) -> bool:
    spec = (policy or {}).get("spec") or {}
    jwt = spec.get("jwt")
    return any(spec.get(k) for k in AUTHENTICATING if k != "jwt") or bool(jwt and not jwt.get("optional"))


def _ns(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")
