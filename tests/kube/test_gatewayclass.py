"""GatewayClass in a cluster: SupportedVersion from the installed Gateway API CRDs'
bundle-version annotation, and the gateway-exists finalizer while Gateways use it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kube.support import CLASS, GATEWAY, running, until
from kube.test_controller import options
from portico.controller import serve_controller

pytestmark = pytest.mark.timeout(120)
G = "gateway.networking.k8s.io"
FINALIZER = "gateway-exists-finalizer.gateway.networking.k8s.io"


def crd(plural: str, bundle: str) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{G}", "annotations": {f"{G}/bundle-version": bundle}},
            "spec": {"group": G, "names": {"plural": plural, "kind": plural.title()}, "scope": "Namespaced",
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {}}]}}


def condition(api: Any, type_: str) -> dict[str, Any]:
    gc = api.get(G, "gatewayclasses", "", "portico") or {}
    return next((c for c in (gc.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def finalizers(api: Any) -> list[str]:
    return list(((api.get(G, "gatewayclasses", "", "portico") or {}).get("metadata") or {}).get("finalizers") or [])


def test_supported_version_follows_the_installed_crds_and_the_finalizer_the_gateways(tmp_path: Path) -> None:
    async def main() -> None:
        async with running() as (api, client):
            api.install("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                        namespaced=False)
            for o in (CLASS, GATEWAY, crd("gateways", "v1.0.0"), crd("httproutes", "v1.0.0")):
                api.put(o)
            stop = asyncio.Event()
            controller = asyncio.create_task(serve_controller(options(tmp_path), stop, client, start_envoy=False))
            try:
                await until(lambda: condition(api, "SupportedVersion").get("status") == "False",
                            what="SupportedVersion False for v1.0.0 CRDs")
                assert condition(api, "SupportedVersion")["reason"] == "UnsupportedVersion"
                assert "v1.0.0" in condition(api, "SupportedVersion")["message"]
                assert condition(api, "Accepted")["status"] == "True"  # best effort, as the spec allows
                await until(lambda: FINALIZER in finalizers(api), what="the finalizer while a Gateway uses it")
                for plural in ("gateways", "httproutes"):  # the CRDs upgraded
                    api.put(crd(plural, "v1.4.1"))
                await until(lambda: condition(api, "SupportedVersion").get("status") == "True",
                            what="SupportedVersion True for v1.4.1 CRDs")
                api.remove(G, "gateways", "apps", "gw")
                await until(lambda: FINALIZER not in finalizers(api), what="the finalizer gone with the Gateway")
            finally:
                stop.set()
                await controller

    asyncio.run(main())
