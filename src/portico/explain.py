"""`portico explain`: which listener, virtual host and route a request would take, and
why, read from the same IR Envoy is sent.

Envoy's selection, as the xDS translation configures it: the listener on the port;
for TLS, the filter chain whose server names match the SNI (else the one without);
400 for a Host with userinfo or several Hosts; the virtual host whose domain matches
the Host exactly, else the longest wildcard suffix (`*.example.com`), else `*`; then
the first route, in the IR's precedence
order, whose path (Exact, segment-aware PathPrefix, RE2 RegularExpression), headers,
query parameters, method and gRPC content type all match. When nothing matches, the
answer is 404 and the nearest routes are listed with the first criterion each failed.
`tests/test_explain.py` checks the answers against what a real Envoy does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from portico import ir


@dataclass(frozen=True)
class Request:
    port: int  # the port the client connects to (a listener's bind port)
    host: str
    path: str = "/"
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    sni: str | None = None

    @property
    def path_only(self) -> str:
        return urlsplit(self.path).path or "/"

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.path).query, keep_blank_values=True)


@dataclass
class Answer:
    listener: str | None = None
    filter_chain: str | None = None
    virtual_host: str | None = None
    route: str | None = None  # the IR route name: "<kind>/<ns>/<name>/rule/<i>/match/<j>"
    why: list[str] = field(default_factory=list)
    action: ir.RouteAction | None = None
    misses: list[tuple[str, str]] = field(default_factory=list)  # (route, the first criterion it failed)
    request: Request | None = None

    @property
    def status(self) -> str:
        if self.action is None:
            return "404 (no route)" if self.virtual_host or self.filter_chain else "no listener"
        if self.action.redirect is not None:
            return f"{self.action.redirect.status_code} redirect"
        if self.action.direct_status is not None:
            return f"{self.action.direct_status} (answered by Envoy)"
        return "forwarded"


def explain(model: ir.IR, req: Request) -> Answer:
    answer = Answer(request=req)
    listener = next((ls for ls in model.listeners if ls.port == req.port and ls.transport == "tcp"), None)
    if listener is None:
        answer.why.append(f"no TCP listener on port {req.port} (listeners: "
                          f"{', '.join(str(ls.port) for ls in model.listeners) or 'none'})")
        return answer
    answer.listener = listener.name
    chain = _filter_chain(listener, req.sni)
    if chain is None or chain.http is None:
        answer.why.append("no HTTP filter chain for this SNI" if chain is None else
                          f"filter chain {chain.name} is not HTTP (TCP/TLS passthrough)")
        return answer
    answer.filter_chain = chain.name
    if "@" in req.host or "," in req.host:  # xds.listeners.bad_authority_filter, before routing
        answer.action = ir.RouteAction(direct_status=400)
        answer.why.append("a Host with userinfo ('@') or several Hosts (joined with ','): 400 before any route")
        return answer
    host = req.host.split(":", 1)[0].rstrip(".").lower()
    vhost, how = _virtual_host(chain.http.virtual_hosts, host)
    if vhost is None:
        answer.why.append(f"no virtual host for host {host!r}: 404")
        return answer
    answer.virtual_host = vhost.name
    answer.why.append(f"virtual host {vhost.name} ({how})")
    if not vhost.routes:
        answer.why.append(f"no route is attached for host {host!r}: 404")
        return answer
    for i, route in enumerate(vhost.routes):
        miss = _mismatch(route.match, req)
        if miss is None:
            answer.route, answer.action = route.name, route.action
            answer.why.append(f"route {route.name}: the first of {len(vhost.routes)} routes in precedence order "
                              f"that matches (position {i + 1})")
            if route.match.fraction_per_million is not None:
                # one backend share of a rule whose backendRefs carry their own redirect or rewrite
                answer.why.append(f"for the share of requests Envoy's random value puts below "
                                  f"{route.match.fraction_per_million / 10_000:g}%; the next routes take the rest")
            return answer
        answer.misses.append((route.name, miss))
    answer.why.append("no route of this virtual host matches: 404")
    return answer


def _filter_chain(listener: ir.Listener, sni: str | None) -> ir.FilterChain | None:
    if sni:
        name = sni.lower()
        exact = [c for c in listener.filter_chains if name in c.server_names]
        if exact:
            return exact[0]
        wild = [(len(n), c) for c in listener.filter_chains for n in c.server_names
                if n.startswith("*.") and name.endswith(n[1:])]
        if wild:
            return max(wild, key=lambda p: p[0])[1]
    return next((c for c in listener.filter_chains if not c.server_names), None)


def _virtual_host(vhosts: tuple[ir.VirtualHost, ...], host: str) -> tuple[ir.VirtualHost | None, str]:
    for vh in vhosts:
        if host in (d.lower() for d in vh.domains):
            return vh, f"exact domain {host}"
    suffix = [(len(d), vh, d) for vh in vhosts for d in vh.domains if d.startswith("*") and len(d) > 1
              and host.endswith(d[1:].lower()) and len(host) > len(d) - 1]
    if suffix:
        _, vh, d = max(suffix, key=lambda t: t[0])
        return vh, f"longest wildcard domain {d}"
    for vh in vhosts:
        if "*" in vh.domains:
            return vh, "the catch-all domain *"
    return None, ""


def _mismatch(m: ir.RouteMatch, req: Request) -> str | None:
    """The first criterion `req` fails, or None when the route matches."""
    path = req.path_only
    p = m.path
    if p.type == "Exact" and path != p.value:
        return f"path is not exactly {p.value}"
    if p.type == "Prefix":
        prefix = p.value.rstrip("/")
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            return f"path is not under {p.value} (whole segments)"
    if p.type == "RegularExpression" and not _full(p.value, path):
        return f"path does not match {p.value}"
    headers = [(k.lower(), v) for k, v in req.headers]
    for h in m.headers:
        values = [v for k, v in headers if k == h.name.lower()]
        ok = bool(values) and _string(h.type, h.value, values[0])
        if ok == h.invert:
            return f"header {h.name} {'matches' if h.invert else 'does not match'} {h.type} {h.value}"
    if m.method is not None and req.method.upper() != m.method:
        return f"method is not {m.method}"
    query = req.query
    for q in m.query_params:
        values = [v for k, v in query if k == q.name]
        if not values or not _string(q.type, q.value, values[0]):
            return f"query parameter {q.name} does not match {q.type} {q.value}"
    if m.grpc and not any(k == "content-type" and v.startswith("application/grpc") for k, v in headers):
        return "not a gRPC request (content-type application/grpc)"
    return None


def _string(kind: str, expected: str, value: str) -> bool:
    if kind == "RegularExpression":
        return _full(expected, value)
    if kind == "Prefix":
        return value.startswith(expected)
    return value == expected


def _full(pattern: str, value: str) -> bool:
    import re2

    try:
        return re2.fullmatch(pattern, value) is not None
    except re2.error:
        return re.fullmatch(pattern, value) is not None


def security_lines(action: ir.RouteAction, req: Request | None) -> list[str]:
    """The SecurityPolicy checks of the route, in Envoy's order (authentication: 401, then
    the authorization rules: 403), and which rule would decide the request as far as the
    request alone tells (a token's claims, the client's address: "if ...")."""
    lines = []
    if action.oidc is not None:
        lines.append(f"authentication: OIDC login of SecurityPolicy {action.oidc.name} (no session: 302 to "
                     f"{action.oidc.authorization_endpoint}; callback {action.oidc.redirect_path}, "
                     f"logout {action.oidc.logout_path})")
    if action.jwt is not None:
        names = ", ".join(p.name for p in action.jwt.providers)
        lines.append(f"authentication: JWT of {names} ({'optional' if action.jwt.optional else 'required'}; "
                     "none valid: 401)")
    if action.basic_auth is not None:
        lines.append(f"authentication: basic auth of SecurityPolicy {action.basic_auth.policy} (401 without)")
    if action.api_key_auth is not None:
        lines.append(f"authentication: API key of SecurityPolicy {action.api_key_auth.policy} (401 without)")
    auth = action.authorization
    if auth is None:
        return lines
    for i, rule in enumerate(auth.rules):
        verb = "allows" if rule.allow else "denies (403)"
        name = f"rule {rule.name or i} of SecurityPolicy {auth.policy}"
        missed = _rule_mismatch(rule, req) if req is not None else None
        if missed:
            continue
        pending = [what for what, present in (("client address in " + ", ".join(rule.cidrs), rule.cidrs),
                                              (f"a token of {rule.jwt_provider}", rule.jwt_provider),
                                              ("claims " + ", ".join(".".join(c) + " in " + "/".join(v)
                                                                     for c, v in rule.claims), rule.claims),
                                              ("scopes " + " ".join(rule.scopes), rule.scopes),
                                              ("a verified client certificate" + (" named " + " or ".join(
                                                  f"{k.lower()} {v}" for k, v in rule.certificate_names)
                                                  if rule.certificate_names else ""),
                                               rule.client_certificate)) if present]
        if not pending:
            lines.append(f"authorization: {name} {verb}: it matches the request")
            return lines
        lines.append(f"authorization: {name} {verb} if: {'; '.join(pending)}")
    lines.append(f"authorization: {'otherwise ' if len(lines) and lines[-1].startswith('authorization') else ''}"
                 f"no rule matches: defaultAction of SecurityPolicy {auth.policy} "
                 f"{'allows' if auth.default_allow else 'denies (403)'}")
    return lines


def _rule_mismatch(rule: ir.AuthorizationRule, req: Request) -> str | None:
    """What of the request (method, path, headers) keeps `rule` from matching, if anything."""
    if rule.methods and req.method not in rule.methods:
        return "method"
    path = req.path_only
    if rule.paths and not any(path.startswith(p[:-1]) if p.endswith("/*") else path.endswith(p[1:])
                              if p.startswith("*") else path == p for p in rule.paths):
        return "path"
    headers: dict[str, list[str]] = {}
    for k, v in req.headers:
        headers.setdefault(k.lower(), []).append(v)
    for name, values in rule.headers:
        if name not in headers or (values and not set(values) & set(headers[name])):
            return f"header {name}"
    return None


def render(answer: Answer, model: ir.IR) -> list[str]:
    lines = [f"answer: {answer.status}"]
    if answer.listener:
        lines.append(f"listener: {answer.listener}" + (f", filter chain {answer.filter_chain}"
                                                      if answer.filter_chain else ""))
    lines += [f"why: {w}" for w in answer.why]
    action = answer.action
    if action is not None:
        clusters = {c.name: c for c in model.clusters}
        total = sum(b.weight for b in action.backends) or 1
        for b in action.backends:
            if b.cluster is None:
                lines.append(f"backend: (invalid) weight {b.weight}/{total}: answered {action.invalid_backend_status}")
                continue
            cluster = clusters.get(b.cluster)
            endpoints = cluster.endpoints if cluster is not None else ()
            fallback = cluster.fallback_endpoints if cluster is not None and cluster.fallback else ()
            lines.append(f"backend: {b.cluster} weight {b.weight}/{total}, {len(endpoints)} ready endpoint(s)"
                         + (": " + ", ".join(f"{e.address}:{e.port}" for e in endpoints[:5]) if endpoints else
                            " (none ready: the fallback)" if fallback else " (none ready: 503)"))
            if cluster is not None and cluster.fallback:
                lines.append(f"  fallback: Service {cluster.fallback} while none is healthy, {len(fallback)} ready "
                             "endpoint(s)" + (": " + ", ".join(f"{e.address}:{e.port}" for e in fallback[:5])
                                              if fallback else ""))
        for label, present in (("redirect", action.redirect), ("rewrite", action.rewrite),
                               ("mirrors", action.mirrors), ("CORS", action.cors),
                               ("external auth", action.external_auth),
                               ("external auth of SecurityPolicy", action.policy_external_auth),
                               ("retry", action.retry),
                               ("error pages", action.error_pages),
                               ("client certificate check", action.client_cert_check)):
            if present:
                lines.append(f"filter: {label}: {present}")
        lines += security_lines(action, answer.request)
        for label, mod in (("request headers", action.request_headers), ("response headers", action.response_headers)):
            if mod.set or mod.add or mod.remove:
                lines.append(f"filter: {label}: set {[h.name for h in mod.set]} add {[h.name for h in mod.add]} "
                             f"remove {list(mod.remove)}")
    elif answer.misses:
        lines.append("nearest routes and why each did not match:")
        lines += [f"  {name}: {why}" for name, why in answer.misses[:10]]
    return lines
