"""Incremental translation == translation from scratch, on random sequences of changes
(a Hypothesis state machine). Each step changes the world the way the store does (the
changed object is a new instance, every other object the very same one) and checks that
the translation with the memo of the previous steps equals a translation without one:
IR, statuses, every Gateway's output. Changes cover what the memo depends on: routes
(added, changed, moved between Gateways and listeners, deleted), Services and their
endpoints, EndpointSlices alone (the patched case of `translator.incremental`: endpoints
coming and going, conditions, ports, address types, slices moving between Services,
endpoints the guardrails refuse, the API server's own slices), ReferenceGrants, Gateway
listeners, and policies of every target kind."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from portico.models import parse_object
from portico.objects import ObjectKey
from portico.translator import Placement, Snapshot, translate
from portico.translator.incremental import Incremental

TESTDATA = Path(__file__).parent / "testdata"
API, PORTICO = "gateway.networking.k8s.io/v1", "gateway.portico.dev/v1alpha1"
NAMESPACES = ("default", "other")
ROUTES = ("r1", "r2", "r3", "r4")
SERVICES = ("a", "b", "c")
GATEWAYS = ("gw", "edge")


def meta(name: str, namespace: str | None, stamp: int = 0, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "creationTimestamp": f"2026-01-01T00:00:{stamp:02d}Z", **extra}
    if namespace:
        out["namespace"] = namespace
    return out


def gateway(name: str, hostname: str | None, https: bool = False) -> dict[str, Any]:
    listeners = [{"name": "http", "port": 80 if name == "gw" else 8080, "protocol": "HTTP",
                  "allowedRoutes": {"namespaces": {"from": "All"}}}]
    if hostname:
        listeners.append({"name": "named", "port": 80 if name == "gw" else 8080, "protocol": "HTTP",
                          "hostname": hostname, "allowedRoutes": {"namespaces": {"from": "All"}}})
    if https:  # two HTTPS listeners on a port: SNI chains, misdirected (421) hosts
        tls = {"mode": "Terminate", "certificateRefs": [{"name": "wild"}]}
        listeners += [{"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "*.example.com", "tls": tls,
                       "allowedRoutes": {"namespaces": {"from": "All"}}},
                      {"name": "shop", "port": 443, "protocol": "HTTPS", "hostname": "shop.example.com",
                       "tls": tls, "allowedRoutes": {"namespaces": {"from": "All"}}}]
    return {"apiVersion": API, "kind": "Gateway", "metadata": meta(name, "default"),
            "spec": {"gatewayClassName": "portico", "listeners": listeners}}


routes = st.fixed_dictionaries({
    "kind": st.sampled_from(["HTTPRoute", "HTTPRoute", "GRPCRoute"]),
    "namespace": st.sampled_from(NAMESPACES),
    "name": st.sampled_from(ROUTES),
    "gateway": st.sampled_from(GATEWAYS),
    "section": st.sampled_from([None, "http", "named", "https", "shop"]),
    "hostname": st.sampled_from([None, "shop.example.com", "api.example.com"]),
    "path": st.sampled_from(["/", "/a", "/b/c"]),
    "service": st.sampled_from(SERVICES),
    "service_namespace": st.sampled_from([None, "default"]),
    "rule_name": st.sampled_from([None, "main"]),
    "stamp": st.integers(0, 5),
})


def route_doc(r: dict[str, Any]) -> dict[str, Any]:
    parent: dict[str, Any] = {"name": r["gateway"], "namespace": "default"}
    if r["section"]:
        parent["sectionName"] = r["section"]
    ref: dict[str, Any] = {"name": r["service"], "port": 80}
    if r["service_namespace"]:
        ref["namespace"] = r["service_namespace"]
    rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": r["path"]}}], "backendRefs": [ref]}
    if r["kind"] == "GRPCRoute":  # cross serving: the older of two kinds on a hostname wins
        rule["matches"] = [{"method": {"service": f"svc{r['path'].replace('/', '.')}"}}]
    if r["rule_name"]:
        rule["name"] = r["rule_name"]
    spec: dict[str, Any] = {"parentRefs": [parent], "rules": [rule]}
    if r["hostname"]:
        spec["hostnames"] = [r["hostname"]]
    return {"apiVersion": API, "kind": r["kind"], "metadata": meta(r["name"], r["namespace"], r["stamp"]),
            "spec": spec}


def service_docs(name: str, namespace: str, ports: list[int]) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "Service", "metadata": meta(name, namespace),
             "spec": {"ports": [{"name": "http", "port": 80}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": meta(name, namespace, labels={"kubernetes.io/service-name": name}),
             "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}],
             "ports": [{"name": "http", "port": p, "protocol": "TCP"} for p in ports[:1]]}]


# endpoints of EndpointSlices: plain ones, a loopback one (a Service's may name it), a
# metadata address (refused by the guardrails) and an address `default/kubernetes` may hold
slice_endpoints = st.lists(st.fixed_dictionaries({
    "addresses": st.lists(st.sampled_from(["10.0.0.1", "10.0.0.2", "127.0.0.1", "169.254.169.254"]),
                          min_size=1, max_size=2, unique=True),
    "conditions": st.sampled_from([{}, {"ready": True}, {"ready": False}, {"ready": False, "serving": True}]),
}), max_size=3)

# (weighted towards the slices routes use: the one `service_docs` makes, in "default")
slices = st.fixed_dictionaries({
    "namespace": st.sampled_from(["default", "default", "other"]),
    "name": st.sampled_from([*SERVICES, *SERVICES, "kubernetes"]),
    "second": st.sampled_from([False, False, False, True]),  # a second slice of the Service
    # its kubernetes.io/service-name: None for its own name, "" for none
    "service": st.sampled_from([None, None, None, None, *SERVICES, "kubernetes", ""]),
    "address_type": st.sampled_from(["IPv4", "IPv4", "IPv4", "IPv6"]),
    "port_name": st.sampled_from(["http", "http", "http", "other"]),
    "port": st.sampled_from([9000, 9001, 9002, 9100]),
    "endpoints": slice_endpoints,
    "present": st.sampled_from([True, True, True, False]),
})


policies = st.sampled_from([
    ("BackendTrafficPolicy", {"group": "", "kind": "Service", "name": "a"},
     {"loadBalancer": {"type": "LeastRequest"}, "healthCheck": {"passive": {}}}),
    ("BackendTrafficPolicy", {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
     {"loadBalancer": {"type": "Random"}, "timeout": {"idle": "9s"}, "circuitBreaker": {"maxConnections": 5}}),
    ("BackendTrafficPolicy", {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r1"},
     {"retry": {"numRetries": 1}}),
    ("BackendTrafficPolicy", {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r2",
                              "sectionName": "main"}, {"loadBalancer": {"type": "Maglev",
                                                                         "hashOn": {"sourceIP": {}}}}),
    ("SecurityPolicy", {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"},
     {"authorization": {"defaultAction": "Deny", "rules": [
         {"action": "Allow", "principal": {"clientCIDRs": ["10.0.0.0/8"]}}]}}),
    ("RateLimitPolicy", {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw",
                         "sectionName": "http"}, {"local": {"rules": [{"limit": {"requests": 5, "unit": "Second"}}]}}),
    ("ClientTrafficPolicy", {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
     {"clientIPDetection": {"xForwardedFor": {"numTrustedHops": 1}}}),
])


# the *.example.com certificate of the HTTPS golden case
WILDCARD_SECRET = next(d for d in yaml.safe_load_all((TESTDATA / "https-listeners" / "in.yaml").read_text())
                       if d and d["kind"] == "Secret" and d["metadata"]["name"] == "wild")


class Changes(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.memo = Incremental()
        self.objects: dict[ObjectKey, Any] = {}
        self.put({"apiVersion": API, "kind": "GatewayClass", "metadata": meta("portico", None),
                  "spec": {"controllerName": "portico.dev/gateway-controller"}})
        self.put(WILDCARD_SECRET)
        for name in GATEWAYS:
            self.put(gateway(name, None))
        for ns in NAMESPACES:
            for svc in SERVICES:
                for d in service_docs(svc, ns, [9000 + SERVICES.index(svc)]):
                    self.put(d)

    def put(self, doc: dict[str, Any]) -> None:
        obj = parse_object(doc)
        self.objects[obj.key] = obj  # a new instance; every other object stays the same one

    def delete(self, kind: str, namespace: str, name: str) -> None:
        for key in [k for k in self.objects if (k.kind, k.namespace, k.name) == (kind, namespace, name)]:
            del self.objects[key]

    @rule(r=routes)
    def put_route(self, r: dict[str, Any]) -> None:
        self.put(route_doc(r))

    @rule(kind=st.sampled_from(["HTTPRoute", "GRPCRoute"]), namespace=st.sampled_from(NAMESPACES),
          name=st.sampled_from(ROUTES))
    def delete_route(self, kind: str, namespace: str, name: str) -> None:
        self.delete(kind, namespace, name)

    @rule(namespace=st.sampled_from(NAMESPACES), name=st.sampled_from(SERVICES),
          port=st.sampled_from([9100, 9101]), present=st.booleans())
    def change_service(self, namespace: str, name: str, port: int, present: bool) -> None:
        if present:
            for d in service_docs(name, namespace, [port]):
                self.put(d)
        else:
            self.delete("Service", namespace, name)

    @rule(s=slices)
    def change_slice(self, s: dict[str, Any]) -> None:
        """An EndpointSlice alone changes (pods scaled, rolled, rescheduled)."""
        name = f"{s['name']}-2" if s["second"] else s["name"]
        if not s["present"]:
            self.delete("EndpointSlice", s["namespace"], name)
            return
        service = s["name"] if s["service"] is None else s["service"]
        labels = {"kubernetes.io/service-name": service} if service else {}
        endpoints = [{**e, "addresses": ["fd00::1"] if s["address_type"] == "IPv6" else e["addresses"]}
                     for e in s["endpoints"]]
        self.put({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": meta(name, s["namespace"], labels=labels), "addressType": s["address_type"],
                  "endpoints": endpoints, "ports": [{"name": s["port_name"], "port": s["port"], "protocol": "TCP"}]})

    @rule(s=slices, pick=st.integers(0, 15))
    def change_used_slice(self, s: dict[str, Any], pick: int) -> None:
        """The EndpointSlice of a Service a route sends to changes (a pod event where it counts)."""
        used = sorted({(ref.namespace or key.namespace, ref.name) for key, obj in self.objects.items()
                       if key.kind in ("HTTPRoute", "GRPCRoute")
                       for rule in obj.spec.rules for ref in rule.backend_refs})
        if used:
            namespace, name = used[pick % len(used)]
            self.change_slice({**s, "namespace": namespace, "name": name})

    @rule(s=slices, pick=st.integers(0, 15), r=routes)
    def change_slice_and_route(self, s: dict[str, Any], pick: int, r: dict[str, Any]) -> None:
        """A route and an EndpointSlice change in one sync (a GitOps apply of a namespace)."""
        self.change_used_slice(s, pick)
        self.put_route(r)

    @rule(present=st.booleans())
    def grant(self, present: bool) -> None:
        if present:
            self.put({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
                      "metadata": meta("from-other", "default"),
                      "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                         "namespace": "other"}], "to": [{"group": "", "kind": "Service"}]}})
        else:
            self.delete("ReferenceGrant", "default", "from-other")

    @rule(name=st.sampled_from(GATEWAYS), hostname=st.sampled_from([None, "shop.example.com", "*.example.com"]),
          https=st.booleans())
    def change_gateway(self, name: str, hostname: str | None, https: bool) -> None:
        self.put(gateway(name, hostname, https))

    @rule(policy=policies, index=st.integers(0, 1), present=st.booleans())
    def change_policy(self, policy: tuple[str, dict[str, str], dict[str, Any]], index: int, present: bool) -> None:
        kind, target, spec = policy
        name = f"{kind.lower()}-{index}"
        if present:
            self.put({"apiVersion": f"{PORTICO}", "kind": kind, "metadata": meta(name, "default", index),
                      "spec": {"targetRefs": [target], **spec}})
        else:
            self.delete(kind, "default", name)

    @invariant()
    def incremental_equals_scratch(self) -> None:
        snap = Snapshot(dict(self.objects), {("default", gw): Placement(f"127.10.0.{i + 1}")
                                             for i, gw in enumerate(GATEWAYS)}, memo=self.memo)
        incremental = translate(snap)
        scratch = translate(dataclasses.replace(snap, memo=None))
        assert incremental == scratch


TestIncremental = Changes.TestCase
TestIncremental.settings = settings(max_examples=150, stateful_step_count=30, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
