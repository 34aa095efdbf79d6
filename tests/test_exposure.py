"""`portico.exposure`: what a public Gateway exposes without authentication is read from
the translation's IR, so it follows the translator's GEP-713 decisions (creation order,
the more specific target, Conflicted policies, the listeners a route is really on), not
the order objects are listed in. Each case is also checked against the IR a request would
take (`portico explain`'s replay of Envoy's selection): exposed means that route forwards
without asking who the caller is."""

from __future__ import annotations

from typing import Any

from portico import CONTROLLER_NAME
from portico.exposure import Exposure, unauthenticated
from portico.models import parse_object
from portico.translator import Placement, Snapshot, Translation, translate

GW = "gateway.networking.k8s.io"
KEYS = {"apiKeyAuth": {"credentialRefs": [{"name": "keys"}]}}
CIDRS = {"authorization": {"defaultAction": "Deny", "rules": [
    {"action": "Allow", "principal": {"clientCIDRs": ["127.0.0.0/8"]}}]}}


def gateway(*listeners: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GW}/v1", "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "apps", "annotations": {"gateway.portico.dev/public": "true"}},
            "spec": {"gatewayClassName": "portico", "listeners": list(listeners) or [
                {"name": "web", "port": 80, "protocol": "HTTP"}]}}


def route(name: str = "app", section: str | None = None, kind: str = "HTTPRoute") -> dict[str, Any]:
    ref = {"name": "edge", **({"sectionName": section} if section else {})}
    return {"apiVersion": f"{GW}/v1", "kind": kind, "metadata": {"name": name, "namespace": "apps"},
            "spec": {"parentRefs": [ref], "hostnames": [f"{name}.example.com"],
                     "rules": [{"name": "all", "backendRefs": [{"name": "app", "port": 80}]}]}}


def policy(name: str, created: str, spec: dict[str, Any], kind: str = "HTTPRoute", target: str = "app",
           section: str | None = None) -> dict[str, Any]:
    ref = {"group": GW, "kind": kind, "name": target, **({"sectionName": section} if section else {})}
    return {"apiVersion": "gateway.portico.dev/v1alpha1", "kind": "SecurityPolicy",
            "metadata": {"name": name, "namespace": "apps", "creationTimestamp": created},
            "spec": {"targetRefs": [ref], **spec}}


BASE = [
    {"apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
     "spec": {"controllerName": CONTROLLER_NAME}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": "apps"},
     "spec": {"ports": [{"name": "http", "port": 80}]}},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
     "metadata": {"name": "app", "namespace": "apps", "labels": {"kubernetes.io/service-name": "app"}},
     "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"name": "http", "port": 8080}]},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "apps"},
     "stringData": {"ops": "k-ops-0001"}},
]


def translated(*docs: dict[str, Any]) -> tuple[list[dict[str, Any]], Translation]:
    """The documents (their listed order kept) translated, with the statuses it gives."""
    objects = {}
    raw = []
    for i, doc in enumerate([*BASE, *docs]):
        doc = {**doc, "metadata": {"creationTimestamp": f"2026-01-01T00:00:{i:02d}Z", **doc["metadata"]}}
        obj = parse_object(doc)
        objects[obj.key] = obj
        raw.append((obj.key, doc))
    out = translate(Snapshot(objects, placements={("apps", "edge"): Placement("127.10.0.1")}))
    return [{**doc, **({"status": out.statuses[key]} if key in out.statuses else {})} for key, doc in raw], out


def exposed(*docs: dict[str, Any]) -> list[Exposure]:
    objects, out = translated(*docs)
    return unauthenticated(objects, out.gateways, CONTROLLER_NAME)


def ancestor_reasons(objects: list[dict[str, Any]], name: str) -> list[str]:
    found = next(o for o in objects if o["kind"] == "SecurityPolicy" and o["metadata"]["name"] == name)
    return [c["reason"] for a in found["status"]["ancestors"] for c in a["conditions"] if c["type"] == "Accepted"]


def test_the_oldest_policy_decides_not_the_first_listed() -> None:
    """Two policies on one route: the one listed first (and first by name) is newer; the
    older one applies (GEP-713), the other is Conflicted."""
    newer_keys = policy("a-keys", "2026-02-01T00:00:00Z", KEYS)
    older_cidrs = policy("b-cidrs", "2026-01-15T00:00:00Z", CIDRS)
    found = exposed(gateway(), route(), newer_keys, older_cidrs)
    assert [(e.route, e.rules, e.policies) for e in found] == [("HTTPRoute apps/app", ("all",), ("apps/b-cidrs",))]
    assert "SecurityPolicy apps/b-cidrs applies there" in found[0].message
    objects, _ = translated(gateway(), route(), newer_keys, older_cidrs)
    assert ancestor_reasons(objects, "a-keys") == ["Conflicted"]
    # the older one authenticating: nothing exposed, whatever is listed first
    assert exposed(gateway(), route(), policy("a-cidrs", "2026-02-01T00:00:00Z", CIDRS),
                   policy("b-keys", "2026-01-15T00:00:00Z", KEYS)) == []
    # the same creation time: namespace/name decides
    same = "2026-01-15T00:00:00Z"
    assert [e.policies for e in exposed(gateway(), route(), policy("z-keys", same, KEYS),
                                        policy("a-cidrs", same, CIDRS))] == [("apps/a-cidrs",)]


