"""The xDS certificates of data plane "kubernetes" over time, against the strict double:
a Gateway's client certificate survives a controller restart or a leader change between
two running replicas (its Secret and the Deployment's pod template are not written
anew, so no pod restarts and no Envoy reloads), a certificate in the last third of its
lifetime is renewed by the timer with no other change, and the xDS server's own
certificate likewise."""

from __future__ import annotations

import asyncio
import base64
import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from kube.emulator import KubeAPI
from kube.support import CLASS, GATEWAY, SERVICE, controller_client, data_plane_options, obj, route, running, until
from portico.controller import serve_controller
from portico.infra.kubernetes import KubernetesInfrastructure, ServingCertificate, Settings
from portico.infra.pki import LEAF_LIFETIME, RENEW_FRACTION, CertificateAuthority, KeyPair

pytestmark = pytest.mark.timeout(120)
SECRET = ("", "secrets", "apps", "portico-gw-xds")


def applied_by(api: KubeAPI, client: str, resource: str) -> bool:
    """Has `client` applied (server-side) the generated object of `resource` yet?"""
    return any(e.client == client and e.verb == "patch" and e.resource == resource and e.code == 200
               and e.namespace == "apps" for e in api.audit)


def serial(secret: dict[str, Any] | None) -> int:
    assert secret is not None
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"])).serial_number


def test_a_controller_restart_or_new_leader_keeps_the_client_certificate(tmp_path: Path) -> None:
    async def main() -> None:
        async with running() as (api, first):
            api.install("apps", "v1", "Deployment", "deployments")
            api.install("", "v1", "ServiceAccount", "serviceaccounts")
            for o in (CLASS, GATEWAY, SERVICE, route("web")):
                api.put(o)
            stop = asyncio.Event()
            controller = asyncio.create_task(serve_controller(data_plane_options(tmp_path / "1"), stop, first))
            try:
                await until(lambda: api.get("", "services", "apps", "portico-gw") is not None, timeout=30,
                            what="the first run's data plane")
            finally:
                stop.set()
                await controller
            secret, deployment = api.get(*SECRET), api.get("apps", "deployments", "apps", "portico-gw")
            assert secret is not None and deployment is not None

            # the next leader (another replica: its own process state, its own client)
            second = controller_client(api, "second")
            stop = asyncio.Event()
            controller = asyncio.create_task(serve_controller(data_plane_options(tmp_path / "2"), stop, second))
            try:
                await until(lambda: applied_by(api, "second", "services"), timeout=30,
                            what="the second run applied the data plane")
            finally:
                stop.set()
                await controller
                await second.close()
            assert applied_by(api, "second", "secrets")  # applied, and it changed nothing:
            unchanged(api, secret, deployment)

    asyncio.run(main())


def unchanged(api: KubeAPI, secret: dict[str, Any], deployment: dict[str, Any]) -> None:
    """The Gateway's Secret (so its certificate) and Deployment are as they were: not even
    written (resourceVersion), so no pod restarts and no Envoy reloads."""
    after = api.get(*SECRET)
    assert after is not None and after["data"] == secret["data"]
    assert after["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
    now = api.get("apps", "deployments", "apps", "portico-gw")
    assert now is not None and now["spec"]["template"] == deployment["spec"]["template"]
    assert now["metadata"]["resourceVersion"] == deployment["metadata"]["resourceVersion"]


def test_a_new_leader_keeps_the_client_certificate(tmp_path: Path) -> None:
    """Two replicas; the leader goes; the other takes the lease and applies the data plane
    again (everything it applies is what the cluster already holds)."""
    async def main() -> None:
        async with running() as (api, first):
            api.install("apps", "v1", "Deployment", "deployments")
            api.install("", "v1", "ServiceAccount", "serviceaccounts")
            for o in (CLASS, GATEWAY, SERVICE, route("web")):
                api.put(o)
            clients = {"a": first, "b": controller_client(api, "b")}
            stops = {name: asyncio.Event() for name in clients}
            replicas = {name: asyncio.create_task(serve_controller(data_plane_options(
                tmp_path / name, leader_elect=True, identity=name, lease_duration=3.0, renew_deadline=2.0,
                retry_period=0.1), stops[name], client)) for name, client in clients.items()}
            try:
                await until(lambda: api.get("", "services", "apps", "portico-gw") is not None, timeout=30,
                            what="the first leader's data plane")
                lease = api.get("coordination.k8s.io", "leases", "portico-system", "portico-controller")
                assert lease is not None
                leader = lease["spec"]["holderIdentity"]
                other = next(name for name in clients if name != leader)
                other_client = "b" if other == "b" else "controller"
                secret, deployment = api.get(*SECRET), api.get("apps", "deployments", "apps", "portico-gw")
                assert secret is not None and deployment is not None
                assert not applied_by(api, other_client, "services")  # not the leader yet
                stops[leader].set()
                await replicas[leader]
                await until(lambda: applied_by(api, other_client, "services"), timeout=30,
                            what="the new leader applied the data plane")
                assert applied_by(api, other_client, "secrets")
                unchanged(api, secret, deployment)
            finally:
                for name in clients:
                    stops[name].set()
                await asyncio.gather(*replicas.values())
                await clients["b"].close()

    asyncio.run(main())


def as_of(renew_in: float) -> datetime.datetime:
    """When a leaf issued then (of LEAF_LIFETIME, backdated 5 minutes) is due for renewal
    `renew_in` seconds from now."""
    lifetime = LEAF_LIFETIME + datetime.timedelta(minutes=5)
    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=renew_in)
            + lifetime / RENEW_FRACTION - LEAF_LIFETIME)


