"""Running the strict API server double and a lightkube client against it: the
client is the controller's ServiceAccount, authorized by the RBAC objects of
`portico install render` (what a cluster installed with it would allow)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import kmock
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from kube.emulator import KubeAPI
from kube.rbac import service_account
from portico import install
from portico.controller import ControllerOptions
from portico.kubeapi import Kind
from portico.provider.kubernetes import KINDS

RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
CONTROLLER = service_account("portico-system", install.NAME)
# what the controller writes besides the kinds it watches
WRITTEN = (("coordination.k8s.io", "v1", "Lease", "leases"), ("", "v1", "Event", "events"),
           ("apps", "v1", "Deployment", "deployments"), ("", "v1", "ServiceAccount", "serviceaccounts"),
           ("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
           ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"))


def rbac_objects() -> list[dict[str, object]]:
    """The RBAC objects `portico install render` ships."""
    return [o for o in install.render() if o["kind"] in RBAC_KINDS]


@contextlib.asynccontextmanager
async def running(kinds: Iterable[Kind] = KINDS, **options: object) -> AsyncIterator[tuple[KubeAPI, AsyncClient]]:
    """The strict double with `kinds` installed (and the kinds the controller writes), the
    shipped RBAC in force, and a client of it as the controller's ServiceAccount."""
    api = KubeAPI(**options)  # type: ignore[arg-type]
    for k in kinds:
        api.install(k.group, k.version, k.kind, k.plural, k.namespaced)
    for group, version, kind, plural in WRITTEN:
        api.install(group, version, kind, plural)
    api.authorize(rbac_objects())
    async with api, kmock.Server(api) as server:
        api.base_url = str(server.url).rstrip("/")
        client = controller_client(api, "controller")
        try:
            yield api, client
        finally:
            await client.close()


def controller_client(api: KubeAPI, name: str) -> AsyncClient:
    """A client of the controller's ServiceAccount, known to the audit log as `name`."""
    return AsyncClient(config=kubeconfig(api.base_url, api.token(name, CONTROLLER)))


def obj(api_version: str, kind: str, name: str, namespace: str | None = "default",
        **fields: object) -> dict[str, object]:
    meta: dict[str, object] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **fields}


def kubeconfig(url: str, token: str) -> KubeConfig:
    return KubeConfig.from_dict({
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester",
                                                      "namespace": "default"}}],
        "current-context": "emulator",
    })


async def until(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll until `condition()` is truthy."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


GATEWAY_API = "gateway.networking.k8s.io/v1"
CLASS = obj(GATEWAY_API, "GatewayClass", "portico", None, spec={"controllerName": "portico.dev/gateway-controller"})
GATEWAY = obj(GATEWAY_API, "Gateway", "gw", "apps", spec={
    "gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})


def route(name: str, namespace: str = "apps", **spec: object) -> dict[str, object]:
    return obj(GATEWAY_API, "HTTPRoute", name, namespace, spec={
        "parentRefs": [{"name": "gw", "namespace": "apps"}],
        "rules": [{"backendRefs": [{"name": "web", "port": 80}]}], **spec})


SERVICE = obj("v1", "Service", "web", "apps", spec={"ports": [{"name": "http", "port": 80}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def data_plane_options(tmp: Path, xds_port: int | None = None, **overrides: object) -> ControllerOptions:
    """A single controller (no election unless overridden) that renders each Gateway's data
    plane and serves its xDS on loopback; objects it waits for are looked for again soon."""
    settings: dict[str, object] = {
        "health_port": free_port(), "state_dir": str(tmp / "state"), "leader_elect": False,
        "data_plane": "kubernetes", "xds_listen_host": "127.0.0.1", "xds_listen_port": xds_port or free_port(),
        "retry_missing": 0.5, **overrides}
    return ControllerOptions(**settings)  # type: ignore[arg-type]