def test_a_listener_that_does_not_allow_the_route_kind_exposes_nothing() -> None:
    """Attached to the whole Gateway, the route is served only where its kind is allowed:
    a listener for GRPCRoutes without any policy does not expose it."""
    grpc_only = {"name": "grpc", "port": 8080, "protocol": "HTTP", "allowedRoutes": {"kinds": [{"kind": "GRPCRoute"}]}}
    web = {"name": "web", "port": 80, "protocol": "HTTP"}
    keys_on_web = policy("web-keys", "2026-01-15T00:00:00Z", KEYS, kind="Gateway", target="edge", section="web")
    assert exposed(gateway(web, grpc_only), route(), keys_on_web) == []
    # a GRPCRoute there is exposed, on that listener only
    found = exposed(gateway(web, grpc_only), route("rpc", kind="GRPCRoute"), keys_on_web)
    assert [(e.route, e.listeners) for e in found] == [("GRPCRoute apps/rpc", ("listener grpc",))]


def test_a_listeners_policy_over_the_gateways() -> None:
    web = {"name": "web", "port": 80, "protocol": "HTTP"}
    admin = {"name": "admin", "port": 8080, "protocol": "HTTP"}
    gateway_keys = policy("all", "2026-01-15T00:00:00Z", KEYS, kind="Gateway", target="edge")
    admin_cidrs = policy("admin", "2026-01-15T00:00:00Z", CIDRS, kind="Gateway", target="edge", section="admin")
    # on every listener: exposed on admin (its own policy authenticates no one), not on web
    found = exposed(gateway(web, admin), route(), gateway_keys, admin_cidrs)
    assert [(e.listeners, e.policies) for e in found] == [(("listener admin",), ("apps/admin",))]
    # attached to web only: the Gateway's API keys apply there
    assert exposed(gateway(web, admin), route(section="web"), gateway_keys, admin_cidrs) == []
    # the other way round: a listener's API keys under a Gateway-wide address rule
    web_keys = policy("web", "2026-01-15T00:00:00Z", KEYS, kind="Gateway", target="edge", section="web")
    gateway_cidrs = policy("all", "2026-01-15T00:00:00Z", CIDRS, kind="Gateway", target="edge")
    assert exposed(gateway(web, admin), route(section="web"), web_keys, gateway_cidrs) == []
    assert [e.listeners for e in exposed(gateway(web, admin), route(section="admin"), web_keys,
                                         gateway_cidrs)] == [("listener admin",)]


def test_a_conflicted_listener_policy_applies_nowhere() -> None:
    """Two policies on one listener: the older applies there; the route's own policy wins over both."""
    older = policy("older", "2026-01-10T00:00:00Z", CIDRS, kind="Gateway", target="edge", section="web")
    newer = policy("newer", "2026-01-20T00:00:00Z", KEYS, kind="Gateway", target="edge", section="web")
    found = exposed(gateway(), route(), newer, older)
    assert [e.policies for e in found] == [("apps/older",)]
    assert exposed(gateway(), route(), newer, older, policy("own", "2026-01-30T00:00:00Z", KEYS)) == []


def test_routes_that_forward_nothing_expose_nothing() -> None:
    """A redirect, or a policy failing closed (its keys cannot be had: 500), forwards nothing."""
    redirect = route("moved")
    redirect["spec"]["rules"] = [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}}]}]
    missing_keys = policy("broken", "2026-01-15T00:00:00Z", {"apiKeyAuth": {"credentialRefs": [{"name": "nope"}]}},
                          target="app")
    assert exposed(gateway(), redirect, route(), missing_keys) == []


def test_no_public_gateway_no_exposure_and_the_annotation_opts_out() -> None:
    private = gateway()
    private["metadata"] = {"name": "edge", "namespace": "apps"}
    assert exposed(private, route()) == []
    website = route()
    website["metadata"]["annotations"] = {"gateway.portico.dev/allow-unauthenticated": "true"}
    assert exposed(gateway(), website) == []
    assert [e.rules for e in exposed(gateway(), route())] == [("all",)]


