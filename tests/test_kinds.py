"""The kinds table (`portico.kinds`) is true to the CRDs Portico ships, and every kind
list of the system is a view of it."""

from __future__ import annotations

import importlib.resources
from typing import Any

import yaml

from portico import kinds, models
from portico.install import PERSONAS, cluster_role
from portico.objects import key_of
from portico.provider.kubernetes import KINDS as WATCHED
from portico.translator.policies import REGISTRY
from portico.validation import CORE_KINDS


def shipped_crds() -> dict[tuple[str, str], dict[str, Any]]:
    folder = importlib.resources.files("portico") / "crds"
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".yaml"):
            for doc in yaml.safe_load_all(entry.read_text()):
                if doc and doc["kind"] == "CustomResourceDefinition":
                    spec = doc["spec"]
                    out[(spec["group"], spec["names"]["kind"])] = spec
    return out


def test_every_row_with_a_crd_matches_it() -> None:
    crds = shipped_crds()
    for k in kinds.KINDS:
        if not k.crd:
            assert (k.group, k.kind) not in crds, k
            continue
        spec = crds[(k.group, k.kind)]
        served = [v["name"] for v in spec["versions"] if v["served"]]
        storage = next(v for v in spec["versions"] if v["storage"])
        assert spec["names"]["plural"] == k.plural, k
        assert (spec["scope"] == "Namespaced") == k.namespaced, k
        assert sorted(served) == sorted(k.versions), k
        assert storage["name"] == k.versions[0], k  # Kubernetes mode watches the storage version
        if k.status == "ours":  # a status to write needs the status subresource
            assert "status" in (storage.get("subresources") or {}), k


def test_models_are_the_rows_models() -> None:
    for k in kinds.KINDS:
        found = models.MODELS.get((k.group, k.kind))
        if k.model is None:
            assert found is None, k
        else:
            assert found is not None and found.__name__ == k.model, k
    assert len(models.MODELS) == sum(1 for k in kinds.KINDS if k.model)
    assert models.model_for("networking.k8s.io/v1", "Ingress") is models.Other


def test_the_translator_registers_a_module_for_every_policy_kind_and_no_other() -> None:
    assert [p.kind for p in REGISTRY] == [k.kind for k in kinds.POLICY_KINDS]
    for policy in REGISTRY:
        assert models.MODELS[next((k.group, k.kind) for k in kinds.POLICY_KINDS if k.kind == policy.kind)] \
            is policy.model
    for k in kinds.POLICY_KINDS:
        assert set(k.targets) <= set(kinds.BY_GROUP_KIND), k  # a target is a kind Portico reads


def test_kubernetes_mode_watches_and_writes_the_rows_it_should() -> None:
    assert [(w.group, w.kind, w.version, w.plural, w.namespaced) for w in WATCHED] == [
        (k.group, k.kind, k.versions[0], k.plural, k.namespaced) for k in kinds.KINDS if k.watch]
    status = {(rule["apiGroups"][0], r.removesuffix("/status")) for rule in cluster_role()["rules"]
              for r in rule["resources"] if r.endswith("/status")}
    assert status == {(k.group, k.plural) for k in kinds.KINDS if k.status == "ours"}
    managed = {r for resources, _ in PERSONAS.values() for r in resources}
    assert managed == {k.plural for k in kinds.KINDS if k.persona}
    assert {("", "v1", "Service"), ("discovery.k8s.io", "v1", "EndpointSlice")} <= set(CORE_KINDS)
    assert not any(kind == "Ingress" for _, _, kind in CORE_KINDS)  # no model: not read, not checked


def test_objects_of_cluster_scoped_kinds_have_no_namespace() -> None:
    for k in kinds.KINDS:
        api_version = f"{k.group}/{k.versions[0]}" if k.group else k.versions[0]
        key = key_of({"apiVersion": api_version, "kind": k.kind, "metadata": {"name": "x"}})
        assert key.namespace == ("default" if k.namespaced else ""), k  # IngressClass too
