"""validate(): schema checks and CEL rules of the Gateway API CRDs, with their own messages."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from portico.validation import Violation, apply_defaults, checked, validate

GW = "gateway.networking.k8s.io/v1"


def obj(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def messages(raw: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    return [v.message for v in validate(raw, old)]


def has_violation(raw: dict[str, Any], path: str, message: str, rule_kind: str | None = None) -> bool:
    vs = validate(raw)
    for v in vs:
        if v.path == path and message in v.message and (rule_kind is None or v.rule == rule_kind):
            return True
    pytest.fail(f"no violation {path}: {message!r}; got:\n" + "\n".join(f"  {v.path}: {v.message}" for v in vs))


GATEWAY_CLASS = obj(
    """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
"""
)

GATEWAY = obj(
    """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: portico
  listeners:
  - name: http
    port: 80
    protocol: HTTP
  - name: https
    port: 443
    protocol: HTTPS
    hostname: "*.example.com"
    tls:
      certificateRefs: [{name: cert}]
"""
)

HTTP_ROUTE = obj(
    """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: http}]
  hostnames: [www.example.com]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /api}
      headers: [{name: x-env, value: canary}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    backendRefs: [{name: api, port: 8080, weight: 3}]
    timeouts: {request: 10s, backendRequest: 5s}
  - backendRefs: [{name: web, port: 80}]
"""
)

GRPC_ROUTE = obj(
    """
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc}
spec:
  parentRefs: [{name: gw}]
  hostnames: [grpc.example.com]
  rules:
  - matches:
    - method: {service: helloworld.Greeter, method: SayHello}
    backendRefs: [{name: greeter, port: 50051}]
"""
)

TCP_ROUTE = obj(
    """
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: tcp}
spec:
  parentRefs: [{name: gw, sectionName: tcp}]
  rules: [{backendRefs: [{name: db, port: 5432}]}]
"""
)

UDP_ROUTE = obj(
    """
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: {name: dns}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: coredns, port: 53}]}]
"""
)

TLS_ROUTE = obj(
    """
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: tls}
spec:
  parentRefs: [{name: gw}]
  hostnames: [secure.example.com, "*.wild.example.com"]
  rules: [{backendRefs: [{name: secure, port: 443}]}]
"""
)

REFERENCE_GRANT = obj(
    """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service}]
"""
)

BACKEND_TLS_POLICY = obj(
    """
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: tls-policy}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  validation:
    hostname: api.example.com
    caCertificateRefs: [{group: "", kind: ConfigMap, name: ca}]
"""
)

LISTENER_SET = obj(
    """
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra}
spec:
  parentRef: {name: gw}
  listeners:
  - {name: extra-http, port: 8080, protocol: HTTP, hostname: extra.example.com}
"""
)

XBACKEND = obj(
    """
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackend
metadata: {name: ext}
spec:
  type: ExternalHostname
  externalHostname: {hostname: api.example.org}
  port: {port: 443}
