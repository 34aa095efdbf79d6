"""Data plane "kubernetes" end to end without a cluster: the controller applies each
Gateway's ServiceAccount, ConfigMap, Secret, Deployment and Service to the API
server double; a real Envoy started as the Deployment's container (its args, the
pod's name from the downward API) from the generated ConfigMap's bootstrap with the
generated Secret's certificate (both laid out as the kubelet mounts them) reaches
the controller's xDS over mutual TLS on loopback and serves the route; proxy-status
names the pod; the Service's load balancer address becomes the Gateway's address."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from kube.emulator import KubeAPI
from kube.support import CLASS, SERVICE, data_plane_options, free_port, obj, route, running, until
from kube.volume import pod_volumes
from portico.controller import serve_controller
from portico.echo import EchoServer, Identity
from portico.infra.envoy import find_envoy
from portico.infra.kubernetes import ADMIN_DIR, BOOTSTRAP_MOUNT, XDS_MOUNT
from portico.proxystatus import table

pytestmark = pytest.mark.timeout(120)
G = "gateway.networking.k8s.io"
POD = "portico-gw-7d9f8b6c5-x2x9q"  # the pod's name, as the downward API gives it


def condition(api: KubeAPI, type_: str) -> dict[str, Any]:
    gw = api.get(G, "gateways", "apps", "gw") or {}
    return next((c for c in gw.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def test_deployments_per_gateway_fed_over_mtls(tmp_path: Path) -> None:
    async def main() -> None:
        echo = EchoServer(Identity(pod="web-1", namespace="apps", service="web"))
        echo_port = await echo.start()
        listener_port = free_port()
        async with running() as (api, client):
            api.install("apps", "v1", "Deployment", "deployments")
            api.install("", "v1", "ServiceAccount", "serviceaccounts")
            gateway = obj(f"{G}/v1", "Gateway", "gw", "apps", spec={
                "gatewayClassName": "portico",
                "infrastructure": {"labels": {"team": "web"}, "parametersRef": {
                    "group": "gateway.portico.dev", "kind": "PorticoProxy", "name": "two"}},
                "listeners": [{"name": "http", "port": listener_port, "protocol": "HTTP"}]})
            slice_ = obj("discovery.k8s.io/v1", "EndpointSlice", "web-1", "apps", addressType="IPv4",
                         endpoints=[{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                         ports=[{"name": "http", "port": echo_port, "protocol": "TCP"}])
            slice_["metadata"]["labels"] = {"kubernetes.io/service-name": "web"}  # type: ignore[index]
            proxy = obj("gateway.portico.dev/v1alpha1", "PorticoProxy", "two", "apps", spec={"replicas": 2})
            for o in (CLASS, proxy, gateway, SERVICE, slice_, route("web")):
                api.put(o)
            xds_port = free_port()
            stop = asyncio.Event()
            opts = data_plane_options(tmp_path, xds_port)
            controller = asyncio.create_task(serve_controller(opts, stop, client))
            envoy: asyncio.subprocess.Process | None = None
            try:
                await until(lambda: api.get("", "services", "apps", "portico-gw") is not None,
                            timeout=20, what="the Service (applied last)")
                uid = api.get(G, "gateways", "apps", "gw")["metadata"]["uid"]  # type: ignore[index]
                for group, plural, name in (("", "serviceaccounts", "portico-gw"), ("", "configmaps", "portico-gw"),
                                            ("", "secrets", "portico-gw-xds"), ("", "services", "portico-gw")):
                    made = api.get(group, plural, "apps", name)
                    assert made is not None, plural
                    assert made["metadata"]["ownerReferences"][0]["uid"] == uid
                    assert made["metadata"]["labels"]["team"] == "web"
                deployment = api.get("apps", "deployments", "apps", "portico-gw")
                assert deployment is not None and deployment["spec"]["replicas"] == 2  # the PorticoProxy's
                service = api.get("", "services", "apps", "portico-gw")
                assert service is not None, service
                assert [p["port"] for p in service["spec"]["ports"]] == [listener_port], service
                # no load balancer yet: no address (written once Envoy answered the push, or after
                # STATUS_HOLD: no Envoy runs yet)
                await until(lambda: condition(api, "Programmed").get("reason") == "AddressNotAssigned",
                            what="Programmed: AddressNotAssigned")
                api.put({**service, "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}})
                await until(lambda: (api.get(G, "gateways", "apps", "gw") or {}).get("status", {})
                            .get("addresses") == [{"type": "IPAddress", "value": "127.0.0.1"}],
                            what="the Gateway's address from the Service")

                # the pod: Envoy from the generated bootstrap and Secret
                config = api.get("", "configmaps", "apps", "portico-gw")
                secret = api.get("", "secrets", "apps", "portico-gw-xds")
                assert config is not None and secret is not None
                (tmp_path / "admin").mkdir()  # the pod's memory emptyDir holding Envoy's admin socket
                config_volume, _ = pod_volumes(config, secret, {
                    BOOTSTRAP_MOUNT: tmp_path / "config", XDS_MOUNT: tmp_path / "xds",
                    ADMIN_DIR: tmp_path / "admin"})
                boot = json.loads((config_volume.path / "bootstrap.json").read_text())
                boot["static_resources"]["listeners"][0]["address"]["socket_address"].update(
                    address="127.0.0.1", port_value=free_port())
                xds = boot["static_resources"]["clusters"][0]
                # the Service name resolves to the controller's loopback listener here
                xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
                    "socket_address"].update(address="127.0.0.1", port_value=xds_port)
                xds["type"] = "STATIC"
                xds.pop("dns_lookup_family", None)
                (tmp_path / "bootstrap.json").write_text(json.dumps(boot))
                # the Envoy container as the kubelet starts it: its args with $(POD_NAME) from the downward API
                container = deployment["spec"]["template"]["spec"]["containers"][0]
                env = {e["name"]: POD for e in container["env"]
                       if e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"}
                args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), a)
                        .replace(f"{BOOTSTRAP_MOUNT}/bootstrap.json", str(tmp_path / "bootstrap.json"))
                        for a in container["args"]]
                envoy = await asyncio.create_subprocess_exec(find_envoy(), *args, "--base-id", str(free_port()))
                await until(lambda: condition(api, "Programmed").get("status") == "True", timeout=30,
                            what="Programmed=True once the Envoy pod ACKed")
                async with aiohttp.ClientSession() as http:
                    async def answer(host: str) -> int:
                        async with http.get(f"http://127.0.0.1:{listener_port}/", headers={"Host": host}) as resp:
                            return resp.status

                    assert await answer("any.example.com") == 200
                    # proxy-status names the pod (its node id), beside its address
                    async with http.get(f"http://127.0.0.1:{opts.health_port}/api/proxies") as resp:
                        [proxy] = (await resp.json())["items"]
                    assert (proxy["group"], proxy["node"], proxy["state"]) == ("apps/gw", POD, "SYNCED"), proxy
                    assert proxy["peer"].startswith("ipv4:127.0.0.1:")
                    served = base64.b64decode(secret["data"]["tls.crt"])
                    assert proxy["cert_serial"] == f"{x509.load_pem_x509_certificate(served).serial_number:x}"
                    row = table([proxy])[1].split()
                    assert row[:3] == ["apps/gw", POD, proxy["peer"]] and row[6] == proxy["cert_expires"][:10]
                    # a route edited in the cluster goes live on the pod's Envoy
                    api.put(route("web", hostnames=["only.example.com"]))
                    for _ in range(100):
                        if await answer("any.example.com") == 404:
                            break
                        await asyncio.sleep(0.05)
                    assert await answer("any.example.com") == 404
                    assert await answer("only.example.com") == 200
            finally:
                if envoy is not None:
                    envoy.terminate()
                    await envoy.wait()
                stop.set()
                await controller
                await echo.stop()

    asyncio.run(main())
