"""`portico analyze`: lint a set of objects (a directory translated offline, or what a
running controller holds), as `istioctl analyze` does. Two sources of findings:

- every problem a status reports: a condition of ours in its unhealthy state, on a
  GatewayClass or Gateway of ours, a listener, a route's or policy's parent entry;
- what no status says:
  - shadowed route matches: two HTTPRoute rules attached to the same parent with the
    same hostname and the same match; the spec gives the request to the oldest route
    (then namespace/name order; within a route, the first rule), the other never
    matches;
  - Services without ready endpoints that routes send traffic to (503s);
  - ReferenceGrants no reference uses (stale permissions, or a typo in a grant that
    was meant to be used);
  - policies whose targetRefs name nothing that exists (no status: a policy with no
    target has no ancestor to report under);
  - routes a public Gateway (annotation gateway.portico.dev/public) exposes without
    authentication (`portico.exposure`: read from the translation's IR, given here).

Pure: objects and exposures in, findings out (`portico.cli` fetches and prints them).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from portico import exposure, kinds

# conditions whose healthy state is False (the spec's "negative polarity" types; Portico's
# RulesNeverMatch on a SecurityPolicy's ancestor)
NEGATIVE = {"Conflicted", "PartiallyInvalid", "OverlappingTLSConfig", "RulesNeverMatch"}
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute")
SERVICE_NAME = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Finding:
    level: str  # "error": traffic does not flow as written; "warning": something to look at
    code: str
    object: str  # "Kind namespace/name"
    message: str


def analyze(objects: list[dict[str, Any]], controller: str, exposures: Sequence[exposure.Exposure]
            ) -> list[Finding]:
    """`exposures`: what the translation of `objects` exposes (`portico.exposure`)."""
    index = Index(objects)
    found = [*status_problems(index, controller), *shadowed_routes(index, controller),
             *services_without_endpoints(index), *unused_reference_grants(index),
             *policies_targeting_nothing(index, controller), *unauthenticated_routes(exposures)]
    return sorted(found, key=lambda f: (f.level != "error", f.object, f.code, f.message))


class Index:
    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.by_key = {(o.get("kind", ""), _ns(o), o["metadata"]["name"]): o for o in objects}

    def of(self, *kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") in kind]

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.by_key.get((kind, namespace, name))


def status_problems(index: Index, controller: str) -> Iterable[Finding]:
    ours = {c["metadata"]["name"] for c in index.of("GatewayClass")
            if (c.get("spec") or {}).get("controllerName") == controller}
    for obj in index.objects:
        kind, status = obj.get("kind", ""), obj.get("status") or {}
        if kind == "GatewayClass" and obj["metadata"]["name"] not in ours:
            continue
        if kind == "Gateway" and (obj.get("spec") or {}).get("gatewayClassName") not in ours:
            continue
        if kind in ("GatewayClass", "Gateway", "ListenerSet") or kind.startswith("X") or \
                obj.get("apiVersion", "").startswith(kinds.PORTICO_GROUP):
            yield from _bad(obj, "", status.get("conditions") or [])
        for listener in status.get("listeners") or []:
            yield from _bad(obj, f"listener {listener.get('name')}: ", listener.get("conditions") or [])
        for entry in (status.get("parents") or []) + (status.get("ancestors") or []):
            if entry.get("controllerName") != controller:
                continue
            ref = entry.get("parentRef") or entry.get("ancestorRef") or {}
            where = f"{ref.get('kind', 'Gateway')} {ref.get('namespace', _ns(obj))}/{ref.get('name')}"
            if ref.get("sectionName"):
                where += f" [{ref['sectionName']}]"
            yield from _bad(obj, f"on {where}: ", entry.get("conditions") or [])


def _bad(obj: dict[str, Any], where: str, conditions: list[dict[str, Any]]) -> Iterable[Finding]:
    for c in conditions:
        healthy = (c.get("status") == "True") != (c.get("type") in NEGATIVE)
        if not healthy and c.get("status") in ("True", "False"):
            yield Finding("error", str(c.get("reason") or c.get("type")), _name(obj),
                          f"{where}{c.get('type')}={c.get('status')}: {c.get('message') or c.get('reason')}")


def shadowed_routes(index: Index, controller: str) -> Iterable[Finding]:
    # (parent, hostname, match) -> [(precedence, route, rule index)]
    claims: dict[tuple[str, str, str], list[tuple[tuple[str, str], dict[str, Any], int]]] = defaultdict(list)
    for route in index.of("HTTPRoute"):
        spec = route.get("spec") or {}
        precedence = (str(route["metadata"].get("creationTimestamp") or ""), _name(route))
        accepted = _accepted_parents(route, controller)
        for ref in spec.get("parentRefs") or []:
            parent = f"{ref.get('namespace', _ns(route))}/{ref.get('name')}" + (
                f"[{ref['sectionName']}]" if ref.get("sectionName") else "")
            if accepted is not None and parent not in accepted:
                continue  # not attached there: nothing to shadow
            for host in spec.get("hostnames") or ["*"]:
                for i, rule in enumerate(spec.get("rules") or []):
                    for match in rule.get("matches") or [{}]:
                        claims[(parent, host.lower(), _canonical(match))].append((precedence, route, i))
    for (parent, host, match), holders in sorted(claims.items()):
        distinct = {(_name(r), i) for _, r, i in holders}
        if len(distinct) < 2:
            continue
        ordered = sorted(holders, key=lambda h: (h[0], h[2]))
        _, winner, won_rule = ordered[0]
        for _, route, i in ordered[1:]:
            if (_name(route), i) == (_name(winner), won_rule):
                continue
            yield Finding("warning", "ShadowedRoute", _name(route),
                          f"rule {i} match {json.loads(match)} for host {host} on Gateway {parent} never matches: "
                          f"{'rule ' + str(won_rule) + ' of this route' if winner is route else _name(winner)} has "
                          "the same match and takes precedence (the oldest route, then namespace/name, wins)")


def _accepted_parents(route: dict[str, Any], controller: str) -> set[str] | None:
    """The parents whose status entry of ours says Accepted=True (None: no status to go by)."""
    entries = [p for p in (route.get("status") or {}).get("parents") or [] if p.get("controllerName") == controller]
    if not entries:
        return None
    out = set()
    for p in entries:
        ref = p.get("parentRef") or {}
        if any(c.get("type") == "Accepted" and c.get("status") == "True" for c in p.get("conditions") or []):
            out.add(f"{ref.get('namespace', _ns(route))}/{ref.get('name')}"
                    + (f"[{ref['sectionName']}]" if ref.get("sectionName") else ""))
    return out


def _canonical(match: dict[str, Any]) -> str:
    """A match with the spec's defaults filled in (path PathPrefix /, Exact header and
    query matches), its lists in order: equal strings, equal matches."""
    path = {"type": "PathPrefix", "value": "/", **(match.get("path") or {})}
    headers = sorted(({"type": "Exact", **h, "name": str(h.get("name", "")).lower()}
                      for h in match.get("headers") or []), key=lambda h: json.dumps(h, sort_keys=True))
    query = sorted(({"type": "Exact", **q} for q in match.get("queryParams") or []),
                   key=lambda q: json.dumps(q, sort_keys=True))
    canonical: dict[str, Any] = {"path": path}
    if headers:
        canonical["headers"] = headers
    if query:
        canonical["queryParams"] = query
    if match.get("method"):
        canonical["method"] = match["method"]
    return json.dumps(canonical, sort_keys=True)


def _backend_refs(route: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for rule in (route.get("spec") or {}).get("rules") or []:
        yield from rule.get("backendRefs") or []
        for f in rule.get("filters") or []:  # a mirror sends traffic too
            if (f.get("requestMirror") or {}).get("backendRef"):
                yield f["requestMirror"]["backendRef"]


def services_without_endpoints(index: Index) -> Iterable[Finding]:
    ready: set[tuple[str, str]] = set()
    for slice_ in index.of("EndpointSlice"):
        service = ((slice_.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME)
        if service and any((e.get("conditions") or {}).get("ready") is not False and e.get("addresses")
                           for e in slice_.get("endpoints") or []):
            ready.add((_ns(slice_), service))
    users: dict[tuple[str, str], set[str]] = defaultdict(set)
    for route in index.of(*ROUTE_KINDS):
        for ref in _backend_refs(route):
            if ref.get("group", "") == "" and ref.get("kind", "Service") == "Service":
                users[(ref.get("namespace", _ns(route)), ref.get("name", ""))].add(_name(route))
    for (namespace, name), routes in sorted(users.items()):
        service = index.get("Service", namespace, name)
        if service is None or (service.get("spec") or {}).get("type") == "ExternalName":
            continue  # a missing Service is in the route's status (BackendNotFound)
        if (namespace, name) not in ready:
            yield Finding("error", "NoEndpoints", f"Service {namespace}/{name}",
                          f"no ready endpoints (no EndpointSlice labelled {SERVICE_NAME}={name} with a ready "
                          f"address): {', '.join(sorted(routes))} send requests here, answered 503")


def _cross_namespace(index: Index) -> Iterable[tuple[tuple[str, str, str], tuple[str, str, str, str]]]:
    """((from group, kind, namespace), (to group, kind, namespace, name)) of every reference
    that crosses a namespace and so needs a ReferenceGrant."""
    for route in index.of(*ROUTE_KINDS):
        frm = (kinds.GATEWAY_GROUP, route["kind"], _ns(route))
        for ref in _backend_refs(route):
            if ref.get("namespace", _ns(route)) != _ns(route):
                yield frm, (ref.get("group", ""), ref.get("kind", "Service"), ref["namespace"], ref.get("name", ""))
    for gw in index.of("Gateway", "ListenerSet"):
        frm = (kinds.GATEWAY_GROUP, gw["kind"], _ns(gw))
        for listener in (gw.get("spec") or {}).get("listeners") or []:
            for ref in ((listener.get("tls") or {}).get("certificateRefs") or []):
                if ref.get("namespace", _ns(gw)) != _ns(gw):
                    yield frm, (ref.get("group", ""), ref.get("kind", "Secret"), ref["namespace"], ref.get("name", ""))


def unused_reference_grants(index: Index) -> Iterable[Finding]:
    references = list(_cross_namespace(index))
    for grant in index.of("ReferenceGrant"):
        spec, namespace = grant.get("spec") or {}, _ns(grant)
        used = any(
            to_ns == namespace
            and any((f.get("group", ""), f.get("kind"), f.get("namespace")) == frm for f in spec.get("from") or [])
            and any((t.get("group", ""), t.get("kind")) == (to_group, to_kind) and t.get("name") in (None, to_name)
                    for t in spec.get("to") or [])
            for frm, (to_group, to_kind, to_ns, to_name) in references)
        if not used:
            yield Finding("warning", "UnusedReferenceGrant", _name(grant),
                          "no reference uses this grant: remove it, or check its from/to against the reference "
                          "it was meant for")


def policies_targeting_nothing(index: Index, controller: str) -> Iterable[Finding]:
    for spec_kind in kinds.POLICY_KINDS:
        for policy in index.of(spec_kind.kind):
            spec = policy.get("spec") or {}
            refs = spec.get("targetRefs") or ([spec["targetRef"]] if spec.get("targetRef") else [])
            reported = {((a.get("ancestorRef") or {}).get("kind"), (a.get("ancestorRef") or {}).get("name"))
                        for a in (policy.get("status") or {}).get("ancestors") or []
                        if a.get("controllerName") == controller}
            missing = [r for r in refs if index.get(r.get("kind", ""), _ns(policy), r.get("name", "")) is None
                       and (r.get("kind"), r.get("name")) not in reported]  # (a status says it already)
            for r in missing:
                yield Finding("warning", "TargetNotFound", _name(policy),
                              f"targets {r.get('kind')} {_ns(policy)}/{r.get('name')}, which does not exist: the "
                              "policy applies to nothing (and has no status to say so)")


def unauthenticated_routes(exposures: Sequence[exposure.Exposure]) -> Iterable[Finding]:
    for e in exposures:
        yield Finding("warning", "UnauthenticatedPublicRoute", e.route, e.message)


def _ns(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _name(obj: dict[str, Any]) -> str:
    ns = _ns(obj)
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{obj['metadata']['name']}"


def lines(findings: list[Finding]) -> list[str]:
    return [f"{f.level.upper():7} [{f.code}] {f.object}: {f.message}" for f in findings]
