"""`portico install render`: every object valid against the Kubernetes schemas
(offline, kubernetes-validate), and RBAC that grants what the controller does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

from portico.install import CREATED, render
from portico.kinds import STATUS_OURS
from portico.provider.kubernetes import KINDS

KUBERNETES = "1.33"


def allowed(rules: list[dict[str, object]], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]  # type: ignore[operator]
               for r in rules)


def test_rendered_install_is_valid_and_grants_what_the_controller_does() -> None:
    objects = render()
    for o in objects:
        kubernetes_validate.validate(o, KUBERNETES, strict=True)
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    controller = by_name[("ClusterRole", "portico-controller")]["rules"]
    for kind in KINDS:  # watched
        for verb in ("list", "watch"):
            assert allowed(controller, kind.group, kind.plural, verb), (kind, verb)
    for kind in KINDS:  # status written: the kinds whose status is ours (portico.kinds), no other
        written = (kind.group, kind.kind) in STATUS_OURS
        assert allowed(controller, kind.group, f"{kind.plural}/status", "patch") == written, kind
    for group, plural in (("gateway.networking.k8s.io", "gateways"), ("gateway.networking.k8s.io", "tlsroutes"),
                          ("gateway.networking.k8s.io", "backendtlspolicies"),
                          ("gateway.networking.x-k8s.io", "xbackendtrafficpolicies"),
                          ("gateway.portico.dev", "ratelimitpolicies"), ("networking.k8s.io", "ingresses")):
        assert allowed(controller, group, f"{plural}/status", "patch"), plural
    for group, plural in (("", "services"), ("gateway.networking.k8s.io", "referencegrants")):  # none, or an input
        assert not allowed(controller, group, f"{plural}/status", "patch"), plural
    for group, plurals in CREATED.items():  # server-side apply of the per-Gateway objects
        for plural in plurals:
            assert allowed(controller, group, plural, "patch"), plural
    assert not allowed(controller, "", "pods", "create")  # nothing else
    for group, plural in (("autoscaling", "horizontalpodautoscalers"), ("policy", "poddisruptionbudgets")):
        assert allowed(controller, group, plural, "create") and allowed(controller, group, plural, "patch")
    assert not any("deletecollection" in r["verbs"] for r in controller)  # type: ignore[operator]  # never used
    # update only the owners' finalizers (blockOwnerDeletion under OwnerReferencesPermissionEnforcement)
    assert {res for r in controller if "update" in r["verbs"] for res in r["resources"]} == {  # type: ignore[operator,attr-defined]
        "gateways/finalizers", "ingressclasses/finalizers"}
    # delete: only what it generates per Gateway (pruning), never an input
    deletable = {(g, p) for r in controller if "delete" in r["verbs"]  # type: ignore[operator]
                 for g in r["apiGroups"] for p in r["resources"]}  # type: ignore[attr-defined]
    assert deletable == {(g, p) for g, plurals in CREATED.items() for p in plurals}, deletable
    edit = [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["labels"].get(
        "rbac.authorization.k8s.io/aggregate-to-edit") == "true"]
    assert not any(allowed(r["rules"], "gateway.portico.dev", "backends", "create") for r in edit)  # any address
    own = by_name[("Role", "portico-controller")]["rules"]
    assert allowed(own, "coordination.k8s.io", "leases", "update") and allowed(own, "", "secrets", "create")
    # the three personas, aggregated to the built-in roles
    developer = by_name[("ClusterRole", "portico-application-developer")]
    assert developer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert allowed(developer["rules"], "gateway.networking.k8s.io", "httproutes", "create")
    assert not allowed(developer["rules"], "gateway.networking.k8s.io", "gateways", "create")
    operator = by_name[("ClusterRole", "portico-cluster-operator")]
    assert allowed(operator["rules"], "gateway.networking.k8s.io", "gateways", "create")
    assert "rbac.authorization.k8s.io/aggregate-to-edit" not in operator["metadata"]["labels"]
    deployment = by_name[("Deployment", "portico-controller")]
    assert deployment["spec"]["replicas"] == 2
    kinds = {o["kind"] for o in objects}
    assert {"CustomResourceDefinition", "Namespace", "PodDisruptionBudget", "Service"} <= kinds


def test_the_command_prints_yaml_for_kubectl(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "portico.cli", "install", "render", "--namespace", "gw-system"],
                         capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert any(d["kind"] == "Namespace" and d["metadata"]["name"] == "gw-system" for d in docs)
    assert sum(d["kind"] == "CustomResourceDefinition" for d in docs) >= 10


def test_the_dockerfile_runs_the_controller() -> None:
    dockerfile = (Path(__file__).parents[2] / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["portico"]' in dockerfile and 'CMD ["controller"]' in dockerfile
    assert "USER 65532" in dockerfile


def test_the_kubernetes_example_is_valid() -> None:
    path = Path(__file__).parents[2] / "examples" / "kubernetes" / "gateway.yaml"
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and not doc["apiVersion"].startswith("gateway.networking"):
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_deploy_is_the_rendered_install_and_a_kustomization(tmp_path: Path) -> None:
    """deploy/ (for `kubectl kustomize deploy`) is current: `portico install render --output-dir`."""
    from portico.install import render_files

    deploy = Path(__file__).parents[2] / "deploy"
    files = render_files()
    for name, text in files.items():
        assert (deploy / name).read_text() == text, f"deploy/{name} is stale: portico install render --output-dir"
    kustomization = yaml.safe_load((deploy / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(n for n in files if n != "kustomization.yaml")
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((deploy / name).read_text()):
            assert doc["kind"] != "Secret"  # no token committed
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_render_is_deterministic_plain_yaml_with_the_bundle_version() -> None:
    from portico.install import render_yaml
    from portico.translator.gateway import BUNDLE_VERSION, GATEWAY_API_BUNDLE

    first = subprocess.run([sys.executable, "-m", "portico.cli", "install", "render"], capture_output=True,
                           text=True, check=True).stdout
    again = subprocess.run([sys.executable, "-m", "portico.cli", "install", "render"], capture_output=True,
                           text=True, check=True).stdout
    assert first == again == render_yaml()  # byte for byte: applying it again rotates nothing
    assert "&id" not in first and "*id" not in first  # no anchors, no aliases
    docs = [d for d in yaml.safe_load_all(first) if d]
    assert not [d for d in docs if d["kind"] == "Secret"]  # the controller makes its token (portico.admintoken)
    versions = {d["metadata"]["annotations"][BUNDLE_VERSION] for d in docs
                if BUNDLE_VERSION in (d["metadata"].get("annotations") or {})}
    assert versions == {GATEWAY_API_BUNDLE} and f"{BUNDLE_VERSION}: v0.0.0-dev" not in first
