"""Ingress (networking.k8s.io/v1) to the Gateway API, with ingress-nginx's annotations.

Per namespace and IngressClass, a Gateway (named after the class) with an HTTP
listener on port 80 and an HTTPS listener on 443 per `tls` entry host (its Secret
as the certificate); per Ingress and host, an HTTPRoute bound to that Gateway.

- Paths: `Exact` -> Exact; `Prefix` -> PathPrefix (both match whole path elements,
  as the Ingress spec says); `ImplementationSpecific` -> PathPrefix. What ingress-nginx
  decides per server (host), whichever Ingress asks, is decided here per host too: once
  one Ingress of a host has use-regex, or a rewrite-target that differs from its path,
  every path of the host is `(?i)<path>.*` (nginx `location ~* "^<path>"`).
- Backends: Services by port number, or by port name when the Service is among
  the inputs (HTTPRoute needs a number); `resource` backends are not converted.
- `defaultBackend`: a `/` rule on the hosts whose server the Ingress makes (the oldest
  Ingress of a host); with no rules, the oldest such Ingress is the catch-all (an
  HTTPRoute without hostnames, which every more specific route outranks).
- Classes: the Gateway of an Ingress's class; without one, the one default IngressClass's.
- A host with TLS (unless ssl-redirect is false) or force-ssl-redirect: its routes
  are bound to port 443 and port 80 answers a 308 to https, as ingress-nginx does.
- Canary Ingresses (`canary: "true"`) change the routes of the main Ingress with the
  same host and path: weights split its backendRefs, header and cookie rules win over it.
- Annotations: `nginx` maps them; what needs more than HTTPRoute (timeouts, body
  size, load balancing, source ranges, rate limits, retries, authentication) becomes
  Portico policies that target the Ingress's routes, or Gateway fields (ssl-passthrough
  listeners, client certificate validation).

Everything not converted, or converted with a difference, is reported with its reason
(`Conversion.not_converted`, and per Ingress and annotation `Conversion.reports`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from portico import CONTROLLER_NAME
from portico.ingress import nginx

GATEWAY_API = "gateway.networking.k8s.io/v1"
GATEWAY_GROUP = "gateway.networking.k8s.io"
PORTICO_API = "gateway.portico.dev/v1alpha1"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
PATH_TYPES = {"Exact": "Exact", "Prefix": "PathPrefix", "ImplementationSpecific": "PathPrefix"}
PROVIDERS = ("ingress-nginx",)
SSL_REDIRECT = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 308}}

Obj = dict[str, Any]


@dataclass
class Report:
    """One Ingress's migration report: each ingress-nginx annotation with its outcome
    (`nginx.CONVERTED`, `nginx.DIFFERENT`, `nginx.NOT_CONVERTED`) and why, and what
    else of it is not converted (paths, backends)."""

    ingress: str  # namespace/name
    annotations: list[tuple[str, str, str]] = field(default_factory=list)  # (annotation, outcome, detail)
    notes: list[str] = field(default_factory=list)


@dataclass
class Conversion:
    objects: list[Obj] = field(default_factory=list)
    not_converted: list[str] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)


def convert(inputs: list[Obj], gateway_class: str = "portico", prefix: str = "",
            provider: str = "ingress-nginx") -> Conversion:
    """`prefix` starts the names of what is generated (serving: apart from the user's own);
    `provider` is whose annotations and defaults are read (ingress-nginx)."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r} (known: {', '.join(PROVIDERS)})")
    services = {(o["metadata"].get("namespace", "default"), o["metadata"]["name"]): o
                for o in inputs if o.get("kind") == "Service"}
    ingresses = sorted((o for o in inputs if o.get("kind") == "Ingress"
                        and o.get("apiVersion") == "networking.k8s.io/v1"),
                       key=lambda o: (o["metadata"].get("namespace", "default"), o["metadata"]["name"]))
    read = [(ing, _label(ing), _annotations(ing)) for ing in ingresses]
    builder = _Builder(services, gateway_class, prefix, default_class(inputs),
                       [(i, n) for i, _, n in read if n.canary is None])
    # main Ingresses first: a canary changes the routes of the main Ingress of its host and path
    for ing, label, notes in sorted(read, key=lambda r: r[2].canary is not None):
        before = len(builder.out.not_converted)
        try:
            if notes.canary is None:
                builder.ingress(ing, label, notes)
            else:
                builder.canary(ing, label, notes.canary)
        except (AttributeError, KeyError, TypeError, ValueError) as e:  # not shaped as an Ingress
            builder.out.not_converted.append(f"{label}: malformed ({type(e).__name__}: {e}); not converted")
        others = [n[len(label):].lstrip(": ") for n in builder.out.not_converted[before:]]
        builder.out.not_converted[before:before] = [f"{label}: {n}" for n in notes.not_converted]
        builder.out.reports.append(Report(label.removeprefix("Ingress "), [
            (nginx.PREFIX + key, *notes.report[key]) for key in sorted(notes.report)], notes.foreign + others))
    out = builder.out
    out.reports.sort(key=lambda r: r.ingress)
    classes = [{"apiVersion": GATEWAY_API, "kind": "GatewayClass", "metadata": {"name": gateway_class},
                "spec": {"controllerName": CONTROLLER_NAME}}] if ingresses else []
    out.objects = classes + list(builder.gateways.values()) + out.objects + list(builder.extra.values())
    return out


