"""The per-Gateway objects of data plane "kubernetes" as the strict double (and so a
cluster) accepts them: names valid for their kinds whatever the Gateway and listener
names, an owner with a uid for Gateways synthesized from Ingress objects, and the
PorticoProxy's HPA and PodDisruptionBudget allowed by the shipped RBAC."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kube.emulator import KubeAPI
from kube.support import CLASS, SERVICE, data_plane_options, obj, route, running, until
from kube.validation import validate
from portico.controller import ControllerOptions, serve_controller
from portico.infra.kubernetes import Settings, render, resource_name
from portico.infra.pki import CertificateAuthority
from portico.ir import GatewayInfra, InfraListener

pytestmark = pytest.mark.timeout(120)
G = "gateway.networking.k8s.io"
NET = "networking.k8s.io"


@pytest.mark.parametrize(("gateway", "listeners"), [
    ("web.v2", [InfraListener("http", 80, 80, "HTTP")]),
    ("g" * 63, [InfraListener("http", 80, 80, "HTTP")]),
    ("gw", [InfraListener("8080", 8080, 8080, "HTTP")]),
    ("gw", [InfraListener("dns-server-tcp", 53, 53, "TCP"), InfraListener("dns-server-udp", 53, 53, "UDP")]),
    ("gw", [InfraListener("a-very-long-listener-name", 443, 443, "HTTPS"),
            InfraListener("a-very-long-listener-name-2", 8443, 8443, "HTTPS")]),
])
def test_generated_names_are_valid_for_their_kinds(gateway: str, listeners: list[InfraListener]) -> None:
    infra = GatewayInfra("apps", gateway, "portico", tuple(listeners))
    objects = render(infra, "uid", CertificateAuthority.create(), Settings(image="envoy:test"))
    for o in objects:
        assert validate(o["kind"], o, None) == [], o["kind"]
    service = next(o for o in objects if o["kind"] == "Service")
    assert len(service["spec"]["ports"]) == len(listeners)


def test_names_stay_distinct() -> None:
    assert resource_name("apps", "web.v2") != resource_name("apps", "web-v2")
    assert resource_name("apps", "g" * 63) != resource_name("other", "g" * 63)
    assert resource_name("apps", "gw") == "portico-gw"  # a name that is valid stays readable


def options(tmp: Path) -> ControllerOptions:
    return data_plane_options(tmp)


async def controlled(api: KubeAPI, client: Any, tmp: Path, check: Any, what: str) -> None:
    stop = asyncio.Event()
    controller = asyncio.create_task(serve_controller(options(tmp), stop, client))
    try:
        await until(check, timeout=20, what=what)
    finally:
        stop.set()
        await controller


def test_ingress_gateways_are_owned_by_their_ingress_class(tmp_path: Path) -> None:
    async def main() -> None:
        async with running() as (api, client):
            ingress_class = api.put(obj(f"{NET}/v1", "IngressClass", "portico", None,
                                        spec={"controller": "portico.dev/ingress-controller"}))
            api.put(SERVICE)
            api.put(obj(f"{NET}/v1", "Ingress", "shop", "apps", spec={"ingressClassName": "portico", "rules": [
                {"host": "shop.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                    "service": {"name": "web", "port": {"number": 80}}}}]}}]}))
            await controlled(api, client, tmp_path,
                             lambda: api.get("apps", "deployments", "apps", "portico-ingress-portico"),
                             "the Ingress Gateway's Deployment")
            deployment = api.get("apps", "deployments", "apps", "portico-ingress-portico")
            assert deployment is not None
            owner = deployment["metadata"]["ownerReferences"][0]
            assert (owner["kind"], owner["uid"]) == ("IngressClass", ingress_class["metadata"]["uid"])
            api.remove(NET, "ingressclasses", "", "portico")  # its class gone, the data plane goes
            await until(lambda: api.get("apps", "deployments", "apps", "portico-ingress-portico") is None,
                        what="the Deployment collected")

    asyncio.run(main())


def test_a_porticoproxy_hpa_and_pdb_are_applied(tmp_path: Path) -> None:
    async def main() -> None:
        async with running() as (api, client):
            proxy = obj("gateway.portico.dev/v1alpha1", "PorticoProxy", "scaled", "apps", spec={
                "hpa": {"maxReplicas": 4}, "podDisruptionBudget": {"minAvailable": 1}})
            gateway = obj(f"{G}/v1", "Gateway", "gw", "apps", spec={
                "gatewayClassName": "portico", "infrastructure": {"parametersRef": {
                    "group": "gateway.portico.dev", "kind": "PorticoProxy", "name": "scaled"}},
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
            for o in (CLASS, proxy, gateway, SERVICE, route("web")):
                api.put(o)
            await controlled(api, client, tmp_path, lambda: api.get("policy", "poddisruptionbudgets", "apps",
                                                                    "portico-gw"), "the PodDisruptionBudget")
            assert api.get("autoscaling", "horizontalpodautoscalers", "apps", "portico-gw") is not None
            assert not [e for e in api.audit if e.code == 403], [e for e in api.audit if e.code == 403]

    asyncio.run(main())
