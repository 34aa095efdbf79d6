"""Backend references: Service → Envoy cluster, through EndpointSlices.

Rules (BackendRef and the standalone contract): a Service port is matched to
the EndpointSlice port by name, as kube-proxy does; endpoints that are not
ready are skipped; ExternalName Services resolve by DNS; one cluster per
Service port, shared by every route that uses it. A Service (port) that a
BackendTLSPolicy targets resolves to its TLS cluster (`backendtls`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from portico.ir import AppProtocol, Cluster, Endpoint, WeightedBackend
from portico.models import BackendObjectReference, Resource, Service, ServicePort
from portico.objects import CORE_GROUP, GATEWAY_GROUP, ObjectKey
from portico.translator.backendtls import BackendTLS
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.policies import RoutePolicies

if TYPE_CHECKING:
    from portico.translator.gateway import ListenerState

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


@dataclass(frozen=True)
class Resolved:
    cluster: Cluster | None
    problem: Cond | None = None


def backend_problem(reason: str, message: str) -> Resolved:
    return Resolved(None, Cond("ResolvedRefs", False, reason, message))


Origin = tuple[str, str, str]
T = TypeVar("T")
E = TypeVar("E")
# Route kinds whose rules RuleMemo keeps: their translation reads the route and the
# objects of other kinds (Services, EndpointSlices, ReferenceGrants, ...), never each other.
MEMO_KINDS = frozenset({"HTTPRoute", "GRPCRoute"})


# (route object, its translated rules, the clusters they registered, its entries per
# (listener protocol, listener port): what a route's entries depend on besides its rules)
_Memoized = tuple[Resource, Any, list[tuple[Cluster, Origin]], dict[tuple[str, int], list[Any]]]


class RuleMemo:
    """Incremental translation: each route's translated rules from the previous
    translation, with the clusters they registered, reused while the route is the
    same object (the store keeps unchanged objects identical across snapshots) and
    no object of another kind changed; any such change drops them all. Only the
    routes of the last translation are kept (no growth under churn)."""

    def __init__(self) -> None:
        self.world: dict[ObjectKey, Resource] = {}
        self.previous: dict[ObjectKey, _Memoized] = {}
        self.current: dict[ObjectKey, _Memoized] = {}
        self.hits = 0

    def begin(self, objects: dict[ObjectKey, Resource]) -> None:
        world = {k: v for k, v in objects.items() if k.kind not in MEMO_KINDS}
        # dict equality compares values by identity first: cheap when nothing changed
        self.previous = self.current if world == self.world else {}
        self.world, self.current, self.hits = world, {}, 0


class Backends:
    """Resolves backendRefs and collects the clusters they need."""

    def __init__(self, ctx: Context, memo: RuleMemo | None = None) -> None:
        self.ctx = ctx
        self.clusters: dict[str, Cluster] = {}
        # cluster name -> (namespace, Service, Service port name): what policies target
        self.origins: dict[str, Origin] = {}
        self.memo = memo
        self.tls = BackendTLS(ctx)
        self.policies = RoutePolicies(ctx)
        self._recording: list[tuple[Cluster, Origin]] | None = None
        if memo is not None:
            memo.begin(ctx.snapshot.objects)

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

    def entries(self, route: Resource, entries: Callable[[ListenerState], list[E]]) -> Callable[
            [ListenerState], list[E]]:
        """`entries` (a route's entries on a listener), memoized with the route's rules: an
        unchanged route keeps the very same IR route objects, so comparing the new IR with
        the previous one (control loop, xDS builder) is a matter of identity."""
        hit = self.memo.current.get(route.key) if self.memo is not None else None
        if hit is None or hit[0] is not route:
            return entries
        cache = hit[3]

        def memoized(listener: ListenerState) -> list[E]:
            key = (listener.protocol, listener.spec.port)
            found = cache.get(key)
            if found is None:
                found = cache[key] = entries(listener)
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
        variant = self.tls.variant(cluster, origin)
        return self.add(variant, origin) if variant is not None else cluster

    def originating_backends(self, backends: tuple[WeightedBackend, ...]) -> tuple[WeightedBackend, ...]:
        """`originating` for every backend (TLSRoutes on listeners that terminate TLS)."""
        return tuple(WeightedBackend(self.originating(self.clusters[b.cluster]).name, b.weight,
                                     b.request_headers, b.response_headers) if b.cluster else b for b in backends)

    def _resolve(self, route: Resource, ref: BackendObjectReference, default_protocol: AppProtocol) -> Resolved:
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
            return self.external_name(svc, ref, default_protocol)
        port = next((p for p in svc.spec.ports if p.port == ref.port), None)
        if port is None:
            return backend_problem("BackendNotFound", f"Service {ns}/{ref.name} has no port {ref.port}")
        protocol = self.protocol(port.app_protocol, default_protocol)
        if protocol is None:
            return backend_problem("UnsupportedProtocol",
                                   f"appProtocol {port.app_protocol} of Service {ns}/{ref.name} is not supported")
        return Resolved(self.add(Cluster(cluster_name(ns, ref.name, port.port, protocol),
                                         self.endpoints(svc, port), protocol), (ns, ref.name, port.name)))

    def external_name(self, svc: Service, ref: BackendObjectReference, default: AppProtocol) -> Resolved:
        if not svc.spec.external_name or ref.port is None:
            return backend_problem("BackendNotFound", f"Service {svc.namespace}/{svc.name} has no externalName")
        port = next((p for p in svc.spec.ports if p.port == ref.port), None)
        protocol = self.protocol(port.app_protocol if port else None, default) or default
        name = cluster_name(svc.namespace, svc.name, ref.port, protocol)
        cluster = Cluster(name, (Endpoint(svc.spec.external_name, ref.port),), protocol, dns=True)
        return Resolved(self.add(cluster, (svc.namespace, svc.name, port.name if port else "")))

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
