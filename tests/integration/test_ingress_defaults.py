"""Default backends and classes as ingress-nginx (and Kubernetes' DefaultIngressClass
admission) treat them, served by real Envoy, then converted and served again alike:

- spec.defaultBackend of an Ingress with rules serves the paths its rules do not
  match on its hosts; another host's unmatched paths stay 404;
- the oldest Ingress with a defaultBackend and no rules is the catch-all server;
- an Ingress without a class is ours when our IngressClass is the default one;
- the kubernetes.io/ingress.class annotation names the class; ingressClassName
  naming another controller's class is not ours (its host falls to the catch-all).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from support import free_port, start, stop, wait_for
from test_ingress_annotations import Client, backend, ingress, serve

from portico.ingress import convert, ours

pytestmark = pytest.mark.timeout(180)


def manifests(web: int, fallback: int, catchall: int) -> list[dict[str, Any]]:
    shop = ingress("shop", {}, [("/x", "Prefix", "web")], host="a.example.com")
    shop["spec"]["defaultBackend"] = {"service": {"name": "fallback", "port": {"number": 80}}}
    catch = ingress("catch", {}, [])
    catch["spec"] = {"ingressClassName": "portico",
                     "defaultBackend": {"service": {"name": "catchall", "port": {"number": 80}}}}
    later = ingress("later-catch", {}, [])
    later["spec"] = {"ingressClassName": "portico",
                     "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}
    later["metadata"]["creationTimestamp"] = "2030-01-01T00:00:00Z"
    catch["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    classless = ingress("classless", {}, [("/", "Prefix", "web")], host="c.example.com")
    del classless["spec"]["ingressClassName"]
    annotated = ingress("annotated", {"kubernetes.io/ingress.class": "portico"}, [("/", "Prefix", "web")],
                        host="d.example.com")
    del annotated["spec"]["ingressClassName"]
    foreign = ingress("foreign", {}, [("/", "Prefix", "web")], host="e.example.com")
    foreign["spec"]["ingressClassName"] = "nginx"
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
         "metadata": {"name": "portico", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
         "spec": {"controller": "portico.dev/ingress-controller"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
         "spec": {"controller": "k8s.io/ingress-nginx"}},
        *backend("web", web), *backend("fallback", fallback), *backend("catchall", catchall),
        shop, catch, later, classless, annotated, foreign, ingress("other", {}, [("/y", "Prefix", "web")],
                                                                    host="b.example.com"),
    ]


def answers(c: Client) -> dict[str, Any]:
    def pod(host: str, path: str) -> Any:
        status, reply, _ = c.http(host, path)
        return reply.get("pod") if status == 200 else status

    return {"rule": pod("a.example.com", "/x/1"), "default-backend": pod("a.example.com", "/elsewhere"),
            "catch-all": pod("unknown.example.com", "/"), "classless": pod("c.example.com", "/"),
            "annotated": pod("d.example.com", "/"), "foreign": pod("e.example.com", "/")}


def test_default_backends_and_classes_served_and_converted(tmp_path: Path) -> None:
    ports = {n: free_port() for n in ("web", "fallback", "catchall")}
    admin, offset = free_port(), free_port() - 80
    echoes = [start(["echo", "--port", str(p), "--name", f"{n}-1", "--namespace", "shop"], tmp_path / f"{n}.log")
              for n, p in ports.items()]
    docs = manifests(ports["web"], ports["fallback"], ports["catchall"])
    try:
        proc, ip = serve(tmp_path, "served", docs, admin, offset, "Ingress")
        client = Client(ip, 80 + offset, 443 + offset, trustme.CA())
        wait_for("the Ingresses served", lambda: answers(client)["annotated"] == "web-1", 30)
        served = answers(client)
        stop(proc)
        assert served == {"rule": "web-1", "default-backend": "fallback-1", "catch-all": "catchall-1",
                          "classless": "web-1", "annotated": "web-1", "foreign": "catchall-1"}
        classes = [d for d in docs if d["kind"] == "IngressClass"]
        mine = [d for d in docs if d["kind"] != "Ingress" or ours(d, classes)]
        converted = convert(mine)
        (tmp_path / "converted.yaml").write_text(yaml.safe_dump_all(converted.objects))
        others = [d for d in docs if d["kind"] in ("Service", "EndpointSlice")]
        proc, ip = serve(tmp_path, "converted", converted.objects + others, admin, offset, "Gateway")
        client = Client(ip, 80 + offset, 443 + offset, trustme.CA())
        wait_for("the routes served", lambda: answers(client)["annotated"] == "web-1", 30)
        assert answers(client) == served
        stop(proc)
    finally:
        for echo in echoes:
            stop(echo)
