"""Install, upgrade and uninstall against the strict double: `portico install render`
applied with server-side apply as an admin would (`kubectl apply --server-side`),
`portico install check` before it, a re-render applied over an older release's
install, and `portico install uninstall` after."""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import kmock
from lightkube import AsyncClient, codecs

from kube.emulator import KubeAPI
from kube.rbac import service_account
from kube.support import CLASS, controller_client, kubeconfig, obj, rbac_objects
from portico import admintoken, install, lifecycle
from portico.finalizers import FINALIZER
from portico.infra.kubernetes import MANAGED_BY, resource_name
from portico.translator.gateway import BUNDLE_VERSION

G = "gateway.networking.k8s.io"
KINDS = [  # what an install holds, what the controller generates, and the kinds a test adds
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False),
    ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", False),
    ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings",
     False),
    ("", "v1", "Namespace", "namespaces", False), ("", "v1", "ServiceAccount", "serviceaccounts", True),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    ("apps", "v1", "Deployment", "deployments", True), ("", "v1", "Service", "services", True),
    ("", "v1", "ConfigMap", "configmaps", True), ("", "v1", "Secret", "secrets", True),
    ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
    ("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True),
    ("coordination.k8s.io", "v1", "Lease", "leases", True),
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
    (G, "v1", "GatewayClass", "gatewayclasses", False), (G, "v1", "Gateway", "gateways", True),
]


@asynccontextmanager
async def cluster() -> AsyncIterator[tuple[KubeAPI, AsyncClient]]:
    """The double with the kinds an install touches, and a cluster admin's client."""
    api = KubeAPI()
    for group, version, kind, plural, namespaced in KINDS:
        api.install(group, version, kind, plural, namespaced)
    api.authorize(rbac_objects())
    async with api, kmock.Server(api) as server:
        api.base_url = str(server.url).rstrip("/")
        client = AsyncClient(config=kubeconfig(api.base_url, api.token("admin")))
        try:
            yield api, client
        finally:
            await client.close()


async def apply(client: AsyncClient, objects: list[dict[str, Any]]) -> None:
    """`kubectl apply --server-side -f -` of a render."""
    for o in objects:
        lifecycle.resource_of(o["apiVersion"], o["kind"])  # the class the controller's process uses
        await client.apply(codecs.from_dict(o), field_manager="kubectl")


def stored(api: KubeAPI) -> dict[tuple[str, str, str, str], str]:
    return {k: o["metadata"]["resourceVersion"] for k, o in api.store.items()}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_rendered_install_applied_twice_changes_nothing_the_second_time() -> None:
    async def main() -> None:
        async with cluster() as (api, client):
            await apply(client, install.render())
            first = stored(api)
            await apply(client, install.render())  # a re-render, applied again (e.g. by a GitOps loop)
            assert stored(api) == first
            assert not [k for k in first if k[1] == "secrets"]  # no token Secret from the render
    run(main())


def test_check_passes_on_an_empty_cluster_and_names_what_is_in_the_way() -> None:
    async def main() -> None:
        async with cluster() as (api, client):
            report = await lifecycle.check(client)
            assert report.ok, report.findings
            assert {f.check for f in report.findings} == {"api", "crds", "channel", "others", "rbac"}
            # an older Gateway API bundle, of the standard channel, and a class named as ours for another controller
            old = copy.deepcopy(next(o for o in install.render() if o["kind"] == "CustomResourceDefinition"
                                     and o["metadata"]["name"] == f"gateways.{G}"))
            old["metadata"]["annotations"].update({BUNDLE_VERSION: "v1.0.0", lifecycle.CHANNEL: "standard"})
            api.put(old)
            api.put({**CLASS, "spec": {"controllerName": "example.com/other"}})
            report = await lifecycle.check(client)
            failed = {f.check: f.message for f in report.findings if not f.ok}
            assert set(failed) == {"crds", "channel", "others"}, report.findings
            assert "v1.0.0" in failed["crds"] and "example.com/other" in failed["others"]
            # a user who may not install cluster-wide objects: the API server's own answers
            user = AsyncClient(config=kubeconfig(api.base_url, api.token("dev", service_account("apps", "dev"))))
            try:
                report = await lifecycle.check(user)
            finally:
                await user.close()
            rbac = next(f for f in report.findings if f.check == "rbac")
            assert not rbac.ok and "create customresourcedefinitions.apiextensions.k8s.io" in rbac.message
    run(main())


