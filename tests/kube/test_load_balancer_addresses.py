"""Gateway addresses from the load balancer (issue 26 item 3), against the strict double:
a LoadBalancer Service without an ingress address gives the Gateway no address and
Programmed=False AddressNotAssigned (never its cluster IP, which no outside client
reaches); a load balancer known by its DNS name gives a Hostname-typed address, and an
Ingress it serves gets `hostname` in its status, not `ip`."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest

from kube.support import CLASS, GATEWAY, SERVICE, data_plane_options, obj, route, running, until
from kube.test_ingress import ingress
from portico.controller import serve_controller

pytestmark = pytest.mark.timeout(120)
G, NET = "gateway.networking.k8s.io", "networking.k8s.io"
ELB = "k8s-apps-gw-0123456789.elb.eu-west-1.amazonaws.com"


def test_no_address_until_the_load_balancer_has_one_and_hostnames_are_hostnames(tmp_path: Path) -> None:
    async def main() -> None:
        async with running() as (api, client):
            for o in (CLASS, GATEWAY, SERVICE, route("web"), ingress(),
                      obj(f"{NET}/v1", "IngressClass", "portico", None,
                          spec={"controller": "portico.dev/ingress-controller"})):
                api.put(o)
            opts = data_plane_options(tmp_path)
            stop = asyncio.Event()
            controller = asyncio.create_task(serve_controller(opts, stop, client))

            def gateway() -> dict[str, Any]:
                return (api.get(G, "gateways", "apps", "gw") or {}).get("status") or {}

            def programmed() -> dict[str, Any]:
                return next((c for c in gateway().get("conditions", []) if c["type"] == "Programmed"), {})

            def lb_status(name: str, **ingress_: str) -> None:
                service = copy.deepcopy(api.get("", "services", "apps", name))
                assert service is not None
                service["spec"]["clusterIP"] = "10.96.0.7"  # what the API server allocates
                service["status"] = {"loadBalancer": {"ingress": [ingress_]}} if ingress_ else {}
                api.put(service)

            try:
                await until(lambda: api.get("", "services", "apps", "portico-gw") and api.get(
                    "", "services", "apps", "portico-ingress-portico"), timeout=30, what="the Services")
                lb_status("portico-gw")  # a cluster IP, no load balancer address yet
                lb_status("portico-ingress-portico", hostname=ELB)

                def ingress_lb() -> list[dict[str, str]]:
                    stored = api.get(NET, "ingresses", "apps", "shop") or {}
                    return list(((stored.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])

                await until(lambda: ingress_lb() == [{"hostname": ELB}], what="the Ingress's hostname")
                assert gateway().get("addresses", []) == []  # not the cluster IP
                assert programmed().get("status") == "False" and programmed().get("reason") == "AddressNotAssigned"

                lb_status("portico-gw", hostname=ELB)
                await until(lambda: gateway().get("addresses") == [{"type": "Hostname", "value": ELB}],
                            what="the Hostname address")
                assert programmed().get("reason") != "AddressNotAssigned"
                lb_status("portico-gw", ip="203.0.113.9")
                await until(lambda: gateway().get("addresses") == [{"type": "IPAddress", "value": "203.0.113.9"}],
                            what="the IPAddress address")
            finally:
                stop.set()
                await controller

    asyncio.run(main())