def test_clientcertificate_rules_where_no_certificate_is_verified() -> None:
    """A clientCertificate rule on an HTTP listener never matches: the policy stays Accepted,
    its ancestor says RulesNeverMatch (and analyze reports it as any unhealthy condition)."""
    from portico.analyze import analyze

    certs = {"authorization": {"defaultAction": "Deny", "rules": [
        {"name": "orders", "action": "Allow", "principal": {"clientCertificate": {}}},
        {"name": "office", "action": "Allow", "principal": {"clientCIDRs": ["10.0.0.0/8"]}}]}}
    on_gateway = policy("mtls", "2026-01-15T00:00:00Z", certs, kind="Gateway", target="edge")
    objects, _ = translated(gateway(), on_gateway)  # no route: the listener's own policy
    found = next(o for o in objects if o["metadata"]["name"] == "mtls")
    conds = {c["type"]: c for c in found["status"]["ancestors"][0]["conditions"]}
    assert conds["Accepted"]["status"] == "True"
    assert (conds["RulesNeverMatch"]["status"], conds["RulesNeverMatch"]["reason"]) == (
        "True", "ClientCertificateNotValidated")
    assert "rule orders (principal.clientCertificate) never matches on listener web" in \
        conds["RulesNeverMatch"]["message"]
    findings = [f for f in analyze(objects, CONTROLLER_NAME, []) if f.code == "ClientCertificateNotValidated"]
    assert [f.object for f in findings] == ["SecurityPolicy apps/mtls"]
    # a route's policy on an HTTP listener: the same
    objects, _ = translated(gateway(), route(), policy("own", "2026-01-15T00:00:00Z", certs))
    assert "RulesNeverMatch" in {c["type"] for o in objects if o["metadata"]["name"] == "own"
                                 for a in o["status"]["ancestors"] for c in a["conditions"]}
    # without clientCertificate rules: nothing said
    objects, _ = translated(gateway(), route(), policy("own", "2026-01-15T00:00:00Z", CIDRS))
    assert "RulesNeverMatch" not in {c["type"] for o in objects if o["metadata"]["name"] == "own"
                                     for a in o["status"]["ancestors"] for c in a["conditions"]}


def mtls_gateway() -> list[dict[str, Any]]:
    """The public Gateway with an HTTP listener "web" and an HTTPS one "secure" whose
    client certificates are verified (required)."""
    import base64

    import trustme

    server, clients = trustme.CA(), trustme.CA()
    cert = server.issue_cert("secure.example.com")
    gw = gateway({"name": "web", "port": 80, "protocol": "HTTP"},
                 {"name": "secure", "port": 443, "protocol": "HTTPS",
                  "tls": {"certificateRefs": [{"name": "server-cert"}]}})
    gw["spec"]["tls"] = {"frontend": {"default": {"validation": {
        "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "client-ca"}]}}}}
    return [gw,
            {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": {"name": "server-cert", "namespace": "apps"},
             "data": {"tls.crt": base64.b64encode(b"".join(b.bytes() for b in cert.cert_chain_pems)).decode(),
                      "tls.key": base64.b64encode(cert.private_key_pem.bytes()).decode()}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "client-ca", "namespace": "apps"},
             "data": {"ca.crt": clients.cert_pem.bytes().decode()}}]


def test_an_mtls_listener_authenticates_and_verifies() -> None:
    """Required client certificates authenticate every caller of the listener: the route is
    exposed on the HTTP listener only; a clientCertificate rule never matches there only."""
    certs = {"authorization": {"defaultAction": "Deny", "rules": [
        {"name": "services", "action": "Allow", "principal": {"clientCertificate": {}}}]}}
    objects, out = translated(*mtls_gateway(), route(),
                              policy("mtls", "2026-01-15T00:00:00Z", certs, kind="Gateway", target="edge"))
    found = unauthenticated(objects, out.gateways, CONTROLLER_NAME)
    assert [(e.route, e.listeners) for e in found] == [("HTTPRoute apps/app", ("listener web",))]
    status = next(o for o in objects if o["metadata"]["name"] == "mtls")["status"]
    never = [c["message"] for a in status["ancestors"] for c in a["conditions"] if c["type"] == "RulesNeverMatch"]
    assert len(never) == 1 and "on listener web:" in never[0] and "secure" not in never[0]


def test_http_listeners_sharing_a_port_are_told_apart_by_hostname() -> None:
    """Two HTTP listeners on port 80 share one route configuration: the host decides whose
    policy applies (the most specific listener covering it), and which listener is named."""
    api = {"name": "api", "port": 80, "protocol": "HTTP", "hostname": "api.example.com"}
    www = {"name": "www", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"}
    both = route()
    both["spec"]["hostnames"] = ["api.example.com", "www.example.com"]
    keys_on_api = policy("api-keys", "2026-01-15T00:00:00Z", KEYS, kind="Gateway", target="edge", section="api")
    found = exposed(gateway(api, www), both, keys_on_api)
    assert [(e.listeners, e.policies) for e in found] == [(("listener www",), ())]
    only_api = route()
    only_api["spec"]["hostnames"] = ["api.example.com"]
    assert exposed(gateway(api, www), only_api, keys_on_api) == []
