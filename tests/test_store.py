"""The store behind standalone mode's API-server emulation: Kubernetes metadata
semantics, invalid objects, status (`EmulatedStore` composes them as `portico run` does)."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from portico import CONTROLLER_NAME
from portico.objects import key_of
from portico.provider import Document, DocumentError, ProviderEvent, Source
from portico.provider.apiserver import APIServerEmulation
from portico.status.store import StoreStatusWriter
from portico.store import Store
from portico.validation import apply_defaults

ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "r", "namespace": "ns"},
    "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]},
}
SLICE: dict[str, Any] = {
    "apiVersion": "discovery.k8s.io/v1",
    "kind": "EndpointSlice",
    "metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "svc"}},
    "addressType": "IPv4",
    "endpoints": [{"addresses": ["127.0.0.1"]}],
    "ports": [{"name": "http", "port": 9001}],
}


def doc(raw: dict[str, Any], file: str = "f.yaml", line: int = 1) -> Document:
    return Document(key_of(raw), copy.deepcopy(raw), Source(file, line))


class EmulatedStore:
    """A store fed through the API-server emulation, as in `portico run`."""

    def __init__(self) -> None:
        ticks = itertools.count()
        uids = itertools.count()

        def clock() -> str:
            return f"2026-01-01T00:00:{next(ticks):02d}Z"

        self.api = APIServerEmulation(clock=clock, new_uid=lambda: f"uid-{next(uids)}")
        self.store = Store(clock=clock, next_resource_version=self.api.next_resource_version)

    def apply(self, event: ProviderEvent) -> bool:
        return self.store.apply(self.api.admit(event))

    def upsert(self, doc: Document) -> bool:
        return self.apply(ProviderEvent(upserts=(doc,)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def new_store() -> EmulatedStore:
    return EmulatedStore()


def meta(store: EmulatedStore, raw: dict[str, Any]) -> dict[str, Any]:
    obj = store.get(key_of(raw))
    assert obj is not None
    return dict(obj.raw["metadata"])


def test_first_sight_sets_metadata() -> None:
    store = new_store()
    assert store.upsert(doc(ROUTE))
    m = meta(store, ROUTE)
    assert (m["generation"], m["uid"], m["creationTimestamp"]) == (1, "uid-0", "2026-01-01T00:00:00Z")
    assert m["resourceVersion"] == "1"
    obj = store.get(key_of(ROUTE))
    assert obj is not None and obj.resource.metadata.generation == 1


def test_default_namespace_is_filled_in() -> None:
    store = new_store()
    store.upsert(doc(SLICE))
    assert meta(store, SLICE)["namespace"] == "default"


def test_generation_grows_on_spec_change_only() -> None:
    store = new_store()
    store.upsert(doc(ROUTE))
    same = doc(ROUTE, file="moved.yaml", line=9)
    assert not store.upsert(same)
    assert meta(store, ROUTE)["resourceVersion"] == "1"

    labelled = copy.deepcopy(ROUTE)
    labelled["metadata"]["labels"] = {"a": "b"}
    assert store.upsert(doc(labelled))
    m = meta(store, ROUTE)
    assert m["generation"] == 1 and m["resourceVersion"] == "2" and m["uid"] == "uid-0"

    changed = copy.deepcopy(labelled)
    changed["spec"]["hostnames"] = ["example.com"]
    assert store.upsert(doc(changed))
    m = meta(store, ROUTE)
    assert (m["generation"], m["uid"], m["creationTimestamp"]) == (2, "uid-0", "2026-01-01T00:00:00Z")
    assert store.upsert(doc(ROUTE))
    assert meta(store, ROUTE)["generation"] == 3


def test_manifest_values_of_server_metadata_are_ignored() -> None:
    store = new_store()
    raw = copy.deepcopy(ROUTE)
    raw["metadata"].update(generation=7, uid="mine", creationTimestamp="1999-01-01T00:00:00Z")
    store.upsert(doc(raw))
    m = meta(store, ROUTE)
    assert (m["generation"], m["uid"]) == (1, "uid-0")


def test_kinds_without_spec_compare_content() -> None:
    store = new_store()
    store.upsert(doc(SLICE))
    moved = copy.deepcopy(SLICE)
    moved["endpoints"][0]["addresses"] = ["127.0.0.2"]
    assert store.upsert(doc(moved))
    assert meta(store, SLICE)["generation"] == 2
    annotated = copy.deepcopy(moved)
    annotated["metadata"]["annotations"] = {"x": "y"}
    assert store.upsert(doc(annotated))
    assert meta(store, SLICE)["generation"] == 2


def test_delete_and_recreate_starts_over() -> None:
    store = new_store()
    store.upsert(doc(ROUTE))
    assert store.apply(ProviderEvent(deletes=(key_of(ROUTE),)))
    assert store.get(key_of(ROUTE)) is None
    store.upsert(doc(ROUTE))
    m = meta(store, ROUTE)
    assert (m["generation"], m["uid"], m["creationTimestamp"]) == (1, "uid-1", "2026-01-01T00:00:01Z")


def test_invalid_object_keeps_the_previous_version() -> None:
    store = new_store()
    store.upsert(doc(ROUTE))
    bad = copy.deepcopy(ROUTE)
    bad["spec"]["rules"] = "not a list"
    assert not store.upsert(doc(bad, file="r.yaml", line=4))
    obj = store.get(key_of(ROUTE))
    # stored as an API server stores it: defaulted
    assert obj is not None and obj.raw["spec"] == apply_defaults(ROUTE)["spec"]
    [error] = store.errors()
    assert (error.file, error.line, error.object) == ("r.yaml", 4, "HTTPRoute ns/r")
    assert error.path.startswith("spec.rules")
    assert error.message
    # fixed: applied, error gone
    fixed = copy.deepcopy(ROUTE)
    fixed["spec"]["hostnames"] = ["a.example"]
    assert store.upsert(doc(fixed))
    assert store.errors() == []
    assert meta(store, ROUTE)["generation"] == 2


def test_invalid_on_first_sight_is_not_stored() -> None:
    store = new_store()
    bad = copy.deepcopy(ROUTE)
    bad["spec"] = {"parentRefs": "gw"}
    store.upsert(doc(bad))
    assert store.get(key_of(ROUTE)) is None
    assert len(store.errors()) == 1
    store.apply(ProviderEvent(deletes=(key_of(ROUTE),)))
    assert store.errors() == []


def test_reverting_to_the_serving_version_clears_the_error() -> None:
    store = new_store()
    store.upsert(doc(ROUTE))
    bad = copy.deepcopy(ROUTE)
    bad["spec"]["rules"] = 5
    store.upsert(doc(bad))
    assert not store.upsert(doc(ROUTE))
    assert store.errors() == []
    assert meta(store, ROUTE)["generation"] == 1


def test_load_errors_are_replaced_per_sync() -> None:
    store = new_store()
    err = DocumentError("a.yaml", 3, "invalid YAML")
    store.apply(ProviderEvent(errors=(err,)))
    assert store.errors() == [err]
    store.apply(ProviderEvent())
    assert store.errors() == []


def test_status_is_separate_and_bumps_resource_version() -> None:
    store = new_store()
    raw = copy.deepcopy(ROUTE)
    raw["status"] = {"parents": [{"controllerName": "other.example/ctrl"}]}
    store.upsert(doc(raw))
    key = key_of(ROUTE)
    [listed] = store.list_objects(kind="HTTPRoute")
    assert listed["status"] == raw["status"]
    assert store.set_status(key, {"parents": []})
    assert not store.set_status(key, {"parents": []})
    assert meta(store, ROUTE)["resourceVersion"] == "2"
    # a spec change keeps the status
    changed = copy.deepcopy(raw)
    changed["spec"]["hostnames"] = ["x"]
    store.upsert(doc(changed))
    obj = store.get(key)
    assert obj is not None and obj.status == {"parents": []}
    # no longer ours: the manifest's status comes back
    assert store.release_statuses(keep=()) == [key]
    assert obj.status == raw["status"]


def test_list_filters() -> None:
    store = new_store()
    store.upsert(doc(ROUTE))
    store.upsert(doc(SLICE))
    assert [o["kind"] for o in store.list_objects()] == ["EndpointSlice", "HTTPRoute"]
    assert [o["kind"] for o in store.list_objects(namespace="ns")] == ["HTTPRoute"]
    assert [o["kind"] for o in store.list_objects(kind="EndpointSlice", name="s")] == ["EndpointSlice"]
    assert store.list_objects(name="nope") == []


def test_condition_transition_times() -> None:
    store = new_store()
    store.upsert(doc(ROUTE))  # clock tick 0
    key = key_of(ROUTE)

    def status(accepted: str, resolved: str) -> dict[str, Any]:
        conds = [{"type": "Accepted", "status": accepted, "lastTransitionTime": "1970-01-01T00:00:00Z"},
                 {"type": "ResolvedRefs", "status": resolved, "lastTransitionTime": "1970-01-01T00:00:00Z"}]
        return {"parents": [{"parentRef": {"name": "gw"}, "controllerName": CONTROLLER_NAME, "conditions": conds}]}

    def times() -> list[str]:
        obj = store.get(key)
        assert obj is not None
        return [c["lastTransitionTime"] for c in obj.status["parents"][0]["conditions"]]

    writer = StoreStatusWriter(store)  # composes (and stamps) with the store's clock
    writer.write(key, status("True", "True"))
    assert times() == ["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"]
    revision = store.revision
    writer.write(key, status("True", "True"))
    assert store.revision == revision  # nothing changed
    writer.write(key, status("True", "False"))
    assert times()[0] == "2026-01-01T00:00:01Z" and times()[1] > "2026-01-01T00:00:02Z"


CEL_INVALID = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated, namespace: ns}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  rules:
    - filters:
        - type: RequestRedirect
          requestRedirect: {hostname: a.example}
        - type: URLRewrite
          urlRewrite: {hostname: b.example}
"""


