"""Rendering status for every object Portico owns status for.

Only our own entries are written: route `parents` entries of other
controllers are carried over untouched (RouteParentStatus.controllerName).
"""

from __future__ import annotations

from typing import Any

from portico import CONTROLLER_NAME
from portico.models import GatewayClass, Resource
from portico.objects import GATEWAY_GROUP
from portico.translator.attachment import ParentResult, parent_ref_status
from portico.translator.conditions import Cond, render_all
from portico.translator.gateway import GatewayState, listener_conditions


def gatewayclass_status(gc: GatewayClass, conds: list[Cond], features: list[str]) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": render_all(conds, gc.metadata.generation)}
    if features:
        status["supportedFeatures"] = [{"name": f} for f in sorted(features)]
    return status


def gateway_status(gw: GatewayState) -> dict[str, Any]:
    generation = gw.gateway.metadata.generation
    return {
        "addresses": [{"type": "IPAddress", "value": gw.address}] if gw.address else [],
        "conditions": render_all(gw.conds, generation),
        "listeners": [
            {
                "name": ls.name,
                "supportedKinds": [{"group": GATEWAY_GROUP, "kind": k} for k in ls.supported_kinds],
                "attachedRoutes": ls.attached_routes,
                "conditions": render_all(listener_conditions(ls), generation),
            }
            for ls in gw.listeners
        ],
    }


def route_status(route: Resource, parents: list[ParentResult], route_conds: list[Cond]) -> dict[str, Any]:
    generation = route.metadata.generation
    others = [p for p in (route.status or {}).get("parents") or []
              if isinstance(p, dict) and p.get("controllerName") != CONTROLLER_NAME]
    ours = []
    for parent in parents:
        conds = parent.conds + route_conds + [Cond("Accepted", True, "Accepted"),
                                              Cond("ResolvedRefs", True, "ResolvedRefs")]
        ours.append({"parentRef": parent_ref_status(parent.ref), "controllerName": CONTROLLER_NAME,
                     "conditions": render_all(conds, generation)})
    return {**(route.status or {}), "parents": others + ours}
