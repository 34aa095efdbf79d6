"""Every kind Portico reads or writes, in one table (`KINDS`), and the views the rest of
the system derives from it: the translator's models (`models.MODELS`), the kinds
Kubernetes mode watches (`provider.kubernetes.KINDS`) and writes status to, the
built-in kinds validation checks (`validation.CORE_KINDS`), the targets of each policy
kind (`translator.policies`), and the RBAC and persona roles `portico install` renders.

A new kind is one row here (and its CRD in `portico/crds`, its model in `models`);
`tests/test_kinds.py` checks the rows against the CRDs Portico ships.

Pure data, importing nothing of Portico's (models are named, not imported): every layer
may read it (`objects` derives which kinds are cluster-scoped from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GATEWAY_GROUP = "gateway.networking.k8s.io"
XBACKEND_GROUP = "gateway.networking.x-k8s.io"  # the Gateway API's experimental kinds (XBackend, ...)
PORTICO_GROUP = "gateway.portico.dev"
CORE_GROUP = ""  # Kubernetes' core group (apiVersion "v1")
# who manages objects of a kind, for the Gateway API's aggregated persona ClusterRoles
Persona = Literal["infrastructure-provider", "cluster-operator", "application-developer"]


@dataclass(frozen=True)
class KindSpec:
    """One kind: what it is, who writes what of it, and how each mode gets it."""

    group: str
    kind: str
    plural: str
    versions: tuple[str, ...]  # the versions served; Kubernetes mode watches the first (the storage version)
    namespaced: bool = True
    model: str | None = None  # its class in `portico.models` (the translator reads it); None: stored, not read
    crd: bool = True  # Portico ships its CRD (schema and CEL validation); False: built into Kubernetes
    # "ours": Portico writes its status (its own entries beside other controllers' on Gateway API
    # kinds); "input": its status is read (a Service's load balancer); None: neither
    status: Literal["ours", "input"] | None = None
    targets: tuple[tuple[str, str], ...] = ()  # a policy kind: the (group, kind) its targetRefs may name
    # Kubernetes mode: "all" objects; "filtered": only what a reference can use (Secrets with a key
    # pair or CA, ConfigMaps' CA data: `provider.kubernetes.kept`); None: not watched
    watch: Literal["all", "filtered"] | None = "all"
    persona: Persona | None = None


G, X, P = GATEWAY_GROUP, XBACKEND_GROUP, PORTICO_GROUP
_ROUTES = ((G, "HTTPRoute"), (G, "GRPCRoute"))
_GATEWAY = ((G, "Gateway"),)
_BACKENDS = ((CORE_GROUP, "Service"), (X, "XBackend"), (P, "Backend"))

KINDS: tuple[KindSpec, ...] = (
    # Gateway API (the experimental channel: a superset of standard)
    KindSpec(G, "GatewayClass", "gatewayclasses", ("v1", "v1beta1"), namespaced=False, model="GatewayClass",
             status="ours", persona="infrastructure-provider"),
    KindSpec(G, "Gateway", "gateways", ("v1", "v1beta1"), model="Gateway", status="ours", persona="cluster-operator"),
    KindSpec(G, "ListenerSet", "listenersets", ("v1",), model="ListenerSet", status="ours",
             persona="cluster-operator"),
    KindSpec(G, "HTTPRoute", "httproutes", ("v1", "v1beta1"), model="HTTPRoute", status="ours",
             persona="application-developer"),
    KindSpec(G, "GRPCRoute", "grpcroutes", ("v1",), model="GRPCRoute", status="ours",
             persona="application-developer"),
    KindSpec(G, "TLSRoute", "tlsroutes", ("v1", "v1alpha2", "v1alpha3"), model="TLSRoute", status="ours",
             persona="application-developer"),
    KindSpec(G, "TCPRoute", "tcproutes", ("v1", "v1alpha2"), model="TCPRoute", status="ours",
             persona="application-developer"),
    KindSpec(G, "UDPRoute", "udproutes", ("v1", "v1alpha2"), model="UDPRoute", status="ours",
             persona="application-developer"),
    KindSpec(G, "ReferenceGrant", "referencegrants", ("v1beta1", "v1"), model="ReferenceGrant",
             persona="cluster-operator"),
    KindSpec(G, "BackendTLSPolicy", "backendtlspolicies", ("v1", "v1alpha3"), model="BackendTLSPolicy",
             status="ours", targets=((CORE_GROUP, "Service"),), persona="cluster-operator"),
    # Portico's own (its Backend below, with XBackend)
    KindSpec(P, "PorticoProxy", "porticoproxies", ("v1alpha1",), model="PorticoProxy",
             persona="infrastructure-provider"),
    KindSpec(P, "BackendTrafficPolicy", "backendtrafficpolicies", ("v1alpha1",), model="BackendTrafficPolicy",
             status="ours", targets=_ROUTES + _GATEWAY + _BACKENDS, persona="application-developer"),
    KindSpec(P, "SecurityPolicy", "securitypolicies", ("v1alpha1",), model="SecurityPolicy", status="ours",
             targets=_ROUTES + _GATEWAY, persona="application-developer"),
    KindSpec(P, "RateLimitPolicy", "ratelimitpolicies", ("v1alpha1",), model="RateLimitPolicy", status="ours",
             targets=_ROUTES + _GATEWAY, persona="application-developer"),
    KindSpec(P, "ClientTrafficPolicy", "clienttrafficpolicies", ("v1alpha1",), model="ClientTrafficPolicy",
             status="ours", targets=_GATEWAY, persona="cluster-operator"),
    KindSpec(P, "HTTPRouteFilter", "httproutefilters", ("v1alpha1",), model="PorticoHTTPRouteFilter",
             persona="application-developer"),
    # the Gateway API's experimental backends (beside Portico's Backend)
    KindSpec(X, "XBackend", "xbackends", ("v1alpha1",), model="XBackend", persona="application-developer"),
    KindSpec(X, "XBackendTrafficPolicy", "xbackendtrafficpolicies", ("v1alpha1",), model="XBackendTrafficPolicy",
             status="ours", targets=_BACKENDS, persona="application-developer"),
    # any address (FQDN or IP): the cluster operator's, not aggregated to edit
    KindSpec(P, "Backend", "backends", ("v1alpha1",), model="PorticoBackend", persona="cluster-operator"),
    # Ingress objects of Portico's IngressClass are served (`portico.ingress`): their status written
    KindSpec("networking.k8s.io", "Ingress", "ingresses", ("v1",), crd=False, status="ours"),
    KindSpec("networking.k8s.io", "IngressClass", "ingressclasses", ("v1",), namespaced=False, crd=False),
    # built-in inputs
    KindSpec(CORE_GROUP, "Namespace", "namespaces", ("v1",), namespaced=False, model="Namespace", crd=False),
    KindSpec(CORE_GROUP, "Service", "services", ("v1",), model="Service", crd=False, status="input"),
    KindSpec("discovery.k8s.io", "EndpointSlice", "endpointslices", ("v1",), model="EndpointSlice", crd=False),
    KindSpec(CORE_GROUP, "Secret", "secrets", ("v1",), model="Secret", crd=False, watch="filtered"),
    KindSpec(CORE_GROUP, "ConfigMap", "configmaps", ("v1",), model="ConfigMap", crd=False, watch="filtered"),
    # the Gateway API CRDs themselves (their bundle-version annotation: GatewayClass SupportedVersion)
    KindSpec("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions", ("v1",),
             namespaced=False, crd=False, watch="filtered"),
)

# ---------------------------------------------------------------- views

BY_GROUP_KIND: dict[tuple[str, str], KindSpec] = {(k.group, k.kind): k for k in KINDS}
WATCHED = tuple(k for k in KINDS if k.watch is not None)
# (group, kind) whose status Portico writes: a status-only change of one is not translated
STATUS_OURS = frozenset((k.group, k.kind) for k in KINDS if k.status == "ours")
POLICY_KINDS = tuple(k for k in KINDS if k.targets)
# kinds stored and served without a model of their own (`portico.ingress`); the control
# loop's own list of them (notices.SERVED_OTHER_KINDS) is to become this view
SERVED_OTHER_KINDS = frozenset((k.group, k.kind) for k in KINDS if k.model is None)


def targets_of(kind: str) -> tuple[tuple[str, str], ...]:
    """The (group, kind) a policy kind's targetRefs may name."""
    return next(k.targets for k in POLICY_KINDS if k.kind == kind)
