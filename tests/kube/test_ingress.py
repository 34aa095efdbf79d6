"""Kubernetes mode serves Ingress objects of Portico's IngressClass and Portico's
policies: the Ingress's status.loadBalancer and the policy's ancestors are written,
and what of an Ingress is not served is a Warning Event on it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kube.support import CLASS, GATEWAY, SERVICE, obj, route, running, until
from kube.test_controller import options
from portico.controller import serve_controller

pytestmark = pytest.mark.timeout(120)
NET = "networking.k8s.io"


def ingress() -> dict[str, Any]:
    return obj(f"{NET}/v1", "Ingress", "shop", "apps", spec={
        "ingressClassName": "portico",
        "rules": [{"host": "shop.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
    ) | {"metadata": {"name": "shop", "namespace": "apps", "annotations": {
        "nginx.ingress.kubernetes.io/limit-rps": "5", "nginx.ingress.kubernetes.io/server-snippet": "deny all;"}}}


def test_ingress_and_policies_in_kubernetes_mode(tmp_path: Path) -> None:
    async def main() -> None:
        async with running() as (api, client):
            api.install("", "v1", "Event", "events")
            for o in (CLASS, GATEWAY, SERVICE, route("r"),
                      obj(f"{NET}/v1", "IngressClass", "portico", None,
                          spec={"controller": "portico.dev/ingress-controller"}),
                      ingress(),
                      obj("gateway.portico.dev/v1alpha1", "RateLimitPolicy", "r", "apps", spec={
                          "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r"}],
                          "local": {"rules": [{"limit": {"requests": 5, "unit": "Second"}}]}})):
                api.put(o)
            stop = asyncio.Event()
            controller = asyncio.create_task(serve_controller(options(tmp_path), stop, client, start_envoy=False))

            def address() -> str | None:
                lb = ((api.get(NET, "ingresses", "apps", "shop") or {}).get("status") or {}).get("loadBalancer", {})
                return (lb.get("ingress") or [{}])[0].get("ip")

            await until(address, what="the Ingress's status.loadBalancer")
            assert str(address()).startswith("127.")

            def accepted() -> bool:
                stored = api.get("gateway.portico.dev", "ratelimitpolicies", "apps", "r") or {}
                return any(c["type"] == "Accepted" and c["status"] == "True"
                           for a in (stored.get("status") or {}).get("ancestors", []) for c in a["conditions"])

            await until(accepted, what="the policy's ancestor status")

            def warning() -> list[dict[str, Any]]:
                return [e for (_, plural, *_), e in api.store.items() if plural == "events"
                        and e["involvedObject"]["name"] == "shop" and "server-snippet" in e["message"]]

            await until(warning, what="a Warning Event naming the annotation")
            events = warning()
            assert events[0]["type"] == "Warning" and events[0]["involvedObject"]["kind"] == "Ingress"
            # kubectl describe shows an Event only when it names the object's uid
            uid = api.get(NET, "ingresses", "apps", "shop")["metadata"]["uid"]  # type: ignore[index]
            assert events[0]["involvedObject"]["uid"] == uid
            stop.set()
            await controller

    asyncio.run(main())