"""
)

XBACKEND_TRAFFIC_POLICY = obj(
    """
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: retry}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
"""
)

XMESH = obj(
    """
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XMesh
metadata: {name: mesh}
spec: {controllerName: portico.dev/mesh}
"""
)

VALID = {
    "GatewayClass": GATEWAY_CLASS,
    "Gateway": GATEWAY,
    "HTTPRoute": HTTP_ROUTE,
    "GRPCRoute": GRPC_ROUTE,
    "TCPRoute": TCP_ROUTE,
    "UDPRoute": UDP_ROUTE,
    "TLSRoute": TLS_ROUTE,
    "ReferenceGrant": REFERENCE_GRANT,
    "BackendTLSPolicy": BACKEND_TLS_POLICY,
    "ListenerSet": LISTENER_SET,
    "XBackend": XBACKEND,
    "XBackendTrafficPolicy": XBACKEND_TRAFFIC_POLICY,
    "XMesh": XMESH,
}


def mutate(base: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(base)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_objects_have_no_violations(kind: str) -> None:
    assert validate(VALID[kind]) == []


def test_violation_is_a_frozen_value() -> None:
    v = Violation("spec.x", "bad", "maxLength")
    with pytest.raises(AttributeError):
        v.path = "y"  # type: ignore[misc]
    assert str(v) == "spec.x: bad"


def test_unknown_kinds_and_core_kinds() -> None:
    assert validate({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"x": 1}}) == []
    assert validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {}}) == []
    assert messages({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "Web_1"}})


def test_unserved_version_of_a_known_kind() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["apiVersion"] = "gateway.networking.k8s.io/v9"
    has_violation(raw, "apiVersion", 'no matches for kind "HTTPRoute"')


def test_older_served_versions_validate() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["apiVersion"] = "gateway.networking.k8s.io/v1beta1"
    assert validate(raw) == []
    raw["spec"]["rules"][0]["matches"][0]["path"]["value"] = "api"
    has_violation(
        raw,
        "spec.rules[0].matches[0].path",
        "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
    )


# --- HTTPRoute -------------------------------------------------------------------


def test_httproute_redirect_and_rewrite_in_one_rule() -> None:
    raw = mutate(HTTP_ROUTE)
    rule = raw["spec"]["rules"][0]
    del rule["backendRefs"]
    rule["filters"] = [
        {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}},
        {"type": "URLRewrite", "urlRewrite": {"hostname": "x.example.com"}},
    ]
    has_violation(
        raw,
        "spec.rules[0].filters",
        "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both",
    )


def test_httproute_redirect_with_backend_refs() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["rules"][0]["filters"] = [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]
    has_violation(raw, "spec.rules[0]", "RequestRedirect filter must not be used together with backendRefs")


def test_httproute_path_must_start_with_slash() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["rules"][0]["matches"][0]["path"]["value"] = "api"
    has_violation(
        raw,
        "spec.rules[0].matches[0].path",
        "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/a//b", "must not contain '//' when type one of ['Exact', 'PathPrefix']"),
        ("/a/../b", "must not contain '/../' when type one of ['Exact', 'PathPrefix']"),
        ("/a%2fb", "must not contain '%2f' when type one of ['Exact', 'PathPrefix']"),
        ("/a/.", "must not end with '/.' when type one of ['Exact', 'PathPrefix']"),
        ("/a b", "must only contain valid characters"),
    ],
)
def test_httproute_bad_paths(value: str, message: str) -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["rules"][0]["matches"][0]["path"]["value"] = value
    has_violation(raw, "spec.rules[0].matches[0].path", message)


def test_httproute_regex_paths_are_not_held_to_path_rules() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["rules"][1]["matches"] = [{"path": {"type": "RegularExpression", "value": "api.*"}}]
    assert validate(raw) == []


def test_httproute_replace_prefix_match_without_path_prefix() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["rules"][0]["matches"][0]["path"] = {"type": "Exact", "value": "/api"}
    has_violation(
        raw,
        "spec.rules[0]",
        "When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
    )


def test_httproute_replace_prefix_match_default_match_is_path_prefix() -> None:
    # matches defaults to [{path: {type: PathPrefix, value: /}}] before CEL runs
    raw = mutate(HTTP_ROUTE)
    del raw["spec"]["rules"][0]["matches"]
    assert validate(raw) == []


def test_httproute_filter_type_and_field_must_agree() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["rules"][0]["filters"] = [{"type": "RequestHeaderModifier"}]
    has_violation(
        raw,
        "spec.rules[0].filters[0]",
        "filter.requestHeaderModifier must be specified for RequestHeaderModifier filter.type",
    )


def test_httproute_too_many_parent_refs() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["parentRefs"] = [{"name": f"gw{i}"} for i in range(33)]
    has_violation(raw, "spec.parentRefs", "must have at most 32 items", "maxItems")


def test_httproute_duplicate_parent_refs() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["parentRefs"] = [{"name": "gw", "namespace": "infra"}, {"name": "gw", "namespace": "infra"}]
    has_violation(
        raw,
        "spec.parentRefs",
        "sectionName or port must be unique when parentRefs includes 2 or more references to the same parent",
    )
    # different namespaces: distinct parents (the `namespace` property is escaped as __namespace__)
    raw["spec"]["parentRefs"][1]["namespace"] = "other"
    assert validate(raw) == []


def test_httproute_bad_hostname_pattern() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["hostnames"] = ["Bad_Host.example.com"]
    has_violation(raw, "spec.hostnames[0]", "should match", "pattern")


def test_httproute_schema_errors() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["rules"][0]["backendRefs"][0]["port"] = 70000
    raw["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    raw["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"
    vs = {(v.path, v.rule) for v in validate(raw)}
    assert ("spec.rules[0].backendRefs[0].port", "maximum") in vs
    assert ("spec.rules[0].backendRefs[0].weight", "minimum") in vs
    assert ("spec.rules[0].matches[0].path.type", "enum") in vs
    # an enum error blocks CEL evaluation, as in the API server
    assert any("some validation rules were not checked" in v.message for v in validate(raw))


def test_httproute_backend_timeout_longer_than_request() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["rules"][0]["timeouts"] = {"request": "5s", "backendRequest": "1m"}
    has_violation(raw, "spec.rules[0].timeouts", "backendRequest timeout cannot be longer than request timeout")


def test_httproute_type_errors_and_unknown_fields() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["hostname"] = ["typo.example.com"]
    raw["spec"]["rules"][0]["backendRefs"][0]["port"] = "80"
    vs = {(v.path, v.rule) for v in validate(raw)}
    assert ("spec.hostname", "unknownField") in vs
    assert ("spec.rules[0].backendRefs[0].port", "type") in vs


def test_httproute_duplicate_rule_names() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["rules"][0]["name"] = "same"
    raw["spec"]["rules"][1]["name"] = "same"
    has_violation(raw, "spec.rules", "Rule name must be unique within the route")


def test_httproute_set_list_duplicates() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["rules"][0]["filters"] = [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x-a", "x-a"]}}
    ]
    has_violation(raw, "spec.rules[0].filters[0].requestHeaderModifier.remove[1]", "Duplicate value")


def test_httproute_map_list_duplicates() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["spec"]["rules"][0]["filters"] = [
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}, {"name": "x-a", "value": "2"}]},
        }
    ]
    vs = validate(raw)
    assert any(v.path.endswith("set[1]") and "Duplicate value" in v.message for v in vs), vs


def test_missing_required_field() -> None:
    raw = mutate(HTTP_ROUTE)
    del raw["spec"]["rules"][0]["backendRefs"][0]["name"]
    has_violation(raw, "spec.rules[0].backendRefs[0].name", "Required value", "required")


def test_metadata_name_checked() -> None:
    raw = mutate(HTTP_ROUTE)
    raw["metadata"]["name"] = "Not_Valid"
    has_violation(raw, "metadata.name", "RFC 1123 subdomain")


# --- Gateway --------------------------------------------------------------------------


def test_gateway_duplicate_listener_names() -> None:
    raw = mutate(GATEWAY)
    raw["spec"]["listeners"][1]["name"] = "http"
    has_violation(raw, "spec.listeners", "Listener name must be unique within the Gateway")


def test_gateway_https_without_tls() -> None:
    raw = mutate(GATEWAY)
    del raw["spec"]["listeners"][1]["tls"]
    # the CRDs have no rule requiring tls for HTTPS (the controller reports it in status);
    # a TLS listener does need a mode
    assert validate(raw) == []
    raw["spec"]["listeners"][1]["protocol"] = "TLS"
    has_violation(raw, "spec.listeners", "tls mode must be set for protocol TLS")


def test_gateway_tls_on_http_listener() -> None:
    raw = mutate(GATEWAY)
    raw["spec"]["listeners"][0]["tls"] = {"certificateRefs": [{"name": "cert"}]}
    has_violation(raw, "spec.listeners", "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']")


def test_gateway_hostname_on_tcp_listener() -> None:
    raw = mutate(GATEWAY)
    raw["spec"]["listeners"].append({"name": "tcp", "port": 9000, "protocol": "TCP", "hostname": "a.example.com"})
    has_violation(raw, "spec.listeners", "hostname must not be specified for protocols ['TCP', 'UDP']")


def test_gateway_duplicate_port_protocol_hostname() -> None:
    raw = mutate(GATEWAY)
    raw["spec"]["listeners"].append({"name": "http2", "port": 80, "protocol": "HTTP"})
    has_violation(raw, "spec.listeners", "Combination of port, protocol and hostname must be unique for each listener")


def test_gateway_terminate_without_certificates() -> None:
    raw = mutate(GATEWAY)
    raw["spec"]["listeners"][1]["tls"] = {"mode": "Terminate"}
    vs = validate(raw)
    assert any("certificateRefs or options must be specified when mode is Terminate" in v.message for v in vs), vs


def test_gateway_bad_listener_hostname_and_port() -> None:
    raw = mutate(GATEWAY)
    raw["spec"]["listeners"][1]["hostname"] = "*.Example.com"
    raw["spec"]["listeners"][0]["port"] = 0
    vs = {(v.path, v.rule) for v in validate(raw)}
    assert ("spec.listeners[1].hostname", "pattern") in vs
    assert ("spec.listeners[0].port", "minimum") in vs


def test_gateway_addresses() -> None:
    raw = mutate(GATEWAY)
    raw["spec"]["addresses"] = [{"value": "127.10.0.1"}, {"type": "IPAddress", "value": "127.10.0.1"}]
    has_violation(raw, "spec.addresses", "IPAddress values must be unique")
    raw["spec"]["addresses"] = [{"value": "not-an-ip"}]
    has_violation(raw, "spec.addresses[0]", "oneOf", "oneOf")
    raw["spec"]["addresses"] = [{"type": "Hostname", "value": "Bad!"}]
    vs = validate(raw)
    assert any("Hostname value must" in v.message for v in vs), vs


@pytest.mark.parametrize("kind", sorted(VALID))
def test_checked_is_validate_and_apply_defaults_in_one_pass(kind: str) -> None:
    """The admission's single pass gives what the two calls give, valid or not, and
    leaves its input untouched."""
    broken = copy.deepcopy(VALID[kind])
    broken["spec"] = {**broken.get("spec", {}), "unknownField": 1}
    broken["metadata"]["name"] = "Not_A_Name"
    core = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "d"}, "spec": {}}
    for raw in (VALID[kind], broken, core):
        before = copy.deepcopy(raw)
        assert checked(raw) == (validate(raw), apply_defaults(raw))
        assert raw == before


def test_gateway_defaults() -> None:
    out = apply_defaults(GATEWAY)
    assert out["spec"]["listeners"][0]["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    assert out["spec"]["listeners"][1]["tls"]["mode"] == "Terminate"
    assert "allowedRoutes" not in GATEWAY["spec"]["listeners"][0]  # input untouched


# --- other kinds ------------------------------------------------------------------------


def test_gatewayclass_controller_name_pattern() -> None:
    raw = mutate(GATEWAY_CLASS)
    raw["spec"]["controllerName"] = "no-slash"
    has_violation(raw, "spec.controllerName", "should match", "pattern")


def test_gatewayclass_controller_name_is_immutable_on_update() -> None:
    old = mutate(GATEWAY_CLASS)
    new = mutate(GATEWAY_CLASS)
    new["spec"]["controllerName"] = "example.com/other"
    assert validate(new) == []  # create: transition rules skipped
    vs = validate(new, old)
    assert [(v.path, v.message) for v in vs] == [("spec.controllerName", "field is immutable")]
    assert validate(old, old) == []


def test_grpcroute_method_rules() -> None:
    raw = mutate(GRPC_ROUTE)
    raw["spec"]["rules"][0]["matches"] = [{"method": {"type": "Exact"}}]
    has_violation(raw, "spec.rules[0].matches[0].method", "One or both of 'service' or 'method' must be specified")
    raw["spec"]["rules"][0]["matches"] = [{"method": {"service": "bad service"}}]
    has_violation(raw, "spec.rules[0].matches[0].method", "service must only contain valid characters")


def test_tlsroute_hostname_rules() -> None:
    raw = mutate(TLS_ROUTE)
    raw["spec"]["hostnames"] = ["10.0.0.1"]
    has_violation(raw, "spec.hostnames", "Hostnames cannot contain an IP")
    raw["spec"]["hostnames"] = ["a.*.example.com"]
    vs = validate(raw)
    assert vs, "wildcard not in first label must be rejected"


def test_tcp_udp_routes_need_backends() -> None:
    raw = mutate(TCP_ROUTE)
    raw["spec"]["rules"] = []
    has_violation(raw, "spec.rules", "should have at least 1 items", "minItems")
    raw = mutate(UDP_ROUTE)
    raw["spec"]["rules"][0]["backendRefs"][0]["port"] = None
    assert validate(raw)


def test_backend_tls_policy_rules() -> None:
    raw = mutate(BACKEND_TLS_POLICY)
    raw["spec"]["validation"]["wellKnownCACertificates"] = "System"
    has_violation(raw, "spec.validation", "must not contain both CACertificateRefs and WellKnownCACertificates")
    raw["spec"]["validation"] = {"hostname": "api.example.com"}
    has_violation(raw, "spec.validation", "must specify either CACertificateRefs or WellKnownCACertificates")
    raw = mutate(BACKEND_TLS_POLICY)
    raw["spec"]["validation"]["subjectAltNames"] = [{"type": "Hostname"}]
    has_violation(
        raw,
        "spec.validation.subjectAltNames[0]",
        "SubjectAltName element must contain Hostname, if Type is set to Hostname",
    )


def test_reference_grant_schema() -> None:
    raw = mutate(REFERENCE_GRANT)
    raw["spec"]["from"] = []
    has_violation(raw, "spec.from", "should have at least 1 items", "minItems")
    raw = mutate(REFERENCE_GRANT)
    raw["spec"]["to"][0]["kind"] = ""
    has_violation(raw, "spec.to[0].kind", "should be at least 1 chars long", "minLength")


def test_listener_set_rules() -> None:
    raw = mutate(LISTENER_SET)
    raw["spec"]["listeners"][0]["tls"] = {"certificateRefs": [{"name": "c"}]}
    has_violation(raw, "spec.listeners", "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']")


def test_xbackend_rules() -> None:
    raw = mutate(XBACKEND)
    raw["spec"]["externalHostname"]["hostname"] = "svc.ns.svc.cluster.local"
    has_violation(
        raw, "spec.externalHostname.hostname", "hostname must not be an IP address or end with .cluster.local"
    )
    raw = mutate(XBACKEND)
    raw["spec"]["type"] = "Service"
    vs = validate(raw)
    assert vs, "externalHostname with another type must be rejected"


def test_xbackend_dns_label_format_library() -> None:
    raw = mutate(XBACKEND)
    raw["spec"]["port"]["name"] = "Bad_Name"
    vs = validate(raw)
    assert any(v.message == "Name must be a valid DNS label" for v in vs) or any(v.rule == "pattern" for v in vs), vs
    raw["spec"]["port"]["name"] = "https"
    assert validate(raw) == []


def test_xmesh_immutable_controller_name() -> None:
    new = mutate(XMESH)
    new["spec"]["controllerName"] = "portico.dev/other"
    assert validate(new) == []
    has = [v.message for v in validate(new, XMESH)]
    assert "field is immutable" in has


def test_xbackend_traffic_policy_target_refs() -> None:
    raw = mutate(XBACKEND_TRAFFIC_POLICY)
    raw["spec"]["targetRefs"] = [{"group": "", "kind": "Service", "name": "api"}] * 2
    vs = validate(raw)
    assert vs, "duplicate targetRefs must be rejected"


def test_memoized_rule_results_keep_their_own_paths() -> None:
    raw = mutate(HTTP_ROUTE)
    bad = {"path": {"type": "PathPrefix", "value": "nope"}}
    raw["spec"]["rules"][1]["matches"] = [bad, copy.deepcopy(bad)]
    paths = {v.path for v in validate(raw) if v.message.startswith("value must be an absolute path")}
    assert paths == {"spec.rules[1].matches[0].path", "spec.rules[1].matches[1].path"}


def test_many_routes_validate_quickly() -> None:
    import time

    routes = []
    for i in range(1000):
        r = mutate(HTTP_ROUTE)
        r["metadata"]["name"] = f"r{i}"
        r["spec"]["hostnames"] = [f"h{i}.example.com"]
        r["spec"]["rules"][0]["matches"][0]["path"]["value"] = f"/api/{i}"
        routes.append(r)
    start = time.perf_counter()
    assert all(validate(r) == [] for r in routes)
    assert time.perf_counter() - start < 10  # ~0.5 ms a route on an idle machine


def test_unknown_kinds_of_known_groups_are_no_matches() -> None:
    """A typo in a kind of a group the API server knows is rejected as it would be; kinds
    of other groups (apps/v1 Deployment, a CRD Portico has not got) pass untouched."""
    def messages(api_version: str, kind: str) -> list[str]:
        return [v.message for v in validate({"apiVersion": api_version, "kind": kind, "metadata": {"name": "a"}})]

    assert messages("v1", "Servce") == ['no matches for kind "Servce" in version "v1"']
    assert messages("gateway.networking.k8s.io/v1", "HTTPRoutes") == [
        'no matches for kind "HTTPRoutes" in version "gateway.networking.k8s.io/v1"']
    assert messages("discovery.k8s.io/v1", "EndpointSlices")
    assert messages("v1", "Pod") == [] and messages("networking.k8s.io/v1", "Ingress") == []
    assert messages("apps/v1", "Deployment") == [] and messages("example.com/v1", "Widget") == []


def test_a_kind_portico_reads_under_an_api_version_no_server_serves() -> None:
    """Issue 23: `Secret` in `v2`, `V1`, `v1beta1`, `"v1 "` or `core/v1` is an error (the API
    server has no such version), and is not read as a Secret either; a Secret of another
    group (a CRD's, with a dotted group) is another kind and passes."""
    from portico.models import Other, Secret, model_for

    secret = {"kind": "Secret", "metadata": {"name": "s", "namespace": "default"}, "data": {"k": "dg=="}}
    for version in ("v2", "V1", "v1beta1", "v1 ", " v1", "core/v1", "apps/v1", "Core/v1"):
        has_violation({**secret, "apiVersion": version}, "apiVersion", 'no matches for kind "Secret" in version')
        assert model_for(version, "Secret") is Other, version
    assert model_for("v1", "Secret") is Secret and validate({**secret, "apiVersion": "v1"}) == []
    has_violation({"apiVersion": "discovery.k8s.io/v2", "kind": "EndpointSlice", "metadata": {"name": "e"}},
                  "apiVersion", "no matches for kind")
    has_violation({"apiVersion": "v1", "kind": "HTTPRoute", "metadata": {"name": "r"}}, "apiVersion",
                  "no matches for kind")
    assert validate({**secret, "apiVersion": "example.com/v1"}) == []


def test_secret_data_must_be_base64_as_the_api_server_decodes_it() -> None:
    """Issue 23: Secret data that is not base64 was accepted (the API server cannot decode
    it into bytes and refuses the object); the value itself is never echoed."""
    def secret(data: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}, "data": data}

    assert validate(secret({"tls.key": "c2VjcmV0", "ca.crt": "dGVzdA==\n", "e": ""})) == []
    for value, at in (("not base64!", 3), ("c2VjcmV0a2V5", None), ("c2VjcmV0a2V", 8), ("c2Vj cmV0", 4)):
        found = validate(secret({"tls.key": value}))
        if at is None:
            assert found == [], value
            continue
        assert [(v.path, v.message, v.rule) for v in found] == [
            ("data[tls.key]", f"illegal base64 data at input byte {at}", "base64")], value
    has_violation(secret({"a/b": "dg=="}), "data[a/b]", "a valid config key")


def test_invalid_values_are_cut_in_messages() -> None:
    """Issue 23: an invalid value was echoed in full into the logs and /api/errors."""
    from portico.provider import DocumentError

    raw = mutate(HTTP_ROUTE)
    raw["spec"]["rules"][0]["matches"][0]["path"]["type"] = "x" * 5000
    [message] = [v.message for v in validate(raw) if v.path.endswith("path.type")]
    assert len(message) < 400 and "... (5002 characters)" in message
    raw = {"apiVersion": "v1" + "x" * 5000, "kind": "Secret", "metadata": {"name": "s"}}
    assert all(len(v.message) < 400 for v in validate(raw))
    error = DocumentError("f.yaml", 1, "m" * 10_000, "p" * 1000, "o" * 1000, "r" * 1000)
    assert len(str(error)) < 2500 and error.message.endswith("... (10000 characters)")
