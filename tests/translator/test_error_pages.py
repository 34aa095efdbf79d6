"""HTTPRouteFilter errorPages (ingress-nginx's custom-http-errors) through the translator:
the rule's IR error pages and the error page Service's cluster sent to Envoy; a filter the
CRD would refuse drops the rule (Accepted=False); an error page Service that does not exist
is reported (ResolvedRefs=False) and the rule keeps its own answers."""

from __future__ import annotations

from typing import Any

from portico import ir
from portico.models import parse_object
from portico.translator import Placement, Snapshot, translate

GW = ("default", "gw")
PORTICO = "gateway.portico.dev/v1alpha1"


def service(name: str) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
             "spec": {"ports": [{"port": 80}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 8080}]}]


def translated(pages: dict[str, Any]) -> tuple[list[ir.Route], set[str], list[dict[str, Any]]]:
    docs = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw",
         "namespace": "default"}, "spec": {"gatewayClassName": "portico",
                                           "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        *service("web"), *service("errors"),
        {"apiVersion": PORTICO, "kind": "HTTPRouteFilter", "metadata": {"name": "pages", "namespace": "default"},
         "spec": {"errorPages": pages}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "r", "namespace": "default"},
         "spec": {"parentRefs": [{"name": "gw"}], "rules": [{
             "filters": [{"type": "ExtensionRef", "extensionRef": {
                 "group": "gateway.portico.dev", "kind": "HTTPRouteFilter", "name": "pages"}}],
             "backendRefs": [{"name": "web", "port": 80}]}]}},
    ]
    objects = {o.key: o for o in (parse_object(d) for d in docs)}
    out = translate(Snapshot(objects, {GW: Placement("127.10.0.1")}))
    routes = [r for g in out.gateways.values() for li in g.xds.listeners for c in li.filter_chains if c.http
              for vh in c.http.virtual_hosts for r in vh.routes]
    clusters = {c.name for g in out.gateways.values() for c in g.xds.clusters}
    conds = [c for k, v in out.statuses.items() if k.kind == "HTTPRoute" for p in v["parents"] for c in p["conditions"]]
    return routes, clusters, conds


def test_error_pages_go_to_their_service() -> None:
    routes, clusters, _ = translated({"statusCodes": [503, 404, 503], "backendRef": {"name": "errors", "port": 80},
                                      "requestHeaders": [{"name": "X-Namespace", "value": "default"}]})
    assert [r.action.error_pages for r in routes] == [ir.ErrorPages(
        (404, 503), "default/pages", cluster="default/errors/80", headers=(("X-Namespace", "default"),))]
    assert "default/errors/80" in clusters


def test_error_pages_without_a_service_answer_themselves() -> None:
    routes, clusters, _ = translated({"statusCodes": [503], "response": {"statusCode": 404, "body": "gone"}})
    assert [r.action.error_pages for r in routes] == [ir.ErrorPages((503,), "default/pages", status=404, body="gone")]
    assert "default/errors/80" not in clusters


def test_error_pages_of_a_missing_service_are_reported_and_the_rule_keeps_its_answers() -> None:
    routes, _, conds = translated({"statusCodes": [503], "backendRef": {"name": "missing", "port": 80}})
    assert [(r.action.error_pages, [b.cluster for b in r.action.backends]) for r in routes] == \
        [(None, ["default/web/80"])]
    assert any(c["type"] == "ResolvedRefs" and c["status"] == "False" for c in conds)


def test_error_pages_the_crd_refuses_drop_the_rule() -> None:
    for pages in ({"statusCodes": [302], "response": {"statusCode": 404}},
                  {"statusCodes": [503]},
                  {"statusCodes": [503], "response": {"statusCode": 404}, "backendRef": {"name": "errors", "port": 80}},
                  {"statusCodes": [503], "backendRef": {"name": "errors", "port": 80},
                   "requestHeaders": [{"name": "Bad Name", "value": "x"}]}):
        routes, _, conds = translated(pages)
        assert routes == [] or all(r.action.error_pages is None for r in routes), pages
        assert any(c["type"] == "Accepted" and c["status"] == "False" and "errorPages" in c["message"]
                   for c in conds), pages
