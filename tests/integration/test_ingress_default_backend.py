"""ingress-nginx's default-backend annotation alone, served by real Envoy from the Ingress
objects, then converted (`portico convert`) and served again: the same requests, the
same answers.

As ingress-nginx: while the Service of an annotated Ingress's rule has no active
endpoints, its requests go, as they are, to the default backend Service (its first
port); once the Service has endpoints, to them. An Ingress without the annotation
answers 503 for a Service without endpoints. Portico's form of it is a
BackendTrafficPolicy `fallback`: the fallback's endpoints are priority 1 of the rule's
cluster; a partly healthy backend keeps all its requests (never a share spilled to the
fallback, as Envoy's default overprovisioning would once under 72% of it is healthy).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from support import free_port, start, stop, wait_for, write_atomically
from test_ingress_annotations import NGINX, Client, backend, ingress, serve
from test_ingress_error_pages import raw

from portico.ingress import convert

pytestmark = pytest.mark.timeout(240)


def manifests(app: int | None, fallback: int) -> list[dict[str, Any]]:
    """`app` without endpoints when None; the fallback Service's first port is the one
    served (its second names a port nothing listens on)."""
    apps = backend("app", app or 1)
    if app is None:
        apps[1]["endpoints"] = []
    fallbacks = backend("fallback", fallback)
    fallbacks[0]["spec"]["ports"].append({"name": "unused", "port": 81})
    fallbacks[1]["ports"].append({"name": "unused", "port": free_port(), "protocol": "TCP"})
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "portico"},
         "spec": {"controller": "portico.dev/ingress-controller"}},
        *apps, *fallbacks,
        ingress("shop", {NGINX + "default-backend": "fallback"}, [("/", "Prefix", "app")],
                host="shop.example.com"),
        ingress("plain", {}, [("/", "Prefix", "app")], host="plain.example.com"),
    ]


def answers(c: Client) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for host, path in (("shop.example.com", "/a/b?x=1"), ("plain.example.com", "/")):
        status, reply = raw(c, host, path, headers={"X-Client": "yes"})
        got = json.loads(reply) if status == 200 else {}
        out[host] = (status, got.get("pod"), got.get("path"), (got.get("headers") or {}).get("X-Client"))
    return out


def pod(c: Client, host: str) -> str | None:
    status, reply = raw(c, host, "/")
    return str(json.loads(reply).get("pod")) if status == 200 else None


def test_default_backend_served_and_converted_answer_alike(tmp_path: Path) -> None:
    app_port, fallback_port, admin, offset = free_port(), free_port(), free_port(), free_port() - 80
    echoes = [start(["echo", "--port", str(p), "--name", n, "--namespace", "shop"], tmp_path / f"{n}.log")
              for p, n in ((app_port, "app-1"), (fallback_port, "fallback-1"))]
    empty, full = manifests(None, fallback_port), manifests(app_port, fallback_port)
    try:
        proc, ip = serve(tmp_path, "served", empty, admin, offset, "Ingress")
        client = Client(ip, 80 + offset, 443 + offset, trustme.CA())
        wait_for("the fallback served", lambda: pod(client, "shop.example.com") == "fallback-1", 30)
        served_empty = answers(client)
        assert served_empty == {
            "shop.example.com": (200, "fallback-1", "/a/b?x=1", ["yes"]),  # the request as it is
            "plain.example.com": (503, None, None, None),  # no annotation: no fallback
        }
        write_atomically(tmp_path / "served" / "all.yaml", full)  # app gets an endpoint
        wait_for("the app served", lambda: pod(client, "shop.example.com") == "app-1", 30)
        served_full = answers(client)
        assert served_full == {
            "shop.example.com": (200, "app-1", "/a/b?x=1", ["yes"]),
            "plain.example.com": (200, "app-1", "/", ["yes"]),
        }
        stop(proc)

        converted = convert(empty)
        (tmp_path / "converted.yaml").write_text(yaml.safe_dump_all(converted.objects))
        policy = next(o for o in converted.objects if o["kind"] == "BackendTrafficPolicy")
        assert policy["spec"]["fallback"] == {"name": "fallback"}
        assert [t["name"] for t in policy["spec"]["targetRefs"]] == ["shop-shop-example-com"]
        report = next(r for r in converted.reports if r.ingress == "shop/shop")
        assert [a[:2] for a in report.annotations] == [(NGINX + "default-backend", "converted with a difference")]

        def objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return converted.objects + [d for d in docs if d["kind"] in ("Service", "EndpointSlice")]

        proc, ip = serve(tmp_path, "converted", objects(empty), admin, offset, "Gateway")
        client = Client(ip, 80 + offset, 443 + offset, trustme.CA())
        wait_for("the fallback served", lambda: pod(client, "shop.example.com") == "fallback-1", 30)
        assert answers(client) == served_empty
        write_atomically(tmp_path / "converted" / "all.yaml", objects(full))
        wait_for("the app served", lambda: pod(client, "shop.example.com") == "app-1", 30)
        assert answers(client) == served_full
        stop(proc)
    finally:
        for echo in echoes:
            stop(echo)


def route_manifests(live: int, dead: int, fallback: int) -> list[dict[str, Any]]:
    """An HTTPRoute to a Service of two endpoints, one of them dead, under a policy with an
    active health check and a fallback."""
    app = backend("app", live)
    app[1]["endpoints"] = [{"addresses": ["127.0.0.1"]}]
    dead_slice = copy.deepcopy(app[1])
    dead_slice["metadata"]["name"] = "app-dead"
    dead_slice["endpoints"] = [{"addresses": ["127.0.0.2"]}]
    dead_slice["ports"] = [{"name": "http", "port": dead, "protocol": "TCP"}]
    return [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "gw", "namespace": "shop"},
         "spec": {"gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        *app, dead_slice, *backend("fallback", fallback),
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "shop", "namespace": "shop"},
         "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["shop.example.com"],
                  "rules": [{"backendRefs": [{"name": "app", "port": 80}]}]}},
        {"apiVersion": "gateway.portico.dev/v1alpha1", "kind": "BackendTrafficPolicy",
         "metadata": {"name": "shop", "namespace": "shop"},
         "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "shop"}],
                  "fallback": {"name": "fallback", "port": 80},
                  "healthCheck": {"active": {"type": "TCP", "interval": "200ms", "timeout": "100ms",
                                             "unhealthyThreshold": 1, "healthyThreshold": 1}}}},
    ]


def test_fallback_takes_nothing_from_a_partly_healthy_backend(tmp_path: Path) -> None:
    """Half of the Service's endpoints fail their health check: Envoy's default
    overprovisioning (140) would send 30% of the requests to priority 1; the fallback
    gets none of them while one endpoint is healthy, and all once none is."""
    live, dead, fallback_port = free_port(), free_port(), free_port()
    admin, offset = free_port(), free_port() - 80
    echoes = [start(["echo", "--port", str(p), "--name", n, "--namespace", "shop"], tmp_path / f"{n}.log")
              for p, n in ((live, "app-1"), (fallback_port, "fallback-1"))]
    docs = route_manifests(live, dead, fallback_port)
    try:
        proc, ip = serve(tmp_path, "route", docs, admin, offset, "Gateway")
        client = Client(ip, 80 + offset, 443 + offset, trustme.CA())
        # both endpoints checked (one healthy, one failing): every answer the live one's
        wait_for("the dead endpoint checked", lambda: all(pod(client, "shop.example.com") == "app-1"
                                                         for _ in range(10)), 30)
        assert {pod(client, "shop.example.com") for _ in range(60)} == {"app-1"}
        stop(echoes[0])  # no healthy endpoint left: everything to the fallback
        wait_for("the fallback served", lambda: pod(client, "shop.example.com") == "fallback-1", 30)
        assert {pod(client, "shop.example.com") for _ in range(20)} == {"fallback-1"}
        stop(proc)
    finally:
        for echo in echoes:
            stop(echo)
