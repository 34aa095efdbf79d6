"""The strict API server double enforces what kube-apiserver does, through the real
lightkube client: RBAC with the real 403, validation (422), server-side apply,
the status subresource, garbage collection, pagination and faults."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from lightkube import AsyncClient, codecs
from lightkube import operators as op
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Pod, Secret, Service
from lightkube.types import PatchType

from kube.support import GATEWAY, kubeconfig, obj, running, until
from kube.validation import is_dns1035, is_iana_svc_name
from portico.provider.kubernetes import KINDS

G = "gateway.networking.k8s.io"


async def refused(call: Awaitable[Any]) -> ApiError:
    with pytest.raises(ApiError) as error:
        await call
    return error.value


def deployment(name: str, selector: dict[str, str], owner_uid: str | None = None,
               port: str = "http") -> dict[str, Any]:
    d: dict[str, Any] = obj("apps/v1", "Deployment", name, "apps", spec={
        "selector": {"matchLabels": selector}, "template": {"metadata": {"labels": selector}, "spec": {
            "containers": [{"name": "c", "image": "x", "ports": [{"name": port, "containerPort": 80}]}]}}})
    if owner_uid is not None:
        d["metadata"]["ownerReferences"] = [{"apiVersion": f"{G}/v1", "kind": "Gateway", "name": "gw",
                                             "uid": owner_uid, "controller": True}]
    return d


def run(test: Callable[..., Awaitable[None]]) -> None:
    async def main() -> None:
        async with running() as (api, client):
            await test(api, client)

    asyncio.run(main())


def test_rbac_denies_what_the_shipped_roles_do_not_grant_as_the_real_api_does() -> None:
    async def test(api: Any, client: AsyncClient) -> None:
        api.install("", "v1", "Pod", "pods")
        error = await refused(client.get(Pod, "p", namespace="apps"))
        assert error.status.code == 403 and error.status.reason == "Forbidden"
        assert error.status.message == ('pods "p" is forbidden: User "system:serviceaccount:portico-system:'
                                        'portico-controller" cannot get resource "pods" in API group "" '
                                        'in the namespace "apps"')
        denied = api.audit[-1]
        assert (denied.verb, denied.resource, denied.code, denied.grant) == ("get", "pods", 403, None)
        # Leases are granted in the controller's namespace only (a Role)
        lease = Lease(metadata=ObjectMeta(name="x", namespace="apps"), spec=LeaseSpec())
        assert (await refused(client.create(lease))).status.code == 403
        await client.create(Lease(metadata=ObjectMeta(name="x", namespace="portico-system"), spec=LeaseSpec()))
        # an unknown token is not a user
        stranger = AsyncClient(config=kubeconfig(api.base_url, "nobody"))
        assert (await refused(stranger.get(Service, "web", namespace="apps"))).status.code == 401
        await stranger.close()

    run(test)


def test_validation_names_owner_references_ports_and_immutable_selector() -> None:
    async def test(api: Any, client: AsyncClient) -> None:
        bad_name = obj("v1", "Service", "portico-web.v2", "apps", spec={"ports": [{"name": "http", "port": 80}]})
        error = await refused(client.apply(codecs.from_dict(bad_name), field_manager="t"))
        assert error.status.code == 422 and "DNS-1035" in error.status.message
        ports = obj("v1", "Service", "web", "apps", spec={"ports": [{"name": "dns-53", "port": 53},
                                                                   {"name": "dns-53", "port": 53,
                                                                    "protocol": "UDP"}]})
        assert "Duplicate value" in (await refused(client.apply(codecs.from_dict(ports), field_manager="t"))
                                     ).status.message
        error = await refused(client.apply(codecs.from_dict(deployment("d", {"a": "b"}, owner_uid="")),
                                           field_manager="t"))
        assert "ownerReferences[0].uid" in error.status.message
        error = await refused(client.apply(codecs.from_dict(deployment("d", {"a": "b"}, port="8080-8080")),
                                           field_manager="t"))
        assert "IANA_SVC_NAME" in error.status.message
        await client.apply(codecs.from_dict(deployment("d", {"a": "b"})), field_manager="t")
        error = await refused(client.apply(codecs.from_dict(deployment("d", {"a": "c"})), field_manager="t"))
        assert "field is immutable" in error.status.message
        assert not is_dns1035("9web") and not is_iana_svc_name("8080") and is_iana_svc_name("tcp-8080")

    run(test)


def test_server_side_apply_owners_conflicts_and_dropped_fields() -> None:
    async def test(api: Any, client: AsyncClient) -> None:
        first = deployment("d", {"a": "b"})
        first["metadata"]["labels"] = {"team": "web", "tier": "edge"}
        await client.apply(codecs.from_dict(first), field_manager="portico")
        stored = api.get("apps", "deployments", "apps", "d")
        assert [m["manager"] for m in stored["metadata"]["managedFields"]] == ["portico"]
        # another manager changing a field portico owns: 409 unless forced
        theirs = deployment("d", {"a": "b"})  # the same spec (shared, no conflict), another label
        theirs["metadata"]["labels"] = {"team": "ops"}
        error = await refused(client.apply(codecs.from_dict(theirs), field_manager="kubectl"))
        assert error.status.code == 409 and 'conflict with "portico"' in error.status.message
        await client.apply(codecs.from_dict(theirs), field_manager="kubectl", force=True)
        # portico no longer applies `tier`: it goes; `team` is kubectl's now and stays
        again = deployment("d", {"a": "b"})
        await client.apply(codecs.from_dict(again), field_manager="portico")
        assert api.get("apps", "deployments", "apps", "d")["metadata"]["labels"] == {"team": "ops"}

    run(test)


def test_status_subresource_generation_and_garbage_collection() -> None:
    async def test(api: Any, client: AsyncClient) -> None:
        gw = api.put(GATEWAY)
        gateway = next(k for k in KINDS if k.kind == "Gateway").resource()
        await client.patch(gateway.Status, "gw", {"spec": {"gatewayClassName": "x"}, "status": {"addresses": []}},
                           namespace="apps", patch_type=PatchType.MERGE)
        stored = api.get(G, "gateways", "apps", "gw")
        assert stored["spec"]["gatewayClassName"] == "portico" and stored["metadata"]["generation"] == 1
        api.put({**GATEWAY, "spec": {**GATEWAY["spec"], "gatewayClassName": "other"}})  # type: ignore[dict-item]
        assert api.get(G, "gateways", "apps", "gw")["metadata"]["generation"] == 2
        await client.apply(codecs.from_dict(deployment("d", {"a": "b"}, owner_uid=gw["metadata"]["uid"])),
                           field_manager="portico")
        await client.apply(codecs.from_dict(deployment("orphan", {"a": "b"}, owner_uid="no-such-uid")),
                           field_manager="portico")
        await until(lambda: api.get("apps", "deployments", "apps", "orphan") is None, what="the orphan collected")
        assert api.get("apps", "deployments", "apps", "d") is not None
        api.remove(G, "gateways", "apps", "gw")
        await until(lambda: api.get("apps", "deployments", "apps", "d") is None, what="the dependent collected")

    run(test)


def test_faults_and_pagination() -> None:
    async def test(api: Any, _: AsyncClient) -> None:
        client = AsyncClient(config=kubeconfig(api.base_url, api.token("admin")))  # system:masters
        for i in range(7):
            api.put(obj("v1", "Service", f"s{i}", "apps", spec={"ports": [{"port": 80}]}))
        names = [s.metadata.name async for s in client.list(Service, namespace="apps", chunk_size=3)]
        assert names == [f"s{i}" for i in range(7)]
        assert [e.code for e in api.audit if e.verb == "list"] == [200, 200, 200]
        api.fault(verb="get", resource="services", code=429, retry_after=3)
        error = await refused(client.get(Service, "s0", namespace="apps"))
        assert error.status.code == 429 and error.response.headers["Retry-After"] == "3"
        assert (await client.get(Service, "s0", namespace="apps")).metadata.name == "s0"  # once only
        api.fault(verb="get", resource="services", delay=0.3)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await client.get(Service, "s0", namespace="apps")
        assert loop.time() - start >= 0.3
        # a Secret list by field selector on type, as the provider asks for it
        api.put(obj("v1", "Secret", "helm", "apps", type="helm.sh/release.v1", data={}))
        api.put(obj("v1", "Secret", "tls", "apps", type="kubernetes.io/tls", data={}))
        found = [s.metadata.name async for s in client.list(Secret, namespace="apps",
                                                              fields={"type": op.not_equal("helm.sh/release.v1")})]
        assert found == ["tls"]

    run(test)
