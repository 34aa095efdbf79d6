"""`portico explain` agrees with Envoy: for many generated requests against a
translated configuration, the route explain names is the route Envoy took (each
route answers with its own name in a header), and explain's 404s are Envoy's."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from xds_harness import Plane, free_port, request

from portico import ir
from portico.explain import Request, explain
from portico.standalone import offline

pytestmark = pytest.mark.timeout(120)

MANIFESTS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: portico
  listeners:
    - {name: http, port: 80, protocol: HTTP}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [shop.example.com, "*.shop.example.com"]
  rules:
    - matches: [{path: {type: Exact, value: /cart}}]
      backendRefs: [{name: web, port: 80}]
    - matches: [{path: {type: PathPrefix, value: /api}, method: POST}]
      backendRefs: [{name: web, port: 80}]
    - matches:
        - path: {type: PathPrefix, value: /api}
          headers: [{name: x-version, value: "2"}]
        - path: {type: RegularExpression, value: "/items/[0-9]+"}
      backendRefs: [{name: web, port: 80}]
    - matches: [{path: {type: PathPrefix, value: /api}, queryParams: [{name: debug, value: "1"}]}]
      backendRefs: [{name: web, port: 80}]
    - matches: [{path: {type: PathPrefix, value: /api}}]
      backendRefs: [{name: web, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: catchall, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /static}}]
      backendRefs: [{name: web, port: 80}]
"""


def labelled(model: ir.IR, port: int) -> ir.IR:
    """Every route answers 200 itself, naming itself in x-route; the listener on loopback."""
    def route(r: ir.Route) -> ir.Route:
        mod = ir.HeaderModifier(set=(ir.HeaderValue("x-route", r.name),))
        return dataclasses.replace(r, action=ir.RouteAction(direct_status=200, response_headers=mod))

    listeners = []
    for ls in model.listeners:
        chains = []
        for chain in ls.filter_chains:
            assert chain.http is not None
            vhosts = tuple(dataclasses.replace(vh, routes=tuple(route(r) for r in vh.routes))
                           for vh in chain.http.virtual_hosts)
            chains.append(dataclasses.replace(chain, http=dataclasses.replace(chain.http, virtual_hosts=vhosts)))
        listeners.append(dataclasses.replace(ls, name=f"127.0.0.1:{port}/tcp", address="127.0.0.1", port=port,
                                             filter_chains=tuple(chains)))
    return dataclasses.replace(model, listeners=tuple(listeners))


def test_explain_names_the_route_envoy_takes(plane: Plane, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MANIFESTS)
    loop = offline([str(tmp_path)]).loop
    assert loop.last_translation is not None
    (model,) = [out.xds for out in loop.last_translation.gateways.values()]
    port = free_port()
    served = labelled(model, port)
    plane.push(served)
    rng = random.Random(7)
    hosts = ["shop.example.com", "a.shop.example.com", "b.a.shop.example.com", "other.example.com", "SHOP.example.com",
             "shop.example.com:80@other.example.com", "shop.example.com:1,other.example.com"]
    paths = ["/", "/cart", "/cart/", "/cartx", "/api", "/api/", "/api/v1", "/apix", "/items/12", "/items/x",
             "/static/app.js", "/static", "/api?debug=1", "/api/x?debug=2", "/items/7?debug=1"]
    routes_seen: set[str | None] = set()
    for _ in range(120):
        host, path = rng.choice(hosts), rng.choice(paths)
        method = rng.choice(["GET", "POST"])
        headers = {"x-version": rng.choice(["1", "2"])} if rng.random() < 0.5 else {}
        answer = explain(served, Request(port, host, path, method, tuple(headers.items())))
        status, got, _ = request(port, path, host=host, method=method, headers=headers)
        expected = answer.route
        assert (got.get("x-route") if status == 200 else None) == expected, (host, path, method, headers,
                                                                             status, got.get("x-route"), answer.why)
        routes_seen.add(expected)
    # the requests reached every route and also no route at all
    assert None in routes_seen and len(routes_seen) >= 6, routes_seen


def test_envoy_serves_its_prometheus_stats(plane: Plane) -> None:
    """What `/metrics/envoy` passes on (portico.infra.host.HostInfrastructure.envoy_stats)."""
    status, body = plane.envoy.admin_get("/stats/prometheus")
    assert status == 200 and b"envoy_server_live" in body


def test_envoy_serves_its_config_dump(plane: Plane) -> None:
    """What `/api/config_dump?format=envoy` passes on, redacted (portico.dump.redacted)."""
    import json

    status, body = plane.envoy.admin_get("/config_dump")
    assert status == 200 and "configs" in json.loads(body)