def test_cel_violation_names_file_field_line_and_rule(tmp_path: Any) -> None:
    """The API server's CEL rules apply in standalone mode (x-kubernetes-validations)."""
    path = tmp_path / "route.yaml"
    path.write_text(CEL_INVALID)
    raw = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": "r", "namespace": "ns"},
           "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"filters": [
               {"type": "RequestRedirect", "requestRedirect": {"hostname": "a.example"}},
               {"type": "URLRewrite", "urlRewrite": {"hostname": "b.example"}}]}]}}
    store = new_store()
    assert not store.upsert(doc(raw, file=str(path), line=5))
    [error] = store.errors()
    assert error.file == str(path) and error.path == "spec.rules[0].filters"
    assert error.line == 11  # the `filters:` line, not the document start
    assert error.message.startswith("May specify either httpRouteFilterRequestRedirect")  # the CRD message
    assert "RequestRedirect" in error.rule and "URLRewrite" in error.rule  # the CEL rule itself


def test_changes_since_names_the_objects_changed_after_a_revision() -> None:
    from portico.objects import key_of
    from portico.provider import Document, ProviderEvent, Source

    def doc(name: str, value: str) -> Document:
        raw = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"},
               "data": {"k": value}}
        return Document(key_of(raw), raw, Source("f", 1))

    store = Store()
    store.apply(ProviderEvent((doc("a", "1"), doc("b", "1"))))
    start = store.object_revision
    assert store.changes_since(start) == frozenset()
    store.apply(ProviderEvent((doc("a", "1"),)))  # the same again (a watch re-listing): no change
    assert store.changes_since(start) == frozenset()
    store.apply(ProviderEvent((doc("b", "2"),), deletes=(doc("a", "1").key,)))
    assert store.changes_since(start) == {doc("a", "1").key, doc("b", "2").key}
    assert store.changes_since(store.object_revision) == frozenset()
    assert set(store.of_kind("ConfigMap")) == {doc("b", "2").key}
    store.LOG_SIZE = 1
    for i in range(3):
        store.apply(ProviderEvent((doc("c", str(i)),)))
    assert store.changes_since(start) is None  # older than the log: unknown, translate afresh