def test_the_admin_token_is_made_once_by_the_controller_and_an_old_one_adopted() -> None:
    async def main() -> None:
        async with cluster() as (api, admin):
            await apply(admin, install.render())
            controller = controller_client(api, "controller")  # as its ServiceAccount, under the shipped Role
            try:
                first, second = await asyncio.gather(admintoken.load_or_create(controller, "portico-system"),
                                                     admintoken.load_or_create(controller, "portico-system"))
                assert first == second and len(first) > 30  # two replicas starting at once: one token
                assert await admintoken.load_or_create(controller, "portico-system") == first  # a restart
                assert sum(k[1] == "secrets" for k in api.store) == 1
            finally:
                await controller.close()
    run(main())


def old_release(namespace: str = "portico-system") -> list[dict[str, Any]]:
    """What Portico 0.1's render installed: the CRDs at v0.0.0-dev and a random admin token
    in a Secret of the render (the rest as now)."""
    objects = copy.deepcopy(install.render(namespace=namespace))
    for o in objects:
        if BUNDLE_VERSION in (o["metadata"].get("annotations") or {}):
            o["metadata"]["annotations"][BUNDLE_VERSION] = "v0.0.0-dev"
    objects.append({"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "portico-admin-token", "namespace": namespace, "labels": install.LABELS}, "type": "Opaque",
        "data": {"token": base64.b64encode(b"from-the-old-release").decode()}})
    return objects


def test_an_upgrade_applies_over_the_old_release_adopting_its_objects() -> None:
    async def main() -> None:
        async with cluster() as (api, admin):
            await apply(admin, old_release())
            before = set(api.store)
            assert (await lifecycle.check(admin)).ok  # the old release's CRDs are a supported bundle
            await apply(admin, install.render())  # the documented upgrade: the new render, applied
            assert set(api.store) == before  # the same objects, updated in place: none duplicated
            crd = api.get("apiextensions.k8s.io", "customresourcedefinitions", "", f"gateways.{G}")
            assert crd is not None and crd["metadata"]["annotations"][BUNDLE_VERSION] == install.bundled_version()
            controller = controller_client(api, "controller")
            try:  # the controller keeps the token operators already use
                assert await admintoken.load_or_create(controller, "portico-system") == "from-the-old-release"
            finally:
                await controller.close()
    run(main())


def test_uninstall_removes_the_install_and_what_the_controller_generated() -> None:
    async def main() -> None:
        async with cluster() as (api, admin):
            await apply(admin, install.render())
            controller = controller_client(api, "controller")
            try:
                await admintoken.load_or_create(controller, "portico-system")
            finally:
                await controller.close()
            api.put(obj("coordination.k8s.io/v1", "Lease", "portico-controller", "portico-system", spec={}))
            api.put(obj("v1", "Namespace", "apps", None))
            labels = {**MANAGED_BY, "gateway.portico.dev/gateway": "gw"}
            for api_version, kind in (("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ConfigMap"),
                                      ("v1", "Secret"), ("v1", "ServiceAccount"), ("policy/v1", "PodDisruptionBudget"),
                                      ("autoscaling/v2", "HorizontalPodAutoscaler")):
                generated = obj(api_version, kind, "portico-gw", "apps")
                generated["metadata"]["labels"] = labels  # type: ignore[index]
                api.put(generated)
            theirs = api.put(obj("v1", "ConfigMap", "theirs", "apps", data={"a": "b"}))  # not Portico's
            gc = api.put({**CLASS, "metadata": {"name": "portico", "finalizers": [FINALIZER]}})
            assert gc["metadata"]["finalizers"] == [FINALIZER]
            deleted = await lifecycle.uninstall(admin)
            assert "Deployment portico-system/portico-controller" in deleted
            assert "HorizontalPodAutoscaler apps/portico-gw" in deleted
            left = sorted(k for k in api.store if k[0] not in ("apiextensions.k8s.io", "admissionregistration.k8s.io"))
            assert left == [("", "configmaps", "apps", "theirs"), ("", "namespaces", "", "apps"),
                            (G, "gatewayclasses", "", "portico")], left
            assert api.get("", "configmaps", "apps", "theirs") == theirs
            assert not api.get(G, "gatewayclasses", "", "portico")["metadata"].get("finalizers")
            assert api.get("apiextensions.k8s.io", "customresourcedefinitions", "", f"gateways.{G}")  # kept
            await lifecycle.uninstall(admin, crds=True)  # and the CRDs, when asked
            assert not [k for k in api.store if k[0] in ("apiextensions.k8s.io", "admissionregistration.k8s.io")]
    run(main())


