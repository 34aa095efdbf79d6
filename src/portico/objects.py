"""Object identity shared by the provider, the store and the translator."""

from __future__ import annotations

from typing import Any, NamedTuple

GATEWAY_GROUP = "gateway.networking.k8s.io"
XBACKEND_GROUP = "gateway.networking.x-k8s.io"  # XBackend, XBackendTrafficPolicy (experimental)
PORTICO_GROUP = "gateway.portico.dev"
# kinds of the core group ("" in Kubernetes) and their API group
CORE_GROUP = ""


class ObjectKey(NamedTuple):
    group: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name}"


# kind -> namespaced? (objects of other kinds are stored but not translated)
CLUSTER_SCOPED = {"GatewayClass", "Namespace"}


def group_of(api_version: str) -> str:
    """'gateway.networking.k8s.io/v1' -> 'gateway.networking.k8s.io'; 'v1' -> ''."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def key_of(raw: dict[str, Any]) -> ObjectKey:
    meta = raw.get("metadata") or {}
    kind = str(raw.get("kind", ""))
    namespace = "" if kind in CLUSTER_SCOPED else str(meta.get("namespace") or "default")
    return ObjectKey(group_of(str(raw.get("apiVersion", ""))), kind, namespace, str(meta.get("name", "")))