def comment(note: str) -> str:
    """A note as a YAML comment line of `portico convert`: what differs, or what is not converted."""
    kind = "differs" if "converted with a difference" in note else "not converted"
    return f"# {kind}: {note}\n"


def default_class(inputs: list[Obj]) -> str | None:
    """The IngressClass an Ingress without one gets: the one marked
    `ingressclass.kubernetes.io/is-default-class: "true"` (Kubernetes' DefaultIngressClass
    admission sets it on the Ingress; with more than one marked, it refuses the Ingress)."""
    marked = [o["metadata"]["name"] for o in inputs if o.get("kind") == "IngressClass"
              and str((o["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION)).lower() == "true"]
    return marked[0] if len(marked) == 1 else None


def ingress_class(ing: Obj) -> str | None:
    """The class an Ingress names: ingressClassName, else the kubernetes.io/ingress.class
    annotation (ingress-nginx's order, `GetIngressClass`)."""
    named = (ing.get("spec") or {}).get("ingressClassName") or \
        (ing["metadata"].get("annotations") or {}).get(CLASS_ANNOTATION)
    return str(named) if named else None


def _label(ing: Obj) -> str:
    return f"Ingress {ing['metadata'].get('namespace', 'default')}/{ing['metadata']['name']}"


def _annotations(ing: Obj) -> nginx.Annotations:
    return nginx.read(ing["metadata"].get("annotations") or {}, frozenset({CLASS_ANNOTATION}))


def _created(ing: Obj) -> tuple[str, str, str]:
    """ingress-nginx's order of Ingresses (oldest first): which one makes a host's server."""
    meta = ing["metadata"]
    return str(meta.get("creationTimestamp") or ""), meta.get("namespace", "default"), meta["name"]


class _Builder:
    """Gateways, routes and policies, built Ingress by Ingress."""

    def __init__(self, services: dict[tuple[str, str], Obj], gateway_class: str, prefix: str,
                 default_class_name: str | None, main: list[tuple[Obj, nginx.Annotations]]) -> None:
        self.services, self.gateway_class, self.prefix = services, gateway_class, prefix
        self.default_class = default_class_name
        self.out = Conversion()
        self.gateways: dict[tuple[str, str], Obj] = {}
        self.extra: dict[tuple[str, str, str], Obj] = {}  # filters and policies by (kind, ns, name)
        # (ns, host, pathType, path) -> the main Ingress's rule there: what canaries change
        self.rules_at: dict[tuple[str, str, str, str], tuple[Obj, Obj]] = {}
        # What ingress-nginx decides per server (host), whichever Ingress asks: every path
        # of a host is a regular expression once one Ingress's use-regex or rewrite-target
        # asks (`enforceRegexModifier`); the oldest Ingress of a host makes its server
        # (and its defaultBackend serves the host's unmatched paths); the oldest Ingress
        # with a defaultBackend and no rules is the catch-all server.
        self.regex_hosts: set[str] = set()
        self.passthrough_hosts: set[str] = set()
        self.server_of: dict[str, tuple[str, str]] = {}
        self.catch_all: tuple[str, str] | None = None
        self.https_hosts: set[str] = set()  # hosts whose routes are on the HTTPS port only
        self.aliases: dict[str, list[str]] = {}  # server-alias: the first Ingress's of the host that has them
        # auth-tls: per Gateway, the client validation of the Ingresses with tls entries on it
        self.client_tls: dict[tuple[str, str], set[tuple[tuple[str, str] | None, str]]] = {}
        for ing, notes in sorted(main, key=lambda m: _created(m[0])):
            try:
                self.survey(ing, notes)
            except (AttributeError, KeyError, TypeError, ValueError):  # malformed: reported when converted
                continue

    def survey(self, ing: Obj, notes: nginx.Annotations) -> None:
        """What one Ingress decides for its hosts and Gateway (before any is converted)."""
        key = _created(ing)[1:]
        spec = ing.get("spec") or {}
        if spec.get("tls"):
            gw_key = (key[0], ingress_class(ing) or self.default_class or "default")
            self.client_tls.setdefault(gw_key, set()).add((notes.client_ca, notes.client_mode))
        for host, paths in _by_host(spec).items():
            self.server_of.setdefault(host, key)
            if notes.use_regex or any(_rewrites(notes, p) for p in paths):
                self.regex_hosts.add(host)
            if notes.ssl_passthrough and host:
                self.passthrough_hosts.add(host)
            if notes.aliases and host and host not in self.aliases:
                self.aliases[host] = notes.aliases
        if spec.get("defaultBackend") and not spec.get("rules") and self.catch_all is None:
            self.catch_all = key

    # ------------------------------------------------------------ main Ingresses

    def ingress(self, ing: Obj, label: str, notes: nginx.Annotations) -> None:
        meta, spec = ing["metadata"], ing.get("spec") or {}
        ns, name = meta.get("namespace", "default"), meta["name"]
        class_name = ingress_class(ing) or self.default_class or "default"
        gw = self.gateway(ns, class_name)
        gw_name = gw["metadata"]["name"]
        tls = spec.get("tls") or []
        if notes.client_ca is not None:
            self.client_validation(gw, (ns, class_name), label, notes)
        for entry in tls:
            self.add_https(gw, entry, label)
        default = spec.get("defaultBackend")
        routes: list[Obj] = []
        for host, paths in _by_host(spec).items():
            base = f"{self.prefix}{name}-{dns_label(host) if host else 'any'}"
            if default and self.server_of.get(host) == (ns, name) and not any(_is_root(p) for p in paths):
                # ingress-nginx: the Ingress's defaultBackend serves its server's root location
                paths = [*paths, {"path": "/", "pathType": "Prefix", "backend": default}]
            redirected = notes.force_ssl_redirect or (notes.ssl_redirect and _covered(tls, host))
            if redirected:  # its routes are on 443 only
                self.https_hosts.add(host)
            pairs = [(p, r) for p in paths if (r := self.rule(p, ns, host, base, label, notes)) is not None]
            rules = [r for _, r in pairs]
            if notes.app_root:  # ingress-nginx: `/` redirects to the app root
                rules.insert(0, {"matches": [{"path": {"type": "Exact", "value": "/"}}], "filters": [
                    {"type": "RequestRedirect", "requestRedirect": {
                        "path": {"type": "ReplaceFullPath", "replaceFullPath": notes.app_root}, "statusCode": 302}}]})
            if notes.ssl_passthrough:
                self.passthrough(gw, ns, host, paths, base, label, notes)
            if notes.www_redirect and host:
                routes += self.www_redirect(gw_name, ns, host, base, notes)
            if not rules:
                continue
            # server-alias: names the host's server answers too, unless an Ingress names them itself
            hosts = [host, *(a for a in self.aliases.get(host, []) if a not in self.server_of)] if host else []
            if not (redirected and host in self.passthrough_hosts):  # HTTPS of that host is the backend's
                route = _route(base, ns, [{"name": gw_name, "port": 443}] if redirected else [{"name": gw_name}],
                               hosts, rules)
                routes.append(route)
                for path, rule in pairs:
                    self.rules_at[(ns, host, path.get("pathType", "ImplementationSpecific"), path.get("path") or "/")] \
                        = (route, rule)
            if redirected:
                if not _covered(tls, host):
                    self.out.not_converted.append(f"{label}: force-ssl-redirect for {host or 'any host'} without "
                                                  "TLS here: HTTPS requests are not served by this Gateway")
                redirects = [{"matches": copy.deepcopy(r["matches"]), "filters": [copy.deepcopy(SSL_REDIRECT)]}
                             for r in rules]
                routes.append(_route(f"{base}-redirect", ns, [{"name": gw_name, "sectionName": "http"}],
                                     hosts, redirects))
        if default and not spec.get("rules"):
            routes += self.catch_all_route(default, ns, name, gw_name, label, notes)
        self.out.objects += routes
        self.policies(ns, f"{self.prefix}{name}", [r["metadata"]["name"] for r in routes
                                                   if r["kind"] == "HTTPRoute"], notes)

    def client_validation(self, gw: Obj, gw_key: tuple[str, str], label: str, notes: nginx.Annotations) -> None:
        """auth-tls-secret: ingress-nginx verifies client certificates per host; a Gateway does
        per port, for every host on it. So the Gateway's HTTPS port validates when every
        Ingress with tls on it asks the same; otherwise this Ingress refuses every request."""
        wanted = (notes.client_ca, notes.client_mode)
        if self.client_tls.get(gw_key, {wanted}) != {wanted}:
            notes.deny_all = True
            notes.refuse("auth-tls-secret", f"other Ingresses with TLS on Gateway {gw['metadata']['name']} do not "
                                            "ask for the same client certificates, and a Gateway validates them "
                                            "per port: every request to this Ingress is refused (403)")
            return
        ca_ns, ca_name = notes.client_ca or ("", "")
        ref: Obj = {"group": "", "kind": "Secret", "name": ca_name}
        if ca_ns != gw["metadata"]["namespace"]:
            ref["namespace"] = ca_ns
            notes.differ("auth-tls-secret", f"the Secret is in namespace {ca_ns}: a ReferenceGrant there must "
                                            "allow the Gateway to read it")
        # the Gateway's HTTPS listeners are all on 443: its default validation is that port's
        gw["spec"]["tls"] = {"frontend": {"default": {"validation": {
            "caCertificateRefs": [ref], "mode": notes.client_mode}}}}

    def catch_all_route(self, default: Obj, ns: str, name: str, gw_name: str, label: str,
                        notes: nginx.Annotations) -> list[Obj]:
        """An Ingress with a defaultBackend and no rules: ingress-nginx's catch-all server
        (hosts no Ingress names), the oldest such Ingress's."""
        if self.catch_all != (ns, name):
            self.out.not_converted.append(
                f"{label}: defaultBackend not converted: ingress-nginx's catch-all server takes the oldest "
                f"Ingress with a defaultBackend and no rules, {'/'.join(self.catch_all or ('', ''))}")
            return []
        backend = self.backend(default, ns, f"{label} defaultBackend")
        if backend is None:
            return []
        self.out.not_converted.append(
            f"{label}: defaultBackend converted with a difference: a route without hostnames, so besides the "
            "hosts no Ingress names, the paths no rule matches on the named hosts reach it too (ingress-nginx: 404)")
        return [_route(f"{self.prefix}{name}-default", ns, [{"name": gw_name}], [], [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [backend]}])]

    def passthrough(self, gw: Obj, ns: str, host: str, paths: list[Obj], base: str, label: str,
                    notes: nginx.Annotations) -> None:
        """ssl-passthrough: TLS for the host goes, by SNI and undecrypted, to the backend of
        the host's `/` path (ingress-nginx's passthrough proxy on 443)."""
        root = next((p for p in paths if (p.get("path") or "/") == "/"), None)
        if not host or root is None:
            notes.refuse("ssl-passthrough", f"{host or 'a rule without host'} has no `/` path to pass TLS to "
                                            "(ingress-nginx ignores SSL passthrough then)")
            return
        backend = self.backend(root.get("backend") or {}, ns, f"{label} ssl-passthrough {host}")
        if backend is None:
            return
        listener = f"tls-{dns_label(host)}"[:63]
        listeners = gw["spec"]["listeners"]
        if not any(ls["name"] == listener for ls in listeners):
            listeners.append({"name": listener, "port": 443, "protocol": "TLS", "hostname": host,
                              "tls": {"mode": "Passthrough"}})
        self.out.objects.append({
            "apiVersion": GATEWAY_API, "kind": "TLSRoute",
            "metadata": {"name": dns_label(f"{base}-passthrough"), "namespace": ns},
            "spec": {"parentRefs": [{"name": gw["metadata"]["name"], "sectionName": listener}],
                     "hostnames": [host], "rules": [{"backendRefs": [backend]}]}})

    def www_redirect(self, gw_name: str, ns: str, host: str, base: str, notes: nginx.Annotations) -> list[Obj]:
        """from-to-www-redirect: requests for `www.<host>` (for a `www.` host: without it)
        are redirected, 308 as ingress-nginx's http-redirect-code, to the host; not when
        some Ingress serves that name itself (ingress-nginx skips it then, too)."""
        other = host.removeprefix("www.") if host.startswith("www.") else f"www.{host}"
        if other in self.server_of or "*" in host:
            return []
        self.server_of[other] = ("", "")  # one redirect per name
        notes.differ("from-to-www-redirect", "the Location keeps a trailing `/` of the path and omits a "
                                             "default port (ingress-nginx drops the one, names the other)")
        return [_route(f"{base}-www-redirect", ns, [{"name": gw_name}], [other], [{"filters": [
            {"type": "RequestRedirect", "requestRedirect": {"hostname": host, "statusCode": 308}}]}])]

    def gateway(self, ns: str, class_name: str) -> Obj:
        return self.gateways.setdefault((ns, class_name), {
            "apiVersion": GATEWAY_API, "kind": "Gateway",
            "metadata": {"name": dns_label(self.prefix + class_name), "namespace": ns},
            "spec": {"gatewayClassName": self.gateway_class,
                     "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}})

    def add_https(self, gw: Obj, tls: Obj, label: str) -> None:
        secret = tls.get("secretName")
        if not secret:
            self.out.not_converted.append(f"{label}: a tls entry without secretName (no certificate to serve)")
            return
        listeners = gw["spec"]["listeners"]
        for host in tls.get("hosts") or [""]:
            name = f"https-{dns_label(host)}" if host else "https"
            if host in self.passthrough_hosts:
                self.out.not_converted.append(f"{label}: tls for {host} is not used: ssl-passthrough passes its "
                                              "TLS to the backend (as ingress-nginx does)")
                continue
            if any(ls["name"] == name for ls in listeners):
                continue
            listener: Obj = {"name": name[:63], "port": 443, "protocol": "HTTPS",
                             "tls": {"mode": "Terminate", "certificateRefs": [{"name": secret}]}}
            if host:
                listener["hostname"] = host
            listeners.append(listener)

    def rule(self, path: Obj, ns: str, host: str, route: str, label: str, notes: nginx.Annotations) -> Obj | None:
        value = path.get("path") or "/"
        kind = path.get("pathType", "ImplementationSpecific")
        if kind not in PATH_TYPES:
            self.out.not_converted.append(f"{label}: path {value}: pathType {kind} is not an Ingress path type")
            return None
        where = f"{label} path {value}"
        if host in self.regex_hosts:  # nginx `location ~* "^path"`, for every path of the host
            match = {"type": "RegularExpression", "value": f"(?i){value}.*"}
        else:
            match = {"type": PATH_TYPES[kind], "value": value}
        rule: Obj = {"matches": [{"path": match}]}
        if notes.redirect is not None:
            rule["filters"] = [{"type": "RequestRedirect", "requestRedirect": notes.redirect}]
            return rule
        backend = self.backend(path.get("backend") or {}, ns, where)
        if backend is None:
            return None
        filters = [{"type": "CORS", "cors": notes.cors}] if notes.cors else []
        for key, ref in (("auth-url", (notes.external_auth or {}).get("backendRef")), ("mirror-target", notes.mirror)):
            if ref and ref["namespace"] != ns:
                notes.differ(key, f"the Service is in namespace {ref['namespace']}: a ReferenceGrant there must "
                                  f"allow HTTPRoutes of {ns} to reach it")
        if notes.external_auth:  # auth_request before anything else
            filters.insert(0, {"type": "ExternalAuth", "externalAuth": {
                **notes.external_auth, "backendRef": _ref(notes.external_auth["backendRef"], ns)}})
            if notes.signin:  # error_page 401 = <the sign-in location>
                filters.insert(1, self.signin(ns, route, notes.signin))
        url_rewrite: Obj = {}
        request_headers = list(notes.request_headers)
        if _rewrites(notes, path):  # `rewrite "(?i)<path>" <target> break;`
            if notes.rewrite_regex is not None:
                filters.append(self.regex_rewrite(ns, route, value, notes.rewrite_regex[0]))
            elif notes.rewrite_full is not None:
                url_rewrite["path"] = {"type": "ReplaceFullPath", "replaceFullPath": notes.rewrite_full}
            if notes.forwarded_prefix:  # set only beside the rewrite (ingress-nginx's buildProxyPass)
                request_headers.append({"name": "X-Forwarded-Prefix", "value": notes.forwarded_prefix})
        if notes.upstream_vhost:
            url_rewrite["hostname"] = notes.upstream_vhost
        if url_rewrite:
            filters.append({"type": "URLRewrite", "urlRewrite": url_rewrite})
        # the client's own headers of the certificate's names never reach the backend
        verify_set = any(h["name"] == "ssl-client-verify" for h in request_headers)
        removed = list(notes.client_headers) + (["ssl-client-verify"] if notes.client_headers and not verify_set
                                                else [])
        if request_headers or removed:
            filters.append({"type": "RequestHeaderModifier", "requestHeaderModifier": {
                **({"set": request_headers} if request_headers else {}), **({"remove": removed} if removed else {})}})
        if notes.client_headers:
            filters.append(self.client_cert(ns, route, notes.client_headers))
        if notes.error_codes:
            filters.append(self.error_pages(ns, route, label, path.get("backend") or {}, backend, notes))
        if notes.client_check is not None:  # first: before any other filter acts
            filters.insert(0, self.client_check(ns, route, host, notes))
        if notes.response_headers:
            filters.append({"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "set": list(notes.response_headers)}})
        if notes.mirror:
            filters.append({"type": "RequestMirror", "requestMirror": {"backendRef": _ref(notes.mirror, ns)}})
        if filters:
            rule["filters"] = filters
        rule["backendRefs"] = [backend]
        if notes.session:
            rule["sessionPersistence"] = notes.session
        if notes.backend_tls:
            self.backend_tls(ns, backend["name"], notes)
        return rule

    def regex_rewrite(self, ns: str, route: str, path: str, substitution: str) -> Obj:
        """nginx `rewrite (?i)path target`: the whole path replaced, groups substituted."""
        name = dns_label(f"{route}-rewrite-{len([k for k in self.extra if k[2].startswith(route + '-rewrite-')])}")
        self.extra[("HTTPRouteFilter", ns, name)] = {
            "apiVersion": PORTICO_API, "kind": "HTTPRouteFilter", "metadata": {"name": name, "namespace": ns},
            "spec": {"urlRewrite": {"path": {"type": "ReplaceRegexMatch", "replaceRegexMatch": {
                "pattern": f"(?i)^(?:{path}).*", "substitution": substitution}}}}}
        return {"type": "ExtensionRef", "extensionRef": {"group": "gateway.portico.dev", "kind": "HTTPRouteFilter",
                                                         "name": name}}

    def client_cert(self, ns: str, route: str, headers: dict[str, str]) -> Obj:
        """auth-tls-*: the certificate's headers, a Portico HTTPRouteFilter clientCertificateHeaders."""
        name = dns_label(f"{route}-client-cert")
        self.extra[("HTTPRouteFilter", ns, name)] = {
            "apiVersion": PORTICO_API, "kind": "HTTPRouteFilter", "metadata": {"name": name, "namespace": ns},
            "spec": {"clientCertificateHeaders": [{"name": k, "value": v} for k, v in headers.items()]}}
        return {"type": "ExtensionRef", "extensionRef": {"group": "gateway.portico.dev", "kind": "HTTPRouteFilter",
                                                         "name": name}}

    def error_pages(self, ns: str, route: str, label: str, ingress_backend: Obj, backend: Obj,
                    notes: nginx.Annotations) -> Obj:
        """custom-http-errors: a Portico HTTPRouteFilter errorPages per route and backend, with
        the headers ingress-nginx sets for the rule's location ($namespace, $ingress_name,
        $service_name, $service_port: the port as the Ingress names it)."""
        port = (ingress_backend.get("service") or {}).get("port") or {}
        name = dns_label(f"{route}-errors-{backend['name']}-{backend['port']}")
        spec: Obj = {"statusCodes": list(notes.error_codes)}
        if notes.error_backend is None:
            spec["response"] = dict(nginx.BUILTIN_DEFAULT_BACKEND)
        else:
            spec["backendRef"] = {"name": notes.error_backend, "port": self.first_port(ns, notes.error_backend, notes)}
            spec["requestHeaders"] = [
                {"name": "X-Namespace", "value": ns}, {"name": "X-Ingress-Name", "value": label.split("/", 1)[1]},
                {"name": "X-Service-Name", "value": backend["name"]},
                {"name": "X-Service-Port", "value": str(port.get("number") or port.get("name") or backend["port"])}]
        self.extra[("HTTPRouteFilter", ns, name)] = {
            "apiVersion": PORTICO_API, "kind": "HTTPRouteFilter", "metadata": {"name": name, "namespace": ns},
            "spec": {"errorPages": spec}}
        return {"type": "ExtensionRef", "extensionRef": {"group": "gateway.portico.dev", "kind": "HTTPRouteFilter",
                                                         "name": name}}

    def client_check(self, ns: str, route: str, host: str, notes: nginx.Annotations) -> Obj:
        """auth-tls-verify-client optional, or on with auth-tls-error-page: the routes check the
        client certificate the Gateway accepted (a Portico HTTPRouteFilter requireClientCertificate)."""
        name = dns_label(f"{route}-client-check")
        self.extra[("HTTPRouteFilter", ns, name)] = {
            "apiVersion": PORTICO_API, "kind": "HTTPRouteFilter", "metadata": {"name": name, "namespace": ns},
            "spec": {"requireClientCertificate": dict(notes.client_check or {})}}
        if host not in self.https_hosts:
            notes.differ("auth-tls-secret", f"{host or 'a rule without host'} is served on plain HTTP too, where no "
                                            "client has a certificate: those requests are refused (400) or sent to "
                                            "the error page (ingress-nginx: not checked)")
        return {"type": "ExtensionRef", "extensionRef": {"group": "gateway.portico.dev", "kind": "HTTPRouteFilter",
                                                         "name": name}}

    def first_port(self, ns: str, service: str, notes: nginx.Annotations) -> int:
        """ingress-nginx sends to the default-backend Service's first port; without the Service
        among the inputs, 80."""
        ports = ((self.services.get((ns, service)) or {}).get("spec") or {}).get("ports") or []
        if ports and ports[0].get("port"):
            return int(ports[0]["port"])
        notes.differ("default-backend", f"the Service {ns}/{service} is not among the inputs: its port is taken "
                                        "to be 80 (ingress-nginx: its first port)")
        return 80

    def signin(self, ns: str, route: str, spec: Obj) -> Obj:
        """auth-signin: a Portico HTTPRouteFilter authSignin, one per route."""
        name = dns_label(f"{route}-signin")
        self.extra[("HTTPRouteFilter", ns, name)] = {
            "apiVersion": PORTICO_API, "kind": "HTTPRouteFilter", "metadata": {"name": name, "namespace": ns},
            "spec": {"authSignin": dict(spec)}}
        return {"type": "ExtensionRef", "extensionRef": {"group": "gateway.portico.dev", "kind": "HTTPRouteFilter",
                                                         "name": name}}

    def backend_tls(self, ns: str, service: str, notes: nginx.Annotations) -> None:
        """backend-protocol HTTPS/GRPCS: TLS to the Service, its certificate verified for
        proxy-ssl-name against the `ca.crt` of proxy-ssl-secret (a Secret of the Ingress's
        namespace: a BackendTLSPolicy names its CA locally), else the system CAs."""
        name = dns_label(f"{self.prefix}{service}-backend-tls")
        validation: Obj = {"hostname": notes.ssl_name or f"{service}.{ns}.svc"}
        secret = notes.ssl_secret
        if secret is not None and secret[0] == ns:
            validation["caCertificateRefs"] = [{"group": "", "kind": "Secret", "name": secret[1]}]
            if not notes.ssl_verify:
                notes.differ("proxy-ssl-verify", "ingress-nginx verifies the backend's certificate only with "
                                                 "\"on\"; Portico always does, against the Secret's ca.crt")
        else:
            if secret is not None:
                notes.refuse("proxy-ssl-secret", f"{secret[0]}/{secret[1]} is not in the Ingress's namespace "
                                                 f"{ns} (a BackendTLSPolicy names its CA locally); the system CAs "
                                                 "are trusted instead")
            validation["wellKnownCACertificates"] = "System"
            if not notes.ssl_verify:
                notes.differ("backend-protocol", "ingress-nginx does not verify an HTTPS backend's certificate "
                                                 "by default; Portico verifies it against the system CAs (give "
                                                 "proxy-ssl-secret with its CA)")
        self.extra.setdefault(("BackendTLSPolicy", ns, name), {
            "apiVersion": GATEWAY_API, "kind": "BackendTLSPolicy", "metadata": {"name": name, "namespace": ns},
            "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": service}], "validation": validation}})

    def policies(self, ns: str, name: str, routes: list[str], notes: nginx.Annotations) -> None:
        if not routes:
            return
        targets = [{"group": GATEWAY_GROUP, "kind": "HTTPRoute", "name": r} for r in routes]
        traffic = dict(notes.traffic)
        if notes.fallback is not None:
            # no port: the Service's first port when the policy is served, as ingress-nginx takes it
            traffic["fallback"] = {"name": notes.fallback}
        specs: list[tuple[str, Obj | None]] = [
            ("BackendTrafficPolicy", traffic or None),
            ("SecurityPolicy", _security(notes)),
            ("RateLimitPolicy", notes.rate_limit),
        ]
        for kind, spec in specs:
            if spec is not None:
                self.extra[(kind, ns, dns_label(name))] = {
                    "apiVersion": PORTICO_API, "kind": kind, "metadata": {"name": dns_label(name), "namespace": ns},
                    "spec": {"targetRefs": targets, **copy.deepcopy(spec)}}

    # ------------------------------------------------------------ canaries

    def canary(self, ing: Obj, label: str, canary: nginx.Canary) -> None:
        """A canary Ingress's backends join the main Ingress's rules of the same host and
        path: by header or cookie (rules that outrank the main rule), or by weight."""
        ns = ing["metadata"].get("namespace", "default")
        for host, paths in _by_host(ing.get("spec") or {}).items():
            for path in paths:
                value = path.get("path") or "/"
                found = self.rules_at.get((ns, host, path.get("pathType", "ImplementationSpecific"), value))
                where = f"{label} (canary) {host or '*'}{value}"
                if found is None or "backendRefs" not in found[1]:
                    self.out.not_converted.append(f"{where}: no main Ingress serves this host and path")
                    continue
                backend = self.backend(path.get("backend") or {}, ns, where)
                if backend is not None:
                    self.split(found[0], found[1], backend, canary)

    @staticmethod
    def split(route: Obj, rule: Obj, backend: Obj, canary: nginx.Canary) -> None:
        rules = route["spec"]["rules"]
        path = rule["matches"][0]["path"]
        headers = []
        if canary.header:  # nginx: "always" unless a value or pattern is given
            kind, value = (("RegularExpression", canary.header_pattern) if canary.header_pattern and
                           not canary.header_value else ("Exact", canary.header_value or "always"))
            headers.append({"type": kind, "name": canary.header, "value": value})
        if canary.cookie:
            headers.append({"type": "RegularExpression", "name": "cookie",
                            "value": f"(.*;\\s*)?{re.escape(canary.cookie)}=always(;.*)?"})
        for header in headers:  # more header matches: these outrank the main rule (GEP precedence)
            extra = {**copy.deepcopy(rule), "matches": [{"path": copy.deepcopy(path), "headers": [header]}],
                     "backendRefs": [backend]}
            rules.insert(rules.index(rule), extra)
        if canary.weight is not None:
            weight = max(0, min(canary.weight, canary.total))
            rule["backendRefs"] = [{**rule["backendRefs"][0], "weight": canary.total - weight},
                                   {**backend, "weight": weight}]

    # ------------------------------------------------------------ backends

    def backend(self, backend: Obj, ns: str, where: str) -> Obj | None:
        if "resource" in backend:
            self.out.not_converted.append(f"{where}: a resource backend ({backend['resource'].get('kind')}): "
                                          "HTTPRoute backends are Services here")
            return None
        service = backend.get("service") or {}
        port = service.get("port") or {}
        number = port.get("number")
        if number is None and port.get("name"):
            svc = self.services.get((ns, service.get("name", "")))
            number = next((p.get("port") for p in ((svc or {}).get("spec") or {}).get("ports", [])
                           if p.get("name") == port["name"]), None)
            if number is None:
                self.out.not_converted.append(f"{where}: Service port {port['name']!r} by name needs the Service "
                                              f"{ns}/{service.get('name')} among the inputs")
                return None
        if not service.get("name") or number is None:
            self.out.not_converted.append(f"{where}: a backend without a Service name and port")
            return None
        return {"name": service["name"], "port": int(number)}


def _security(notes: nginx.Annotations) -> Obj | None:
    """The SecurityPolicy of an Ingress: refuse all (authentication not converted), else
    its source ranges (authorization) and basic auth (basicAuth), or none."""
    if notes.deny_all:
        return {"authorization": {"defaultAction": "Deny", "rules": [
            {"action": "Deny", "principal": {"clientCIDRs": ["0.0.0.0/0", "::/0"]}}]}}
    spec: Obj = {}
    if notes.allow_cidrs:
        spec["authorization"] = {"defaultAction": "Deny", "rules": [
            {"action": "Allow", "principal": {"clientCIDRs": notes.allow_cidrs}}]}
    if notes.basic_auth:
        spec["basicAuth"] = {"users": dict(notes.basic_auth)}
    return spec or None


def _by_host(spec: Obj) -> dict[str, list[Obj]]:
    by_host: dict[str, list[Obj]] = {}
    for rule in spec.get("rules") or []:
        by_host.setdefault(rule.get("host", ""), []).extend(((rule.get("http") or {}).get("paths")) or [])
    return by_host


def _ref(ref: Obj, ns: str) -> Obj:
    """A backendRef to a Service named by its cluster DNS name: its namespace only when
    it is another than the route's (then a ReferenceGrant there must allow it)."""
    out = {"name": ref["name"], "port": ref["port"]}
    return out if ref["namespace"] == ns else {**out, "namespace": ref["namespace"]}


def _rewrites(notes: nginx.Annotations, path: Obj) -> bool:
    """ingress-nginx rewrites where rewrite-target is set and differs from the path (`needsRewrite`)."""
    return bool(notes.rewrite_target) and notes.rewrite_target != (path.get("path") or "/")


def _is_root(path: Obj) -> bool:
    return (path.get("path") or "/") == "/" and path.get("pathType", "ImplementationSpecific") != "Exact"


def _covered(tls: list[Obj], host: str) -> bool:
    """A host some tls entry names (wildcards included); a tls entry without hosts covers all."""
    for entry in tls:
        for name in entry.get("hosts") or [host]:
            wildcard = name.startswith("*.") and host.endswith(name[1:]) and host.count(".") == name.count(".")
            if name == host or wildcard:
                return bool(entry.get("secretName"))
    return False


def _route(name: str, ns: str, parents: list[Obj], hostnames: list[str], rules: list[Obj]) -> Obj:
    spec: Obj = {"parentRefs": parents, "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": {"name": dns_label(name), "namespace": ns},
            "spec": spec}


def dns_label(value: str) -> str:
    """A DNS label from a host or class name (`*.example.com` -> `wildcard-example-com`)."""
    label = re.sub(r"[^a-z0-9-]+", "-", value.lower().replace("*", "wildcard")).strip("-")
    return label[:63].strip("-") or "x"