def test_a_status_only_change_is_translated_only_where_the_status_is_an_input() -> None:
    """As a watch brings objects back after a status write: the status of a Gateway API
    kind, of Portico's policies and of a served Ingress is the controllers' (no change to
    translate); a Service's status (its load balancer) is an input (one to translate)."""
    store = Store()
    policy = {"apiVersion": "gateway.portico.dev/v1alpha1", "kind": "BackendTrafficPolicy",
              "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "1"},
              "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "svc"}]}}
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "i", "namespace": "ns", "resourceVersion": "1"}, "spec": {}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "ns",
                                                                    "resourceVersion": "1"},
               "spec": {"ports": [{"port": 80}]}}
    statuses = {"HTTPRoute": {"parents": [{"controllerName": "portico.dev/gateway-controller"}]},
                "BackendTrafficPolicy": {"ancestors": [{"controllerName": "portico.dev/gateway-controller"}]},
                "Ingress": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}},
                "Service": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}}
    for raw in (ROUTE, policy, ingress, service):
        assert store.apply(ProviderEvent(upserts=(doc(raw),)))
        written = {**copy.deepcopy(raw), "status": statuses[raw["kind"]]}
        written["metadata"] = {**raw["metadata"], "resourceVersion": "2"}
        assert store.apply(ProviderEvent(upserts=(doc(written),))) == (raw["kind"] == "Service"), raw["kind"]
