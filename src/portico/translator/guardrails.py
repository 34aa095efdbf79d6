"""Backends no route reaches unless the platform owner allows it: the cluster's own
Kubernetes API server and the link-local / cloud metadata endpoints (issue 29, the
guardrails: exposing either through a Gateway hands the Internet the cluster's or the
node's credentials).

- KubernetesAPIServer: the Service `default/kubernetes`, the addresses of its
  EndpointSlices (whatever backend names them: another Service, a Backend, an
  XBackend), and the names `kubernetes.default[.svc[.cluster.local]]`.
- Metadata: link-local addresses (169.254.0.0/16, fe80::/10: AWS, GCP, Azure and
  OpenStack metadata at 169.254.169.254, ECS at 169.254.170.2), fd00:ec2::254 (AWS over
  IPv6), 100.100.100.200 (Alibaba Cloud), and the names `metadata.google.internal` and
  `metadata`.

Refused for every backend kind, a Service's EndpointSlices included (the local-backend
rules of `localaccess` trust the platform's EndpointSlices; these do not), unless the
PorticoProxy of every GatewayClass the route is served through lists the category for
the backend's namespace in spec.protectedBackends (the shape of spec.localBackends). A
link-local address its spec.localBackends cidrs allow for the namespace is allowed too:
that is where a platform owner already says which local addresses a namespace may use.
The route gets ResolvedRefs=False, reason RefNotPermitted, naming the endpoint, the
category and the field that allows it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from portico.ir import UNIX_PREFIX, Endpoint
from portico.models import (
    PORTICO_GROUP,
    EndpointSlice,
    GatewayClass,
    LocalBackendNamespaces,
    Model,
    PorticoProxy,
    Resource,
)
from portico.translator.context import Context, selector_matches
from portico.translator.localaccess import LocalAccess, ip_of

API_SERVER = "KubernetesAPIServer"
METADATA = "Metadata"
API_SERVER_SERVICE = ("default", "kubernetes")
API_SERVER_NAMES = frozenset({"kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata"})
METADATA_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32"))


class ProtectedBackendRule(Model):
    """One entry of a PorticoProxy's spec.protectedBackends."""

    namespaces: LocalBackendNamespaces
    categories: list[str]


class Guardrails:
    """The rules above over one snapshot."""

    def __init__(self, ctx: Context, access: LocalAccess) -> None:
        self.ctx = ctx
        self.access = access
        self._api_server: frozenset[str] | None = None
        self._hosts: dict[str, str | None] = {}  # endpoint host -> its category (None: neither)

    def api_server_addresses(self) -> frozenset[str]:
        if self._api_server is None:
            ns, name = API_SERVER_SERVICE
            self._api_server = frozenset(
                str(ip_of(a) or a) for s in self.ctx.all(EndpointSlice, "EndpointSlice")
                if s.metadata.namespace == ns and s.metadata.labels.get("kubernetes.io/service-name") == name
                for e in s.endpoints for a in e.addresses)
        return self._api_server

    def category(self, kind: str, namespace: str, name: str, endpoint: Endpoint | None) -> str | None:
        if endpoint is None:
            return API_SERVER if kind == "Service" and (namespace, name) == API_SERVER_SERVICE else None
        if endpoint.address.startswith(UNIX_PREFIX):
            return None
        host = endpoint.address.strip("[]").rstrip(".").lower()
        if host not in self._hosts:  # (thousands of routes to a few endpoints: each parsed once)
            self._hosts[host] = self._host_category(host)
        return self._hosts[host]

    def _host_category(self, host: str) -> str | None:
        ip = ip_of(host)
        if host in API_SERVER_NAMES or (ip is not None and str(ip) in self.api_server_addresses()):
            return API_SERVER
        if host in METADATA_NAMES or (ip is not None and any(ip.version == n.version and ip in n
                                                             for n in METADATA_NETWORKS)):
            return METADATA
        return None

    def problem(self, route: Resource | None, kind: str, namespace: str, name: str,
                endpoints: Iterable[Endpoint], classes: list[GatewayClass] | None = None) -> str | None:
        """Why the route may not send to this backend, if so (`classes`: the GatewayClasses
        whose rules apply, when there is no route)."""
        for e in (None, *endpoints):
            found = self.category(kind, namespace, name, e)
            if found is None or (found == METADATA and self.access.link_local_allowed):
                continue
            if classes is None:
                classes = self.access.classes(route) if route is not None else []
            refusing = [c.name for c in classes if not self.allows(c, namespace, found) and not (
                # a local address localBackends allows for the namespace is allowed (issue 23's rule)
                found == METADATA and e is not None and self.access.class_allows(c, namespace, e))]
            if refusing or not classes:
                what = "is the Service of" if e is None else f"has endpoint {e.address}:{e.port}, which is"
                label = "the cluster's Kubernetes API server" if found == API_SERVER else \
                    "a link-local or cloud metadata endpoint"
                how = "" if found == API_SERVER else \
                    " or localBackends; for every namespace, the controller's --allow-link-local-backends"
                return (f"{kind} {namespace}/{name} {what} {label} ({found}); the parameters of GatewayClass "
                        f"{', '.join(refusing) or '-'} do not allow it for namespace {namespace} "
                        f"(PorticoProxy spec.protectedBackends{how})")
        return None

    def allows(self, gc: GatewayClass, namespace: str, category: str) -> bool:
        labels = self.ctx.namespace_labels(namespace)
        for rule in self.rules(gc):
            ns = rule.namespaces
            selected = ns.from_ == "All" or (ns.from_ == "Selector" and ns.selector is not None
                                              and selector_matches(ns.selector, labels))
            if selected and category in rule.categories:
                return True
        return False

    def rules(self, gc: GatewayClass) -> list[ProtectedBackendRule]:
        ref = gc.spec.parameters_ref or {}
        if (ref.get("group"), ref.get("kind")) != (PORTICO_GROUP, "PorticoProxy"):
            return []
        proxy = self.ctx.get(PorticoProxy, "PorticoProxy", str(ref.get("namespace") or ""), str(ref.get("name", "")))
        out = []
        for item in (proxy.spec.get("protectedBackends") if proxy else None) or []:
            try:
                out.append(ProtectedBackendRule.model_validate(item))
            except ValueError:
                continue  # the CRD's schema rejects such an object before it gets here
        return out
