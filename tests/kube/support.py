"""Running the API server double and a lightkube client against it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable

import kmock
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from kube.emulator import KubeAPI
from portico.provider.kubernetes import KINDS, Kind


@contextlib.asynccontextmanager
async def running(kinds: Iterable[Kind] = KINDS, **options: object) -> AsyncIterator[tuple[KubeAPI, AsyncClient]]:
    """The emulator with `kinds` installed (the Lease kind too), and a client of it."""
    api = KubeAPI(**options)  # type: ignore[arg-type]
    for k in kinds:
        api.install(k.group, k.version, k.kind, k.plural, k.namespaced)
    api.install("coordination.k8s.io", "v1", "Lease", "leases")
    async with api, kmock.Server(api) as server:
        api.base_url = str(server.url).rstrip("/")
        client = AsyncClient(config=kubeconfig(api.base_url))
        try:
            yield api, client
        finally:
            await client.close()


def obj(api_version: str, kind: str, name: str, namespace: str | None = "default",
        **fields: object) -> dict[str, object]:
    meta: dict[str, object] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **fields}


def kubeconfig(url: str, token: str = "test-token") -> KubeConfig:
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
