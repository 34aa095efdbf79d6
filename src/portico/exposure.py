"""Routes a public Gateway exposes without authentication (issue 29's guardrail): read by
`portico analyze` (a finding per route) and the topology page (such routes marked).

A Gateway is public when its annotation `gateway.portico.dev/public` is "true" (the
platform team says it faces the Internet; Istio and Envoy Gateway users mark Gateways
with annotations too).

What is exposed is read from the translation's output, the IR each Gateway's Envoy is
sent, never re-derived from the objects: the SecurityPolicy in effect on a route rule on
a listener is the one the translator applied there (GEP-713: the rule's, the route's,
the listener's, the Gateway's; among policies of one target the oldest by
creationTimestamp, then namespace/name; a Conflicted one applies nowhere), and a
listener a route is not attached to (its kind not allowed there, another sectionName)
holds no route of it. So analyze, the topology page and the data plane cannot disagree.

An IR route (one match of one rule, on one listener's filter chain) exposes its backends
when it forwards requests (not a redirect, not a direct answer such as the 500 of a
policy whose keys cannot be had) and nothing on the way asks the caller who they are:
- a jwt requirement that is not optional, oidc login, basicAuth, apiKeyAuth or extAuth
  (SecurityPolicy), or an ExternalAuth filter (HTTPRoute);
- or a client certificate the listener requires (Gateway spec.tls.frontend without
  AllowInsecureFallback) or the route requires (HTTPRouteFilter requireClientCertificate).
Authorization rules alone (client addresses, headers) identify no caller.

A TCP, TLS or UDP route a public Gateway accepted (its status, the translation's too)
authenticates no one by Portico. A route annotated
`gateway.portico.dev/allow-unauthenticated: "true"` is public on purpose and not reported.

Pure: objects (as stored, with statuses) and the translation's per-Gateway outputs in,
exposures out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from portico import ir
from portico.contracts import GatewayOutput
from portico.objects import ObjectKey
from portico.translator.hostnames import matches, specificity

PUBLIC = "gateway.portico.dev/public"
ALLOW_UNAUTHENTICATED = "gateway.portico.dev/allow-unauthenticated"
HTTP_KINDS = {"httproute": "HTTPRoute", "grpcroute": "GRPCRoute"}  # the IR route names' kinds
L4_KINDS = ("TLSRoute", "TCPRoute", "UDPRoute")


@dataclass(frozen=True)
class Exposure:
    route: str  # "Kind namespace/name"
    route_id: str  # "Kind/namespace/name" (the topology's node id)
    gateway: str  # "namespace/name"
    rules: tuple[str, ...]  # the rules exposed (their names, else their indexes)
    listeners: tuple[str, ...]  # where: "listener NAME" ("port N": an HTTP port's host no listener covers)
    policies: tuple[str, ...]  # the SecurityPolicies applied there ("namespace/name"), none authenticating
    message: str

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Exposure:
        """An exposure as the admin API serves it (JSON: lists for tuples)."""
        return Exposure(str(data["route"]), str(data["route_id"]), str(data["gateway"]),
                        tuple(data.get("rules") or ()), tuple(data.get("listeners") or ()),
                        tuple(data.get("policies") or ()), str(data["message"]))


def public_gateways(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(_ns(o), o["metadata"]["name"]) for o in objects if o.get("kind") == "Gateway"
            and str(((o.get("metadata") or {}).get("annotations") or {}).get(PUBLIC, "")).lower() == "true"}


@dataclass
class _Found:
    rules: dict[str, None]
    listeners: dict[str, None]
    policies: dict[str, None]


def unauthenticated(objects: list[dict[str, Any]], outputs: Mapping[ObjectKey, GatewayOutput],
                    controller: str) -> list[Exposure]:
    public = public_gateways(objects)
    if not public:
        return []
    routes = {(o["kind"], _ns(o), o["metadata"]["name"]): o for o in objects
              if o.get("kind") in (*HTTP_KINDS.values(), *L4_KINDS)}
    found: dict[tuple[tuple[str, str, str], tuple[str, str]], _Found] = {}
    for key, output in sorted(outputs.items()):
        gateway = (key.namespace, key.name)
        if key.kind != "Gateway" or gateway not in public:
            continue
        for where, ir_route, action in _http_routes(output, _listener_hostnames(objects, key)):
            origin = _origin(ir_route.name)
            if origin is None or not _forwards(action) or _authenticates(action):
                continue
            kind, ns, name, rule = origin
            entry = found.setdefault(((kind, ns, name), gateway), _Found({}, {}, {}))
            entry.rules[rule] = None
            entry.listeners[where] = None
            for policy in _policies(action):
                entry.policies[policy] = None
    for (kind, ns, name), obj in routes.items():
        if kind in L4_KINDS:
            for gateway in _accepted_by(obj, controller) & public:
                found.setdefault(((kind, ns, name), gateway), _Found({}, {}, {}))
    out = []
    for ((kind, ns, name), gateway), entry in sorted(found.items()):
        route = routes.get((kind, ns, name))
        if route is None or _allowed(route):
            continue
        rules = _in_rule_order(route, list(entry.rules))
        out.append(Exposure(f"{kind} {ns}/{name}", f"{kind}/{ns}/{name}", "/".join(gateway), tuple(rules),
                            tuple(entry.listeners), tuple(entry.policies),
                            _message(kind, gateway, rules, list(entry.listeners), list(entry.policies))))
    return out


def _listener_hostnames(objects: list[dict[str, Any]], gateway: ObjectKey) -> dict[str, str | None]:
    """The hostnames of the Gateway's listeners and of its ListenerSets' (by the names the
    IR's infrastructure gives them: "<namespace>/<listenerset>/<name>" for the latter)."""
    out: dict[str, str | None] = {}
    for o in objects:
        own = o.get("kind") == "Gateway" and (_ns(o), o["metadata"]["name"]) == (gateway.namespace, gateway.name)
        if own or o.get("kind") == "ListenerSet":  # (only the names of the Gateway's are looked up)
            prefix = "" if own else f"{_ns(o)}/{o['metadata']['name']}/"
            for ls in (o.get("spec") or {}).get("listeners") or []:
                out[prefix + str(ls.get("name"))] = ls.get("hostname")
    return out


def _listener_of(domain: str, names: list[str], hostnames: dict[str, str | None]) -> str | None:
    """The listener of an HTTP port whose virtual host `domain` is: the most specific one
    whose hostname covers it (listener isolation, as the translator builds the hosts)."""
    covering = [n for n in names if not hostnames.get(n) or (domain != "*" and matches(str(hostnames[n]), domain))]
    return min(covering, key=lambda n: specificity(hostnames.get(n)), default=None)


def _http_routes(out: GatewayOutput, hostnames: dict[str, str | None]) -> list[tuple[str, ir.Route, ir.RouteAction]]:
    """Every HTTP route of the Gateway's IR with where it is served, the listener's own
    client-certificate requirement counted as the route's (`_authenticates`)."""
    prefix = f"{out.infra.namespace}/{out.infra.name}/"
    http_by_port: dict[int, list[str]] = {}
    for ls in out.infra.listeners:
        if ls.protocol == "HTTP":
            http_by_port.setdefault(ls.bind_port, []).append(ls.name)
    found = []
    for listener in out.xds.listeners:
        for chain in listener.filter_chains:
            if chain.http is None:
                continue
            names = [chain.name.removeprefix(prefix)] if chain.tls is not None else \
                http_by_port.get(listener.port, [])  # (the HTTP listeners of a port share one chain)
            mtls = chain.tls is not None and chain.tls.client_validation is not None \
                and not chain.tls.client_validation.optional
            for vh in chain.http.virtual_hosts:
                served_by = names[0] if len(names) == 1 else _listener_of(vh.domains[0], names, hostnames)
                where = f"listener {served_by}" if served_by else f"port {listener.port}"
                for route in vh.routes:
                    action = route.action
                    if mtls:  # the handshake already refused a client without a valid certificate
                        action = replace(action, client_cert_check=ir.ClientCertificateCheck())
                    found.append((where, route, action))
    return found


def _origin(name: str) -> tuple[str, str, str, str] | None:
    """(kind, namespace, name, rule) of an IR route named "<kind>/<ns>/<name>/rule/<rule>/match/<j>..."
    (`ir.Route.name`); None for the routes Portico adds (421 answers, error pages)."""
    parts = name.split("/")
    if len(parts) < 5 or parts[0] not in HTTP_KINDS or parts[3] != "rule":
        return None
    return HTTP_KINDS[parts[0]], parts[1], parts[2], parts[4]


def _forwards(action: ir.RouteAction) -> bool:
    """Whether requests reach a backend (a redirect, a direct answer or only invalid
    backends answer by Envoy)."""
    return action.redirect is None and action.direct_status is None and any(
        b.cluster is not None for b in action.backends)


def _authenticates(action: ir.RouteAction) -> bool:
    cert = action.client_cert_check
    return bool((action.jwt is not None and not action.jwt.optional) or action.oidc or action.basic_auth
                or action.api_key_auth or action.policy_external_auth or action.external_auth
                or (cert is not None and not cert.optional))


def _policies(action: ir.RouteAction) -> list[str]:
    """The SecurityPolicies ("namespace/name") whose effect the action carries."""
    names = [action.authorization.policy if action.authorization else "",
             action.basic_auth.policy if action.basic_auth else "",
             action.api_key_auth.policy if action.api_key_auth else "",
             action.policy_external_auth.policy if action.policy_external_auth else "",
             action.oidc.name if action.oidc else ""]
    names += ["/".join(p.name.split("/")[:2]) for p in action.jwt.providers] if action.jwt else []
    return list(dict.fromkeys(n for n in names if n))


def _accepted_by(route: dict[str, Any], controller: str) -> set[tuple[str, str]]:
    """The Gateways whose status entry of ours says the route is Accepted."""
    out = set()
    for p in (route.get("status") or {}).get("parents") or []:
        ref = p.get("parentRef") or {}
        if p.get("controllerName") == controller and ref.get("kind", "Gateway") == "Gateway" and any(
                c.get("type") == "Accepted" and c.get("status") == "True" for c in p.get("conditions") or []):
            out.add((ref.get("namespace") or _ns(route), str(ref.get("name", ""))))
    return out


def _allowed(route: dict[str, Any]) -> bool:
    annotations = (route.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ALLOW_UNAUTHENTICATED, "")).lower() == "true"


