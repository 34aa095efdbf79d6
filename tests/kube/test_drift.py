"""Drift repair and pruning of the per-Gateway data plane, against the strict double:
what Portico generated and someone deleted or edited is applied again; what it
generated and nothing wants any more (an HPA removed from the PorticoProxy, a listener
removed, the Gateway moved to another controller's class) is deleted; what it did not
generate (no labels of ours, another controller's labels, no owner) is never touched."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest

from kube.support import CLASS, SERVICE, data_plane_options, obj, route, running, until
from portico.controller import serve_controller
from portico.infra.kubernetes import CONTROLLER_LABEL, MANAGED_BY, controller_label

pytestmark = pytest.mark.timeout(120)
G = "gateway.networking.k8s.io"
NAME = "portico-gw"
GENERATED = (("", "serviceaccounts", NAME), ("", "configmaps", NAME), ("", "secrets", f"{NAME}-xds"),
             ("apps", "deployments", NAME), ("", "services", NAME))


def deployment(name: str, labels: dict[str, str], owner: dict[str, Any] | None = None) -> dict[str, Any]:
    d = obj("apps/v1", "Deployment", name, "apps", spec={
        "replicas": 1, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "c", "image": "example.com/app:1"}]}}})
    d["metadata"]["labels"] = labels  # type: ignore[index]
    if owner is not None:
        d["metadata"]["ownerReferences"] = [owner]  # type: ignore[index]
    return d


def test_generated_objects_are_repaired_and_pruned_and_nothing_else_is_touched(tmp_path: Path) -> None:
    async def main() -> None:
        async with running() as (api, client):
            proxy = obj("gateway.portico.dev/v1alpha1", "PorticoProxy", "scaled", "apps", spec={
                "hpa": {"maxReplicas": 4}, "podDisruptionBudget": {"minAvailable": 1}})
            gateway = obj(f"{G}/v1", "Gateway", "gw", "apps", spec={
                "gatewayClassName": "portico", "infrastructure": {"parametersRef": {
                    "group": "gateway.portico.dev", "kind": "PorticoProxy", "name": "scaled"}},
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"},
                              {"name": "admin", "port": 8080, "protocol": "HTTP"}]})
            for o in (CLASS, proxy, gateway, SERVICE, route("web")):
                api.put(o)
            gw_uid = api.get(G, "gateways", "apps", "gw")["metadata"]["uid"]  # type: ignore[index]
            owner = {"apiVersion": f"{G}/v1", "kind": "Gateway", "name": "gw", "uid": gw_uid, "controller": True}
            # not ours: no labels of ours; another controller's; ours but made by hand (no owner)
            strangers = {
                "plain": deployment("plain", {"app": "plain"}, owner),
                "other-controller": deployment("other-controller", {
                    **MANAGED_BY, CONTROLLER_LABEL: controller_label("example.com/other")}, owner),
                "no-owner": deployment("no-owner", {**MANAGED_BY, CONTROLLER_LABEL: controller_label(
                    "portico.dev/gateway-controller")}),
            }
            for d in strangers.values():
                api.put(d)
            opts = data_plane_options(tmp_path)
            stop = asyncio.Event()
            controller = asyncio.create_task(serve_controller(opts, stop, client))

            def exists(group: str, plural: str, name: str) -> bool:
                return api.get(group, plural, "apps", name) is not None

            try:
                await until(lambda: all(exists(*g) for g in GENERATED)
                            and exists("autoscaling", "horizontalpodautoscalers", NAME)
                            and exists("policy", "poddisruptionbudgets", NAME), timeout=30, what="the data plane")

                # deleted by hand: applied again
                api.remove("apps", "deployments", "apps", NAME)
                api.remove("", "services", "apps", NAME)
                await until(lambda: exists("apps", "deployments", NAME) and exists("", "services", NAME),
                            what="the deleted Deployment and Service back")

                # edited by hand: our fields applied again
                edited = copy.deepcopy(api.get("apps", "deployments", "apps", NAME))
                assert edited is not None
                edited["spec"]["template"]["spec"]["containers"][0]["image"] = "example.com/evil:1"
                api.put(edited)
                await until(lambda: (api.get("apps", "deployments", "apps", NAME) or {})["spec"]["template"]["spec"]
                            ["containers"][0]["image"] != "example.com/evil:1", what="the edit undone")

                # the HPA removed from the PorticoProxy: deleted; the PDB stays
                api.put({**proxy, "spec": {"podDisruptionBudget": {"minAvailable": 1}}})
                await until(lambda: not exists("autoscaling", "horizontalpodautoscalers", NAME),
                            what="the HPA pruned")
                assert exists("policy", "poddisruptionbudgets", NAME)

                # a listener removed: its Service port is gone
                api.put({**gateway, "spec": {**gateway["spec"], "listeners": [  # type: ignore[dict-item]
                    {"name": "http", "port": 80, "protocol": "HTTP"}]}})
                await until(lambda: [p["port"] for p in (api.get("", "services", "apps", NAME) or {})["spec"]
                                     ["ports"]] == [80], what="the listener's Service port removed")

                # the Gateway moved to another controller's class: everything of it pruned
                api.put(obj(f"{G}/v1", "GatewayClass", "other", None, spec={"controllerName": "example.com/other"}))
                api.put({**gateway, "spec": {**gateway["spec"], "gatewayClassName": "other"}})  # type: ignore[dict-item]
                await until(lambda: not any(exists(*g) for g in GENERATED)
                            and not exists("policy", "poddisruptionbudgets", NAME), timeout=20,
                            what="the data plane pruned")
                for name in strangers:
                    assert exists("apps", "deployments", name), name  # never touched
                deletes = [e for e in api.audit if e.verb == "delete" and e.code == 200]
                assert {e.name for e in deletes} <= {NAME, f"{NAME}-xds"}, deletes
            finally:
                stop.set()
                await controller

    asyncio.run(main())
