"""HTTPRouteFilter requireClientCertificate through the translator and the xDS builder: the
rule's Envoy route is preceded by one with the same match and a TLS context match answering
400 or a 302 to errorRedirect; an errorRedirect that is not an absolute http(s) URL drops
the rule (Accepted=False)."""

from __future__ import annotations

from typing import Any

from portico import ir
from portico.models import parse_object
from portico.translator import Placement, Snapshot, translate
from portico.xds.routes import build_virtual_host

GW = ("default", "gw")


def translated(check: dict[str, Any]) -> tuple[list[ir.VirtualHost], list[dict[str, Any]]]:
    docs = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"ports": [{"port": 80}]}},
        {"apiVersion": "gateway.portico.dev/v1alpha1", "kind": "HTTPRouteFilter",
         "metadata": {"name": "check", "namespace": "default"}, "spec": {"requireClientCertificate": check}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "r", "namespace": "default"},
         "spec": {"parentRefs": [{"name": "gw"}], "rules": [{
             "matches": [{"path": {"type": "PathPrefix", "value": "/account"}}],
             "filters": [{"type": "ExtensionRef", "extensionRef": {
                 "group": "gateway.portico.dev", "kind": "HTTPRouteFilter", "name": "check"}}],
             "backendRefs": [{"name": "web", "port": 80}]}]}},
    ]
    objects = {o.key: o for o in (parse_object(d) for d in docs)}
    out = translate(Snapshot(objects, {GW: Placement("127.10.0.1")}))
    hosts = [vh for g in out.gateways.values() for li in g.xds.listeners for c in li.filter_chains if c.http
             for vh in c.http.virtual_hosts]
    conds = [c for k, v in out.statuses.items() if k.kind == "HTTPRoute" for p in v["parents"] for c in p["conditions"]]
    return hosts, conds


def test_a_route_needing_a_valid_certificate_is_preceded_by_its_check() -> None:
    hosts, _ = translated({"errorRedirect": "https://errors.example.com/cert?x=100%"})
    routes = [r for r in build_virtual_host(hosts[0]).routes if r.match.path_separated_prefix == "/account"]
    check, own = routes
    assert check.match.tls_context.validated.value is False and not check.match.tls_context.HasField("presented")
    assert (check.direct_response.status, check.response_headers_to_add[0].header.value) == \
        (302, "https://errors.example.com/cert?x=100%%")  # a literal % in Envoy's header format
    assert not own.match.HasField("tls_context") and own.route.cluster


def test_an_optional_certificate_is_checked_only_when_presented() -> None:
    hosts, _ = translated({"optional": True})
    check = next(r for r in build_virtual_host(hosts[0]).routes if r.match.HasField("tls_context"))
    assert (check.match.tls_context.presented.value, check.match.tls_context.validated.value) == (True, False)
    assert check.direct_response.status == 400


def test_an_error_redirect_that_is_not_a_url_drops_the_rule() -> None:
    _, conds = translated({"errorRedirect": "/relative"})
    assert any(c["type"] == "Accepted" and c["status"] == "False" and "errorRedirect" in c["message"] for c in conds)
