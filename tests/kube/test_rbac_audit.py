"""The shipped RBAC is what the controller uses: a controller doing everything it does
in a cluster (watch every kind, write statuses, lead through a Lease, create its CA,
apply a Gateway's data plane with a PorticoProxy's HPA and PDB, serve an Ingress and
record an Event, keep the GatewayClass finalizer, re-read an object after a conflict)
runs against the strict double as its ServiceAccount; the audit log shows every rule it
used, no request denied, and which shipped rules it did not use."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kube.support import CLASS, CONTROLLER, SERVICE, data_plane_options, obj, route, running, until
from kube.test_gatewayclass import FINALIZER, crd, finalizers
from portico.controller import serve_controller
from portico.kinds import STATUS_OURS
from portico.provider.kubernetes import KINDS

pytestmark = pytest.mark.timeout(120)
G, NET = "gateway.networking.k8s.io", "networking.k8s.io"
GENERATED = (("", "serviceaccounts", "portico-gw"), ("", "configmaps", "portico-gw"),
             ("", "secrets", "portico-gw-xds"), ("apps", "deployments", "portico-gw"), ("", "services", "portico-gw"),
             ("autoscaling", "horizontalpodautoscalers", "portico-gw"),
             ("policy", "poddisruptionbudgets", "portico-gw"))
STATUS_KINDS = {(k.group, k.plural) for k in KINDS if (k.group, k.kind) in STATUS_OURS}


def test_the_controller_uses_exactly_the_shipped_rbac(tmp_path: Path) -> None:
    async def main() -> set[tuple[str, str, str]]:
        async with running() as (api, client):
            api.install("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                        namespaced=False)
            proxy = obj("gateway.portico.dev/v1alpha1", "PorticoProxy", "scaled", "apps", spec={
                "hpa": {"maxReplicas": 4}, "podDisruptionBudget": {"minAvailable": 1}})
            gateway = obj(f"{G}/v1", "Gateway", "gw", "apps", spec={
                "gatewayClassName": "portico", "infrastructure": {"parametersRef": {
                    "group": "gateway.portico.dev", "kind": "PorticoProxy", "name": "scaled"}},
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]})
            ingress = obj(f"{NET}/v1", "Ingress", "shop", "apps", spec={"ingressClassName": "portico", "rules": [
                {"host": "shop.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                    "service": {"name": "web", "port": {"number": 80}}}}]}}]})
            ingress["metadata"]["annotations"] = {"nginx.ingress.kubernetes.io/server-snippet": "deny all;"}  # type: ignore[index]
            for o in (CLASS, proxy, gateway, SERVICE, route("web"), crd("gateways", "v1.4.0"), ingress,
                      obj(f"{NET}/v1", "IngressClass", "portico", None,
                          spec={"controller": "portico.dev/ingress-controller"})):
                api.put(o)
            api.fault(verb="patch", resource="httproutes/status", code=409)  # a conflict: the route is read again
            opts = data_plane_options(tmp_path, leader_elect=True, lease_duration=1.0, renew_deadline=0.8,
                                      retry_period=0.1)
            stop = asyncio.Event()
            controller = asyncio.create_task(serve_controller(opts, stop, client))
            try:
                await until(lambda: api.get("policy", "poddisruptionbudgets", "apps", "portico-gw")
                            and api.get("autoscaling", "horizontalpodautoscalers", "apps", "portico-gw")
                            and api.get("apps", "deployments", "apps", "portico-ingress-portico")
                            and FINALIZER in finalizers(api)
                            and any(e.resource == "events" and e.code == 201 for e in api.audit)
                            and any(e.resource == "httproutes" and e.verb == "get" for e in api.audit)
                            and (api.get(NET, "ingresses", "apps", "shop") or {}).get("status"),
                            timeout=30, what="the controller doing all it does")
                # the Gateway moves to another controller's class: its data plane is pruned
                api.put(obj(f"{G}/v1", "GatewayClass", "other", None,
                            spec={"controllerName": "example.com/other"}))
                api.put({**gateway, "spec": {**gateway["spec"], "gatewayClassName": "other"}})  # type: ignore[dict-item]
                await until(lambda: not any(api.get(g, p, "apps", n) for g, p, n in GENERATED), timeout=30,
                            what="the data plane pruned")
            finally:
                stop.set()
                await controller
            mine = [e for e in api.audit if e.user == CONTROLLER]
            denied = [(e.verb, e.group, e.resource_path, e.namespace) for e in mine if e.code == 403]
            assert denied == [], denied
            used = {(e.group, e.resource_path, verb) for e in mine for verb in (e.verb, *e.also)}
            used |= {checked for e in mine for checked in e.elsewhere}
            assert api.authorizer is not None
            shipped = {(g.group, g.resource, g.verb) for g in api.authorizer.grants(CONTROLLER)}
            assert used <= shipped
            unused = shipped - used
            print(f"\nRBAC audit: {len(shipped)} (group, resource, verb) grants shipped, {len(used)} used, "
                  f"{len(unused)} unused: {sorted(unused)}")
            return unused

    unused = asyncio.run(main())
    # what this run did not use is only the status path of kinds it had no object of (the
    # same code as the HTTPRoute, Gateway, GatewayClass and Ingress statuses it wrote)
    for group, resource, verb in unused:
        plural = resource.removesuffix("/status")
        assert (group, plural) in STATUS_KINDS and (verb, resource) in (("patch", f"{plural}/status"),
                                                                        ("get", plural)), (group, resource, verb)
