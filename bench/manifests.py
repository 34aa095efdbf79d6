"""Synthetic Gateway API manifests for the benchmarks (plain dicts, Kubernetes shape).

One GatewayClass and one Gateway (`bench/gw`, one HTTP listener that allows
routes from every namespace); routes are told apart by hostname
(`r<i>.<ns>.bench`), so each one is its own virtual host, as in a multi-tenant
gateway. Backends are Services whose EndpointSlices point at loopback ports.
"""

from __future__ import annotations

from typing import Any

GATEWAY_NS = "bench"
GATEWAY_NAME = "gw"
LISTENER_PORT = 80  # plus the run's --port-offset
CLASS = "portico"
CONTROLLER = "portico.dev/gateway-controller"

Doc = dict[str, Any]


def gateway_docs(port: int = LISTENER_PORT) -> list[Doc]:
    return [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": CLASS},
         "spec": {"controllerName": CONTROLLER}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NS},
         "spec": {"gatewayClassName": CLASS,
                  "listeners": [{"name": "http", "protocol": "HTTP", "port": port,
                                 "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
    ]


def namespace_doc(name: str) -> Doc:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service_docs(name: str, namespace: str, port: int, addresses: tuple[str, ...] = ("127.0.0.1",)) -> list[Doc]:
    """A Service (port 8080, named `http`) and its EndpointSlice: `addresses` on `port`."""
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"ports": [{"name": "http", "port": 8080}]}},
        endpoint_slice(name, namespace, port, addresses),
    ]


def endpoint_slice(service: str, namespace: str, port: int, addresses: tuple[str, ...] = ("127.0.0.1",)) -> Doc:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": service, "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


def hostname(i: int, namespace: str = "default") -> str:
    return f"r{i}.{namespace}.bench"


def http_route(name: str, namespace: str, host: str, backends: list[tuple[str, int]],
               path: str = "/", filters: list[Doc] | None = None) -> Doc:
    """An HTTPRoute on the bench Gateway: `host`, one rule (PathPrefix `path`)
    to `backends` [(service, weight)] on port 8080."""
    rule: Doc = {"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                 "backendRefs": [{"name": s, "port": 8080, "weight": w} for s, w in backends]}
    if filters:
        rule["filters"] = filters
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"parentRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NS}],
                 "hostnames": [host], "rules": [rule]},
    }


def routes(count: int, namespace: str = "default", service: str = "echo", start: int = 0) -> list[Doc]:
    """`count` HTTPRoutes r<start>..; each its own hostname, all to `service`."""
    return [http_route(f"r{i}", namespace, hostname(i, namespace), [(service, 1)])
            for i in range(start, start + count)]


def as_list(docs: list[Doc]) -> Doc:
    """One `kind: List` document (fast to write and to load for thousands of objects)."""
    return {"apiVersion": "v1", "kind": "List", "items": docs}
