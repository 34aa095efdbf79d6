"""Clusters with an older Gateway API release (v1.2-v1.4): TLSRoute, TCPRoute and
UDPRoute served at v1alpha2 only are watched at the version discovery reports, and
their status is written there."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from kube.support import CLASS, SERVICE, obj, running, until
from kube.test_controller import ME, options
from portico.controller import serve_controller
from portico.provider.kubernetes import KINDS

pytestmark = pytest.mark.timeout(120)
G = "gateway.networking.k8s.io"
OLD = {"TLSRoute", "TCPRoute", "UDPRoute"}


def test_routes_of_an_older_release_are_served_at_their_version(tmp_path: Path) -> None:
    kinds = [replace(k, version="v1alpha2") if k.kind in OLD else k for k in KINDS]

    async def main() -> None:
        async with running(kinds) as (api, client):
            gateway = obj(f"{G}/v1", "Gateway", "gw", "apps", spec={"gatewayClassName": "portico", "listeners": [
                {"name": "tcp", "port": 5000, "protocol": "TCP"}]})
            tcp = obj(f"{G}/v1alpha2", "TCPRoute", "db", "apps", spec={
                "parentRefs": [{"name": "gw", "sectionName": "tcp"}],
                "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]})
            for o in (CLASS, gateway, SERVICE, tcp):
                api.put(o)
            stop = asyncio.Event()
            controller = asyncio.create_task(serve_controller(options(tmp_path), stop, client, start_envoy=False))

            def accepted() -> bool:
                stored = api.get(G, "tcproutes", "apps", "db") or {}
                return any(p["controllerName"] == ME and any(c["type"] == "Accepted" and c["status"] == "True"
                                                               for c in p["conditions"])
                           for p in (stored.get("status") or {}).get("parents", []))

            try:
                await until(accepted, timeout=20, what="the v1alpha2 TCPRoute's status")
            finally:
                stop.set()
                await controller
            assert any(e.resource == "tcproutes" and e.subresource == "status" and e.code == 200
                       for e in api.audit)

    asyncio.run(main())
