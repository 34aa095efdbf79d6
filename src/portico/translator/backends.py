"""Backend references: Service → Envoy cluster, through EndpointSlices.

Rules (BackendRef and the standalone contract): a Service port is matched to
the EndpointSlice port by name, as kube-proxy does; endpoints that are not
ready are skipped; ExternalName Services resolve by DNS; one cluster per
Service port, shared by every route that uses it. What policies make of a
backend's cluster (its settings, its TLS variant) is theirs to say
(`ClusterPolicies`, implemented by `translator.policies`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from portico.ir import UNIX_PREFIX, AppProtocol, Cluster, Endpoint, TLSCertificate, UpstreamTLS, WeightedBackend
from portico.models import (
    PORTICO_GROUP,
    BackendObjectReference,
    PorticoBackend,
    Resource,
    Secret,
    Service,
    ServicePort,
    XBackend,
)
from portico.objects import CORE_GROUP, GATEWAY_GROUP, XBACKEND_GROUP, ObjectKey
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.guardrails import Guardrails
from portico.translator.localaccess import LocalAccess
from portico.translator.secrets import tls_key_pair
from portico.translator.snapshot import Discovered
from portico.translator.upstreamtls import validation_tls

if TYPE_CHECKING:
    from portico.translator.gateway import ListenerState, RouteEntry

# Service/EndpointSlice appProtocol values Portico can speak to (Gateway API
# "Backend Protocol" GEP-1911); None means plain HTTP/1.1 for HTTP routes.
APP_PROTOCOLS: dict[str | None, AppProtocol] = {
    None: "http1",
    "http": "http1",
    "kubernetes.io/h2c": "h2c",
    "kubernetes.io/ws": "ws",
    "grpc": "h2c",
    # HTTP over TLS: the TLS itself comes from a BackendTLSPolicy (Gateway API
    # originates TLS to backends only through one); upstream tests spell it both ways.
    "https": "http1",
    "HTTPS": "http1",
}
# XBackend and Backend spec.protocol (None: what the route speaks)
XBACKEND_PROTOCOLS: dict[str, AppProtocol] = {
    "HTTP": "http1", "HTTP11": "http1", "HTTP2": "h2c", "H2C": "h2c", "MCP": "http1", "TCP": "tcp",
}


@dataclass(frozen=True)
class Resolved:
    cluster: Cluster | None
    problem: Cond | None = None


def backend_problem(reason: str, message: str) -> Resolved:
    return Resolved(None, Cond("ResolvedRefs", False, reason, message))


Origin = tuple[str, str, str]  # (namespace, Service, port name) of a cluster; ("backend:"/"xbackend:" name)
T = TypeVar("T")
K = TypeVar("K", bound=Resource)
# Route kinds whose rules RuleMemo keeps: their translation reads the route and the
# objects of other kinds (Services, EndpointSlices, ReferenceGrants, ...), never each other.
MEMO_KINDS = frozenset({"HTTPRoute", "GRPCRoute"})


# (route object, its translated rules, the clusters they registered, its entries per
# (listener protocol, listener port, Gateway namespace, Gateway name, listener): what a
# route's entries depend on besides its rules, the redirect port and Gateway policies)
_Memoized = tuple[Resource, Any, list[tuple[Cluster, Origin]], dict[tuple[str, int, str, str, str], list[Any]]]


class ClusterPolicies(Protocol):
    """What the policies of a backend make of its cluster (`translator.policies.Policies`)."""

    def configure(self, cluster: Cluster, backend: ObjectKey, section: str | None) -> Cluster:
        """`cluster` as the policies of `backend` (Service port `section`) configure it."""

    def originate(self, cluster: Cluster, origin: Origin) -> Cluster | None:
        """The variant of `cluster` a policy makes for reaching it (TLS), else None."""


class RuleMemo:
    """Incremental translation: each route's translated rules from the previous
    translation, with the clusters they registered, reused while the route is the
    same object (the store keeps unchanged objects identical across snapshots) and
    no object of another kind changed; any such change drops them all. Only the
    routes of the last translation are kept (no growth under churn)."""

    def __init__(self) -> None:
        self.world: dict[ObjectKey, Resource] = {}
        self.discovered: Mapping[str, Discovered] = {}
        self.previous: dict[ObjectKey, _Memoized] = {}
        self.current: dict[ObjectKey, _Memoized] = {}
        self.hits = 0

    def begin(self, objects: dict[ObjectKey, Resource], discovered: Mapping[str, Discovered]) -> None:
        world = {k: v for k, v in objects.items() if k.kind not in MEMO_KINDS}
        # dict equality compares values by identity first: cheap when nothing changed; OpenID
        # discovery documents are read by the rules of routes with a SecurityPolicy oidc
        self.previous = self.current if world == self.world and discovered == self.discovered else {}
        self.world, self.discovered, self.current, self.hits = world, discovered, {}, 0


class Backends:
    """Resolves backendRefs and collects the clusters they need."""

    def __init__(self, ctx: Context, policies: ClusterPolicies, memo: RuleMemo | None = None) -> None:
        self.ctx = ctx
        self.clusters: dict[str, Cluster] = {}
        # cluster name -> (namespace, Service, Service port name): what policies target
        self.origins: dict[str, Origin] = {}
        self.memo = memo
        self._policies = policies
        self.access = LocalAccess(ctx)  # which endpoints on Envoy's machine a backend may name
        self.guardrails = Guardrails(ctx, self.access)  # the API server and metadata endpoints
        self._recording: list[tuple[Cluster, Origin]] | None = None
        if memo is not None:
            memo.begin(ctx.snapshot.objects, ctx.snapshot.discovered)

    def rules(self, route: Resource, translate: Callable[[], T]) -> T:
        """`translate()` (a route's rules), or its result from the previous translation
        when the memo has one for this very route object; its clusters are registered
        again in the same order either way."""
        memo = self.memo
        if memo is None:
            return translate()
        key = route.key
        hit = memo.previous.get(key)
        if hit is not None and hit[0] is route:
            for cluster, origin in hit[2]:
                self.add(cluster, origin)
            memo.current[key] = hit
            memo.hits += 1
            return hit[1]  # type: ignore[no-any-return]
        recorded: list[tuple[Cluster, Origin]] = []
        self._recording = recorded
        try:
            result = translate()
        finally:
            self._recording = None
        memo.current[key] = (route, result, recorded, {})
        return result

    def entries(self, route: Resource, served: Callable[[ListenerState], list[RouteEntry]]) -> Callable[
            [ListenerState], list[RouteEntry]]:
        """`served` (a route's entries on a listener, with the listener's policies) memoized
        with the route's rules: an unchanged route keeps the very same IR route objects, so
        comparing the new IR with the previous one (control loop, xDS builder) is a matter
        of identity."""
        hit = self.memo.current.get(route.key) if self.memo is not None else None
        if hit is None or hit[0] is not route:
            return served
        cache = hit[3]

        def memoized(listener: ListenerState) -> list[RouteEntry]:
            gw = listener.gateway
            key = (listener.protocol, listener.spec.port, gw.namespace, gw.name, listener.qualified_name)
            found = cache.get(key)
            if found is None:
                self._recording = hit[2]  # variant clusters of Gateway policies, with the rules'
                try:
                    found = cache[key] = served(listener)
                finally:
                    self._recording = None
            return list(found)

        return memoized

    def resolve(self, route: Resource, ref: BackendObjectReference, default_protocol: AppProtocol,
                originate_tls: bool = True) -> Resolved:
        """The cluster `ref` sends to: the Service port's, or its TLS variant when a
        BackendTLSPolicy targets it and `originate_tls` (not for streams forwarded as is)."""
        resolved = self._resolve(route, ref, default_protocol)
        if resolved.cluster is None or not originate_tls:
            return resolved
        return Resolved(self.originating(resolved.cluster))

    def originating(self, cluster: Cluster) -> Cluster:
        """`cluster`, or its TLS variant when a BackendTLSPolicy targets its Service (port)."""
        origin = self.origins[cluster.name]
        variant = self._policies.originate(cluster, origin)
        return cluster if variant is None else self.add(variant, origin)

    def originating_backends(self, backends: tuple[WeightedBackend, ...]) -> tuple[WeightedBackend, ...]:
        """`originating` for every backend (TLSRoutes on listeners that terminate TLS)."""
        return tuple(WeightedBackend(self.originating(self.clusters[b.cluster]).name, b.weight,
                                     b.request_headers, b.response_headers) if b.cluster else b for b in backends)

    def _resolve(self, route: Resource, ref: BackendObjectReference, default_protocol: AppProtocol) -> Resolved:
        if ref.group == XBACKEND_GROUP and ref.kind == "XBackend":
            return self.xbackend(route, ref, default_protocol)
        if ref.group == PORTICO_GROUP and ref.kind == "Backend":
            return self.static_backend(route, ref, default_protocol)
        if ref.group not in (CORE_GROUP, "core") or ref.kind != "Service":
            return backend_problem("InvalidKind", f"backendRef kind {ref.group}/{ref.kind} is not supported")
        ns = ref.namespace or route.namespace
        if not self.ctx.reference_allowed(GATEWAY_GROUP, route.kind, route.namespace, CORE_GROUP, "Service",
                                          ns, ref.name):
            return backend_problem("RefNotPermitted", f"no ReferenceGrant allows Service {ns}/{ref.name}")
        svc = self.ctx.get(Service, "Service", ns, ref.name)
        if svc is None:
            return backend_problem("BackendNotFound", f"Service {ns}/{ref.name} not found")
        if svc.spec.type == "ExternalName":
            return self.external_name(route, svc, ref, default_protocol)
        port = next((p for p in svc.spec.ports if p.port == ref.port), None)
        if port is None:
            return backend_problem("BackendNotFound", f"Service {ns}/{ref.name} has no port {ref.port}")
        protocol = self.protocol(port.app_protocol, default_protocol)
        if protocol is None:
            return backend_problem("UnsupportedProtocol",
                                   f"appProtocol {port.app_protocol} of Service {ns}/{ref.name} is not supported")
        cluster = Cluster(cluster_name(ns, ref.name, port.port, protocol), self.endpoints(svc, port), protocol)
        refused = self.refused(route, "Service", ns, ref.name, cluster.endpoints, platform=True)
        if refused is not None:
            return refused
        return Resolved(self.add(self.configured(cluster, CORE_GROUP, "Service", ns, ref.name, port.name),
                                 (ns, ref.name, port.name)))

    def external_name(self, route: Resource, svc: Service, ref: BackendObjectReference,
                      default: AppProtocol) -> Resolved:
        if not svc.spec.external_name or ref.port is None:
            return backend_problem("BackendNotFound", f"Service {svc.namespace}/{svc.name} has no externalName")
        refused = self.refused(route, "Service", svc.namespace, svc.name, (Endpoint(svc.spec.external_name, ref.port),),
                               platform=self.access.services_local)
        if refused is not None:
            return refused
        port = next((p for p in svc.spec.ports if p.port == ref.port), None)
        protocol = self.protocol(port.app_protocol if port else None, default) or default
        name = cluster_name(svc.namespace, svc.name, ref.port, protocol)
        cluster = Cluster(name, (Endpoint(svc.spec.external_name, ref.port),), protocol, dns=True)
        port_name = port.name if port else ""
        cluster = self.configured(cluster, CORE_GROUP, "Service", svc.namespace, svc.name, port_name)
        return Resolved(self.add(cluster, (svc.namespace, svc.name, port_name)))

    def xbackend(self, route: Resource, ref: BackendObjectReference, default: AppProtocol) -> Resolved:
        """XBackend (ExternalHostname): a DNS-resolved cluster to hostname:port, speaking
        spec.protocol (else what the route speaks), with TLS as spec.tls says."""
        found = self.lookup(route, ref, XBACKEND_GROUP, XBackend)
        if isinstance(found, Resolved):
            return found
        ns, backend = found
        spec = backend.spec
        if spec.external_hostname is None:
            return backend_problem("BackendNotFound", f"XBackend {ns}/{ref.name} has no externalHostname")
        refused = self.refused(route, "XBackend", ns, ref.name,
                               (Endpoint(spec.external_hostname.hostname, spec.port.port),))
        if refused is not None:
            return refused
        protocol = self.spoken(f"XBackend {ns}/{ref.name}", spec.protocol, default)
        if isinstance(protocol, Resolved):
            return protocol
        tls, problem = self.xbackend_tls(backend)
        if problem is not None:
            return problem
        if tls is not None and protocol == "h2c":
            protocol = "h2"
        name = f"xbackend/{ns}/{ref.name}/{spec.port.port}" + ("" if protocol in ("http1", "tcp") else f"/{protocol}")
        cluster = Cluster(name, (Endpoint(spec.external_hostname.hostname, spec.port.port),), protocol, dns=True,
                          tls=tls)
        cluster = self.configured(cluster, XBACKEND_GROUP, "XBackend", ns, ref.name, None)
        # an origin no BackendTLSPolicy can name (they target Services): XBackends bring their own TLS
        return Resolved(self.add(cluster, (ns, f"xbackend:{ref.name}", "")))

    def static_backend(self, route: Resource, ref: BackendObjectReference, default: AppProtocol) -> Resolved:
        """gateway.portico.dev Backend: its endpoints as one cluster (DNS-resolved when it
        names hostnames), speaking spec.protocol or what the route speaks."""
        found = self.lookup(route, ref, PORTICO_GROUP, PorticoBackend)
        if isinstance(found, Resolved):
            return found
        ns, backend = found
        spec = backend.spec
        protocol = self.spoken(f"Backend {ns}/{ref.name}", spec.protocol, default)
        if isinstance(protocol, Resolved):
            return protocol
        endpoints = []
        for e in spec.endpoints:
            if e.ip is not None:
                endpoints.append(Endpoint(e.ip.address, e.ip.port, e.weight))
            elif e.fqdn is not None:
                endpoints.append(Endpoint(e.fqdn.hostname, e.fqdn.port, e.weight))
            elif e.unix is not None:
                endpoints.append(Endpoint(UNIX_PREFIX + e.unix.path, 0, e.weight))
        refused = self.refused(route, "Backend", ns, ref.name, tuple(endpoints))
        if refused is not None:
            return refused
        dns = any(e.fqdn is not None for e in spec.endpoints)
        suffix = "" if protocol in ("http1", "tcp") else f"/{protocol}"
        cluster = Cluster(f"backend/{ns}/{ref.name}{suffix}", tuple(endpoints), protocol, dns=dns)
        cluster = self.configured(cluster, PORTICO_GROUP, "Backend", ns, ref.name, None)
        return Resolved(self.add(cluster, (ns, f"backend:{ref.name}", "")))

    def lookup(self, route: Resource, ref: BackendObjectReference, group: str,
               cls: type[K]) -> tuple[str, K] | Resolved:
        """The backend object `ref` names (its namespace, it), or why the route may not use it."""
        ns = ref.namespace or route.namespace
        if not self.ctx.reference_allowed(GATEWAY_GROUP, route.kind, route.namespace, group, ref.kind, ns, ref.name):
            return backend_problem("RefNotPermitted", f"no ReferenceGrant allows {ref.kind} {ns}/{ref.name}")
        found = self.ctx.get(cls, ref.kind, ns, ref.name)
        if found is None:
            return backend_problem("BackendNotFound", f"{ref.kind} {ns}/{ref.name} not found")
        return ns, found

    @staticmethod
    def spoken(what: str, protocol: str | None, default: AppProtocol) -> AppProtocol | Resolved:
        """What Envoy speaks to an XBackend or Backend: its spec.protocol, else what the
        route speaks; a TCP backend only for TCP/TLS routes, and only those to it."""
        spoken = XBACKEND_PROTOCOLS.get(protocol or "", default)
        if (spoken == "tcp") != (default in ("tcp", "udp")) or default == "udp":
            return backend_problem("UnsupportedProtocol", f"{what} speaks {protocol}, the route does not")
        return spoken

    def refused(self, route: Resource, kind: str, namespace: str, name: str,
                endpoints: tuple[Endpoint, ...], platform: bool = False) -> Resolved | None:
        """ResolvedRefs=False RefNotPermitted when the backend names an endpoint on Envoy's
        machine that the route may not reach (`translator.localaccess`); checked before its
        cluster exists, so Envoy never gets one to such an endpoint."""
        problem = (self.access.problem(route, kind, namespace, name, endpoints, platform)
                   or self.guardrails.problem(route, kind, namespace, name, endpoints))
        return backend_problem("RefNotPermitted", problem) if problem is not None else None

    def xbackend_tls(self, backend: XBackend) -> tuple[UpstreamTLS | None, Resolved | None]:
        tls = backend.spec.tls
        if tls is None or tls.mode == "None":
            return None, None
        where = f"XBackend {backend.namespace}/{backend.name}"
        v = tls.validation
        if v is None:
            return None, backend_problem("InvalidKind", f"{where}: tls.validation is required with mode {tls.mode}")
        upstream, conds = validation_tls(self.ctx, backend.namespace, v)
        if upstream is None:
            return None, backend_problem("InvalidKind", f"{where}: " + "; ".join(c.message for c in conds))
        if tls.mode != "ClientAndServer":
            return upstream, None
        ref = tls.client_certificate_ref or {}
        secret_ns = ref.get("namespace") or backend.namespace
        if secret_ns != backend.namespace and not self.ctx.reference_allowed(
                XBACKEND_GROUP, "XBackend", backend.namespace, CORE_GROUP, "Secret", secret_ns, ref.get("name", "")):
            return None, backend_problem("RefNotPermitted", f"{where}: no ReferenceGrant allows Secret "
                                                            f"{secret_ns}/{ref.get('name')}")
        secret = self.ctx.get(Secret, "Secret", secret_ns, ref.get("name", ""))
        pair = tls_key_pair(secret) if secret is not None else "the Secret is not found"
        if isinstance(pair, str):
            return None, backend_problem("InvalidKind", f"{where}: client certificate {secret_ns}/"
                                                        f"{ref.get('name')}: {pair}")
        return replace(upstream, client_cert_secret=f"{secret_ns}/{ref.get('name')}"), None

    def xbackend_secrets(self) -> tuple[TLSCertificate, ...]:
        """The client certificates of XBackends (tls.mode ClientAndServer), served over SDS
        (read from the clusters: a memoized route resolves nothing again)."""
        out = {}
        for c in self.clusters.values():
            name = c.tls.client_cert_secret if c.tls is not None and c.name.startswith("xbackend/") else None
            if name is None or name in out:
                continue
            ns, _, secret_name = name.partition("/")
            secret = self.ctx.get(Secret, "Secret", ns, secret_name)
            pair = tls_key_pair(secret) if secret is not None else None
            if isinstance(pair, tuple):
                out[name] = TLSCertificate(name, *pair)
        return tuple(out[n] for n in sorted(out))

    def configured(self, cluster: Cluster, group: str, kind: str, namespace: str, name: str,
                   section: str | None) -> Cluster:
        """`cluster` as the policies of its Service (port), XBackend or Backend configure it."""
        return self._policies.configure(cluster, ObjectKey(group, kind, namespace, name), section)

    @staticmethod
    def protocol(app_protocol: str | None, default: AppProtocol) -> AppProtocol | None:
        if default in ("tcp", "udp", "h2c") and app_protocol in (None, "http", "grpc"):
            return default  # L4 routes proxy bytes; GRPCRoute always speaks HTTP/2
        return APP_PROTOCOLS.get(app_protocol)

    def endpoints(self, svc: Service, port: ServicePort) -> tuple[Endpoint, ...]:
        out: list[Endpoint] = []
        for es in self.ctx.slices.get((svc.namespace, svc.name), []):
            if es.address_type != "IPv4":
                continue
            number = next((p.port for p in es.ports or [] if (p.name or "") == port.name
                           and p.protocol == port.protocol), None)
            if number is None:
                continue
            for ep in es.endpoints:
                if ep.conditions.ready is not False:  # nil means ready (EndpointConditions)
                    out.extend(Endpoint(a, number) for a in ep.addresses)
        return tuple(sorted(set(out), key=lambda e: (e.address, e.port)))

    def add(self, cluster: Cluster, origin: tuple[str, str, str]) -> Cluster:
        if self._recording is not None:
            self._recording.append((cluster, origin))
        self.clusters.setdefault(cluster.name, cluster)
        self.origins.setdefault(cluster.name, origin)
        return self.clusters[cluster.name]


def cluster_name(namespace: str, service: str, port: int, protocol: AppProtocol) -> str:
    suffix = "" if protocol in ("http1", "tcp") else f"/{protocol}"
    return f"{namespace}/{service}/{port}{suffix}"