def generated(api_version: str, kind: str, name: str, gateway: dict[str, Any]) -> dict[str, Any]:
    o = obj(api_version, kind, name, gateway["metadata"]["namespace"])
    o["metadata"].update({"labels": {**MANAGED_BY, "gateway.portico.dev/gateway": "x"},  # type: ignore[attr-defined]
                          "ownerReferences": [{"apiVersion": f"{G}/v1", "kind": "Gateway", "controller": True,
                                               "name": gateway["metadata"]["name"],
                                               "uid": gateway["metadata"]["uid"]}]})
    return o


def test_objects_named_by_an_older_release_are_replaced_not_duplicated() -> None:
    """Before 0.2 a Gateway web.v2 got portico-web.v2 (a Deployment, ConfigMap, Secret and
    ServiceAccount; its Service was refused). After the upgrade the controller makes
    portico-web-v2-<hash>: the old ones go once the new Deployment is there."""
    async def main() -> None:
        async with cluster() as (api, admin):
            api.put(obj("v1", "Namespace", "apps", None))
            old_gw = api.put(obj(f"{G}/v1", "Gateway", "web.v2", "apps", spec={
                "gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}))
            other = api.put(obj(f"{G}/v1", "Gateway", "gw", "apps", spec={
                "gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}))
            old = [generated("apps/v1", "Deployment", "portico-web.v2", old_gw),
                   generated("v1", "ConfigMap", "portico-web.v2", old_gw),
                   generated("v1", "ServiceAccount", "portico-web.v2", old_gw),
                   generated("v1", "Secret", "portico-web.v2-xds", old_gw)]
            kept = [generated("apps/v1", "Deployment", "portico-gw", other),
                    generated("v1", "Secret", "portico-gw-xds", other)]
            for o in old + kept:
                api.put(o)
            deleted, waiting = await lifecycle.adopt(admin)  # the new Deployment is not there yet
            assert deleted == [] and len(waiting) == 4
            new = resource_name("apps", "web.v2")
            assert new.startswith("portico-web-v2-")
            api.put(generated("apps/v1", "Deployment", new, old_gw))  # the upgraded controller made it
            api.put(generated("v1", "Secret", f"{new}-xds", old_gw))
            deleted, waiting = await lifecycle.adopt(admin)
            assert sorted(deleted) == ["ConfigMap apps/portico-web.v2", "Deployment apps/portico-web.v2",
                                       "Secret apps/portico-web.v2-xds", "ServiceAccount apps/portico-web.v2"]
            assert waiting == []
            left = sorted((k[1], k[3]) for k in api.store if k[2] == "apps" and k[1] != "gateways")
            assert left == sorted([("deployments", new), ("deployments", "portico-gw"), ("secrets", f"{new}-xds"),
                                   ("secrets", "portico-gw-xds")])
            assert await lifecycle.adopt(admin) == ([], [])  # idempotent
    run(main())