def test_a_certificate_in_its_last_third_is_renewed_by_the_timer(tmp_path: Path) -> None:
    async def main() -> None:
        async with running() as (api, client):
            api.install("apps", "v1", "Deployment", "deployments")
            api.install("", "v1", "ServiceAccount", "serviceaccounts")
            ca = CertificateAuthority.create()
            api.put(obj("v1", "Secret", "portico-xds-ca", "portico-system", type="kubernetes.io/tls", data={
                "tls.crt": base64.b64encode(ca.pair.cert_pem).decode(),
                "tls.key": base64.b64encode(ca.pair.key_pem).decode()}))
            # the last leader's certificate: kept for 15 more seconds, then in its last third
            aging = ca.issue_client("apps/gw", now=as_of(15))
            api.put(obj("v1", "Secret", "portico-gw-xds", "apps", type="kubernetes.io/tls", data={
                "tls.crt": base64.b64encode(aging.cert_pem).decode(),
                "tls.key": base64.b64encode(aging.key_pem).decode(),
                "ca.crt": base64.b64encode(ca.cert_pem).decode()}))
            for o in (CLASS, GATEWAY, SERVICE, route("web")):
                api.put(o)
            kept = x509.load_pem_x509_certificate(aging.cert_pem).serial_number
            stop = asyncio.Event()
            opts = data_plane_options(tmp_path, cert_renew_interval=0.5)
            controller = asyncio.create_task(serve_controller(opts, stop, client))
            try:
                await until(lambda: api.get("", "services", "apps", "portico-gw") is not None, timeout=30,
                            what="the data plane")
                assert serial(api.get(*SECRET)) == kept  # still valid for a while: kept
                version = api.get(*SECRET)["metadata"]["resourceVersion"]  # type: ignore[index]
                # nothing changes in the cluster; the timer finds it due and renews it
                await until(lambda: serial(api.get(*SECRET)) != kept, timeout=40, what="the renewal")
            finally:
                stop.set()
                await controller
            renewed = api.get(*SECRET)
            assert renewed is not None and renewed["metadata"]["resourceVersion"] != version
            pair = KeyPair(base64.b64decode(renewed["data"]["tls.crt"]), base64.b64decode(renewed["data"]["tls.key"]))
            assert ca.keeps(pair, group="apps/gw")  # the same CA's, for this Gateway, a full lifetime ahead
            assert base64.b64decode(renewed["data"]["ca.crt"]) == ca.cert_pem

    asyncio.run(main())


def test_the_xds_server_certificate_is_renewed_by_the_timer() -> None:
    async def main() -> None:
        ca = CertificateAuthority.create()
        names = ("portico-xds.portico-system.svc",)
        installed: list[KeyPair] = []
        serving = ServingCertificate(ca.issue_server(names, now=as_of(0.5)), names, (), installed.append)
        fresh = ServingCertificate(ca.issue_server(names), names, (), installed.append)

        async def apply(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return objects

        for cert in (serving, fresh):
            infra = KubernetesInfrastructure(apply, ca, Settings(), lambda ns, n: None, lambda infra: None,
                                             serving=cert, renew_interval=0.2)
            await infra.reconcile({})
            await asyncio.sleep(1.5)
            await infra.stop()
        [renewed] = installed  # the one due, once; the fresh one is kept
        assert renewed == serving.pair and ca.keeps(renewed, dns_names=names)

    asyncio.run(main())
