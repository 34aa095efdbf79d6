"""`portico install check` and `portico install uninstall`: the day-1 and last-day
steps around `portico install render`, against the cluster of a kubeconfig.

check (a precheck, nothing written): the API server answers; the Gateway API CRDs
installed, if any, are of a bundle version this Portico supports and of the
experimental channel (the safe-upgrades policy refuses experimental CRDs over
standard ones); no other install is in the way (a GatewayClass named as ours for
another controller); and the user may create and patch every object the render
holds (SelfSubjectAccessReview, the API server's own answer).

uninstall: what the controller generated per Gateway (every object labelled
`app.kubernetes.io/managed-by=portico`, in any namespace), the finalizer it put on
GatewayClasses (once the controller is gone nothing would remove it, and the class
could never be deleted), then everything the render installed, controller
first; its namespace takes the controller's own Secrets (CA, admin token) and
Lease with it. The CRDs stay unless asked for (`crds=True`): deleting a CRD deletes
every object of its kind, the users' Gateways and routes, which another Gateway API
implementation may share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx  # lightkube's HTTP client
from lightkube import ALL_NS, AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.core.resource_registry import resource_registry
from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
from lightkube.resources.authorization_v1 import SelfSubjectAccessReview

from portico import CONTROLLER_NAME, install
from portico.finalizers import FINALIZER
from portico.infra.generated import GENERATED
from portico.infra.kubernetes import MANAGED_BY, resource_name
from portico.ingress.serve import gateway_name as ingress_gateway
from portico.kubeapi import status_code
from portico.provider.kubernetes import KINDS as PROVIDER_KINDS
from portico.translator.gateway import BUNDLE_VERSION, SUPPORTED_BUNDLES, UNRELEASED, bundled_version

GATEWAY_API_GROUPS = ("gateway.networking.k8s.io", "gateway.networking.x-k8s.io")
CHANNEL = "gateway.networking.k8s.io/channel"
# kind -> (API group, plural, namespaced) of every kind the render holds
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "CustomResourceDefinition": ("apiextensions.k8s.io", "customresourcedefinitions", False),
    "ValidatingAdmissionPolicy": ("admissionregistration.k8s.io", "validatingadmissionpolicies", False),
    "ValidatingAdmissionPolicyBinding": ("admissionregistration.k8s.io", "validatingadmissionpolicybindings", False),
    "Namespace": ("", "namespaces", False),
    "ServiceAccount": ("", "serviceaccounts", True),
    "ClusterRole": ("rbac.authorization.k8s.io", "clusterroles", False),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io", "clusterrolebindings", False),
    "Role": ("rbac.authorization.k8s.io", "roles", True),
    "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings", True),
    "Deployment": ("apps", "deployments", True),
    "Service": ("", "services", True),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets", True),
}
# the controller's objects a generated object names, by kind (the Secret: its xDS certificate)
SUFFIX = {"Secret": "-xds"}
GENERATED_SELECTOR: dict[str, Any] = {"app.kubernetes.io/managed-by": MANAGED_BY["app.kubernetes.io/managed-by"]}


@dataclass
class Finding:
    check: str
    ok: bool
    message: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def add(self, check: str, ok: bool, message: str) -> None:
        self.findings.append(Finding(check, ok, message))


def supported_bundle(version: str) -> bool:
    return version in (bundled_version(), UNRELEASED) or version.startswith(tuple(f"{b}." for b in SUPPORTED_BUNDLES))


async def check(client: AsyncClient, namespace: str = "portico-system",
                controller_name: str = CONTROLLER_NAME) -> Report:
    report = Report()
    try:
        crds = [c async for c in client.list(resource_of("apiextensions.k8s.io/v1", "CustomResourceDefinition"))]
    except ApiError as e:  # an answer: the API is there, this user may not read CRDs
        if status_code(e) == 401:
            report.add("api", False, "the API server refuses these credentials (401 Unauthorized)")
            return report
        report.add("api", True, "the API server answers")
        report.add("crds", False, f"cannot read the installed CRDs: {e.status.message or _why(e)}")
        await _rbac(client, namespace, report)
        return report
    except (httpx.HTTPError, OSError) as e:
        report.add("api", False, f"the API server does not answer a list of CRDs: {_why(e)}")
        return report
    report.add("api", True, "the API server answers")
    # name -> annotations of the Gateway API CRDs
    gateway_crds = {str(c["metadata"]["name"]): dict(c["metadata"].get("annotations") or {}) for c in crds
                    if (c.get("spec") or {}).get("group") in GATEWAY_API_GROUPS}
    versions = sorted({a.get(BUNDLE_VERSION, "") for a in gateway_crds.values()})
    if not gateway_crds:
        report.add("crds", True, f"no Gateway API CRDs yet: the render installs {bundled_version()}")
    elif bad := [v or "(none)" for v in versions if not supported_bundle(v)]:
        report.add("crds", False, f"Gateway API CRDs of bundle version {', '.join(bad)} are installed; this Portico "
                                  f"supports {', '.join(f'{b}.x' for b in SUPPORTED_BUNDLES)} (the render would "
                                  f"replace them with {bundled_version()})")
    else:
        report.add("crds", True, f"Gateway API CRDs of bundle version {', '.join(versions)}: supported")
    standard = sorted(name for name, a in gateway_crds.items() if a.get(CHANNEL) == "standard"
                      and name.startswith(("gateways.", "httproutes.", "gatewayclasses.")))
    if standard:
        report.add("channel", False, f"standard-channel CRDs installed ({', '.join(standard)}): the render's "
                                     "experimental ones replace them, which the safe-upgrades "
                                     "ValidatingAdmissionPolicy refuses; remove it first, or keep the standard "
                                     "CRDs and drop crds.yaml from the install")
    else:
        report.add("channel", True, "no standard-channel CRDs the experimental ones would replace")
    await _other_installs(client, controller_name, report)
    await _rbac(client, namespace, report)
    return report


async def _other_installs(client: AsyncClient, controller_name: str, report: Report) -> None:
    classes = resource_of("gateway.networking.k8s.io/v1", "GatewayClass")
    try:
        others = [c async for c in client.list(classes)]
    except ApiError as e:
        if status_code(e) in (404, 403):
            report.add("others", True, "no GatewayClasses to compare")
            return
        raise
    clash = [c.get("spec", {}).get("controllerName") for c in others if c["metadata"]["name"] == "portico"
             and c.get("spec", {}).get("controllerName") != controller_name]
    if clash:
        report.add("others", False, f"GatewayClass portico belongs to another controller ({clash[0]}): the "
                                    "examples and the README use that name for Portico's class")
    else:
        owners = sorted({c.get("spec", {}).get("controllerName", "") for c in others} - {controller_name})
        report.add("others", True, "no other install in the way" + (
            f" (other controllers' classes coexist: {', '.join(owners)})" if owners else ""))


async def _rbac(client: AsyncClient, namespace: str, report: Report) -> None:
    denied = []
    for obj in install.render(namespace=namespace):
        group, plural, namespaced = RESOURCES[obj["kind"]]
        for verb in ("create", "patch"):
            review = SelfSubjectAccessReview(spec=SelfSubjectAccessReviewSpec(resourceAttributes=ResourceAttributes(
                group=group, resource=plural, verb=verb, name=None if verb == "create" else obj["metadata"]["name"],
                namespace=obj["metadata"].get("namespace", "") if namespaced else None)))
            answer = await client.create(review)
            if not (answer.status and answer.status.allowed):
                denied.append(f"{verb} {plural}{'.' + group if group else ''}"
                              + (f" in {namespace}" if namespaced else ""))
    unique = sorted(set(denied))
    report.add("rbac", not unique, "you may create and patch everything the render holds" if not unique
               else f"denied: {'; '.join(unique)}")


async def uninstall(client: AsyncClient, namespace: str = "portico-system", crds: bool = False,
                    say: Callable[[str], None] = lambda line: None) -> list[str]:
    """Delete what the install and the controller made (see the module docstring); the
    objects deleted, as `kind namespace/name`."""
    deleted: list[str] = []
    objects = install.render(namespace=namespace)
    controller = [o for o in objects if o["kind"] == "Deployment"]
    for obj in controller:  # first: a running controller would re-create what is deleted next
        await _delete(client, obj, deleted, say)
    for generated in GENERATED:  # the controller's own (generic) classes of what it generates
        resource, kind = generated.resource(), generated.kind
        try:
            found = [o async for o in client.list(resource, namespace=ALL_NS, labels=GENERATED_SELECTOR)]
        except ApiError as e:
            if status_code(e) == 404:  # (autoscaling/v2 not served)
                continue
            raise
        for item in found:
            name, where = item["metadata"]["name"], item["metadata"]["namespace"]
            try:
                await client.delete(resource, name, namespace=where)
            except ApiError as e:
                if status_code(e) != 404:  # (gone with its owner meanwhile)
                    raise
                continue
            deleted.append(f"{kind} {where}/{name}")
            say(f"deleted {kind} {where}/{name}")
    await _release_classes(client, say)
    rest = [o for o in objects if o["kind"] != "Deployment" and (crds or o["kind"] not in (
        "CustomResourceDefinition", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"))]
    for obj in reversed(rest):  # the reverse of the order they were applied in; the namespace last
        await _delete(client, obj, deleted, say)
    return deleted


async def adopt(client: AsyncClient, say: Callable[[str], None] = lambda line: None) -> tuple[list[str], list[str]]:
    """After an upgrade: generated objects an older release named otherwise (before 0.2, a
    Gateway `web.v2` got `portico-web.v2`; now `portico-web-v2-<hash>`) are replaced, not
    kept beside the new ones: each is deleted once its Gateway's Deployment of the current
    name exists (so traffic moves to the new pods first). Objects of ours only (label and
    controller ownerReference). Returns (deleted, still waiting for their replacement)."""
    found: list[tuple[str, str, str, Any, str]] = []  # (kind, namespace, name, resource, expected name)
    current: set[tuple[str, str]] = set()  # (namespace, name) of Deployments
    for generated in GENERATED:  # the controller's own (generic) classes of what it generates
        resource, kind = generated.resource(), generated.kind
        try:
            items = [o async for o in client.list(resource, namespace=ALL_NS, labels=GENERATED_SELECTOR)]
        except ApiError as e:
            if status_code(e) == 404:
                continue
            raise
        for item in items:
            meta = item["metadata"]
            owner = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
            if owner is None or owner.get("kind") not in ("Gateway", "IngressClass"):
                continue
            gateway = owner["name"] if owner["kind"] == "Gateway" else ingress_gateway(owner["name"])
            base = resource_name(meta["namespace"], gateway)
            if kind == "Deployment":
                current.add((meta["namespace"], meta["name"]))
            found.append((kind, meta["namespace"], meta["name"], resource, base + SUFFIX.get(kind, "")))
    deleted, waiting = [], []
    for kind, namespace, name, resource, expected in found:
        if name == expected:
            continue
        what = f"{kind} {namespace}/{name}"
        replacement = (namespace, expected.removesuffix(SUFFIX.get(kind, "")))
        if replacement not in current:
            waiting.append(what)
            say(f"kept {what}: Deployment {namespace}/{replacement[1]} is not there yet (the controller makes it)")
            continue
        try:
            await client.delete(resource, name, namespace=namespace)
        except ApiError as e:
            if status_code(e) != 404:
                raise
            continue
        deleted.append(what)
        say(f"deleted {what}: replaced by {kind} {namespace}/{expected}")
    return deleted, waiting


async def _release_classes(client: AsyncClient, say: Callable[[str], None]) -> None:
    classes = resource_of("gateway.networking.k8s.io/v1", "GatewayClass")
    try:
        found = [c async for c in client.list(classes)]
    except ApiError as e:
        if status_code(e) == 404:
            return
        raise
    for gc in found:
        meta = gc["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER in finalizers:
            await client.patch(classes, meta["name"], {"metadata": {
                "finalizers": [f for f in finalizers if f != FINALIZER],
                "resourceVersion": meta["resourceVersion"]}})
            say(f"GatewayClass {meta['name']}: finalizer {FINALIZER} removed")


async def _delete(client: AsyncClient, obj: dict[str, Any], deleted: list[str],
                  say: Callable[[str], None]) -> None:
    meta = obj["metadata"]
    resource = resource_of(obj["apiVersion"], obj["kind"])
    namespaced = bool(meta.get("namespace")) and RESOURCES.get(obj["kind"], ("", "", True))[2]
    try:
        await client.delete(resource, meta["name"], namespace=meta["namespace"] if namespaced else None)
    except ApiError as e:
        if status_code(e) == 404:
            return
        raise
    where = f"{meta['namespace']}/{meta['name']}" if namespaced else meta["name"]
    deleted.append(f"{obj['kind']} {where}")
    say(f"deleted {obj['kind']} {where}")


def resource_of(api_version: str, kind: str) -> Any:
    """lightkube's class for a kind, as the controller's process has it: the provider's
    generic class for a kind it watches (Service, Secret, the CRDs, GatewayClass, ...;
    lightkube's registry holds one class per kind, and the provider's must be that one),
    else lightkube's own model."""
    watched = WATCHED.get((api_version, kind))
    return watched.resource() if watched is not None else resource_registry.load(api_version, kind)


# the provider's kinds and the generated kinds infra.generated watches by label: both use
# generic classes, which must be the registry's only class for their kind
WATCHED = {(k.api_version, k.kind): k for k in (*PROVIDER_KINDS, *GENERATED)}


def _why(e: Exception) -> str:
    return str(e) or type(e).__name__