def _in_rule_order(route: dict[str, Any], labels: list[str]) -> list[str]:
    """Rule labels (a rule's name, else its index, as IR route names carry them) in the route's order."""
    order = [str(r.get("name") or i) for i, r in enumerate((route.get("spec") or {}).get("rules") or [])]
    return sorted(labels, key=lambda label: order.index(label) if label in order else len(order))


def _message(kind: str, gateway: tuple[str, str], rules: list[str], listeners: list[str],
             policies: list[str]) -> str:
    gw = "/".join(gateway)
    if kind not in HTTP_KINDS.values():
        return (f"{kind} on public Gateway {gw} ({PUBLIC}): Portico authenticates no one on a {kind}: use an "
                f"HTTPRoute with a SecurityPolicy, or a private Gateway; annotate the route "
                f'{ALLOW_UNAUTHENTICATED}: "true" if that is intended')
    several = len(rules) > 1
    filters = " and no ExternalAuth filter" if kind == "HTTPRoute" else ""
    if policies:
        what = (f"SecurityPolicy {', '.join(policies)} applies there, with no required jwt, oidc, basicAuth, "
                f"apiKeyAuth or extAuth{filters}")
    else:
        what = f"no SecurityPolicy with jwt, oidc, basicAuth, apiKeyAuth or extAuth{filters}"
    return (f"rule{'s' if several else ''} {', '.join(rules)} on public Gateway {gw} ({PUBLIC}; "
            f"{', '.join(listeners)}) send{'' if several else 's'} requests to backends without authentication "
            f'({what}); annotate the route {ALLOW_UNAUTHENTICATED}: "true" if that is intended')


def _ns(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")
