"""Kubernetes mode serves the traffic policies of every target kind: the status
(`ancestors`) of a BackendTrafficPolicy on a Service, a ClientTrafficPolicy on the
Gateway and the upstream XBackendTrafficPolicy (group gateway.networking.x-k8s.io) is
written on the status subresource, naming the Gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kube.support import CLASS, GATEWAY, SERVICE, obj, route, running, until
from kube.test_controller import options
from portico.controller import serve_controller

pytestmark = pytest.mark.timeout(120)
PORTICO = "gateway.portico.dev"
X = "gateway.networking.x-k8s.io"
TO_SERVICE = [{"group": "", "kind": "Service", "name": "web"}]
TO_GATEWAY = [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}]


def test_policies_of_every_target_kind_get_their_ancestors(tmp_path: Path) -> None:
    policies = [
        (PORTICO, "backendtrafficpolicies", obj(f"{PORTICO}/v1alpha1", "BackendTrafficPolicy", "web", "apps", spec={
            "targetRefs": TO_SERVICE, "healthCheck": {"active": {"type": "TCP"}},
            "circuitBreaker": {"maxConnections": 100}})),
        (PORTICO, "clienttrafficpolicies", obj(f"{PORTICO}/v1alpha1", "ClientTrafficPolicy", "gw", "apps", spec={
            "targetRefs": TO_GATEWAY, "clientIPDetection": {"xForwardedFor": {"numTrustedHops": 1}}})),
        (X, "xbackendtrafficpolicies", obj(f"{X}/v1alpha1", "XBackendTrafficPolicy", "web", "apps", spec={
            "targetRefs": TO_SERVICE, "retryConstraint": {"budget": {"percent": 30}}})),
    ]

    async def main() -> None:
        async with running() as (api, client):
            for o in (CLASS, GATEWAY, SERVICE, route("r"), *(p for _, _, p in policies)):
                api.put(o)
            stop = asyncio.Event()
            controller = asyncio.create_task(serve_controller(options(tmp_path), stop, client, start_envoy=False))

            def ancestors() -> dict[str, list[Any]] | None:
                out = {}
                for group, plural, p in policies:
                    name = p["metadata"]["name"]  # type: ignore[index]
                    stored = api.get(group, plural, "apps", name) or {}
                    found = (stored.get("status") or {}).get("ancestors")
                    if not found:
                        return None
                    out[plural] = found
                return out

            await until(ancestors, what="every policy's ancestors")
            found = ancestors()
            assert found is not None
            for plural, entries in found.items():
                assert [a["ancestorRef"]["name"] for a in entries] == ["gw"], plural
                accepted = next(c for c in entries[0]["conditions"] if c["type"] == "Accepted")
                assert accepted["status"] == "True", (plural, accepted)
            stop.set()
            await controller

    asyncio.run(main())
