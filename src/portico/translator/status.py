"""Rendering status for every object Portico owns status for.

Only our own entries: route `parents` and policy `ancestors` entries of other
controllers are merged in by whoever stores the status, against the status as it is
then (`portico.status.compose`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from portico.models import GatewayClass, Resource
from portico.objects import GATEWAY_GROUP, ObjectKey
from portico.translator.attachment import ParentResult, parent_ref_status
from portico.translator.conditions import Cond, render_all
from portico.translator.gateway import GatewayState, ListenerState, listener_conditions
from portico.translator.listenerset import ListenerSetState


def gatewayclass_status(gc: GatewayClass, conds: list[Cond], features: list[str]) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": render_all(conds, gc.metadata.generation)}
    if features:
        status["supportedFeatures"] = [{"name": f} for f in sorted(features)]
    return status


def address_type(value: str) -> str:
    """GatewayStatusAddress type: IPAddress, or Hostname (a load balancer known by its DNS
    name, e.g. an AWS ELB's)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "Hostname"
    return "IPAddress"


def gateway_status(gw: GatewayState) -> dict[str, Any]:
    generation = gw.gateway.metadata.generation
    conds = gw.conds
    if gw.address is not None and not gw.placement.status_addresses:
        # programmed where it binds, not reachable yet (Kubernetes: the Service has no address)
        conds = [Cond("Programmed", False, "AddressNotAssigned", "the Gateway's Service has no address yet"),
                 *conds]
    status: dict[str, Any] = {
        "addresses": [{"type": address_type(a), "value": a} for a in gw.placement.status_addresses],
        "conditions": render_all(conds, generation),
        "listeners": listener_statuses(gw.own_listeners, generation),
    }
    allowed = gw.gateway.spec.allowed_listeners
    if allowed is not None and allowed.namespaces.from_ != "None":
        # ListenerSets with Accepted=True (Gateway status.attachedListenerSets)
        status["attachedListenerSets"] = gw.attached_listener_sets
    return status


def listenerset_status(state: ListenerSetState) -> dict[str, Any]:
    """ListenerSet status: conditions and one ListenerEntryStatus per listener."""
    generation = state.listener_set.metadata.generation
    return {"conditions": render_all(state.conds, generation),
            "listeners": listener_statuses(state.listeners, generation)}


def listener_statuses(listeners: list[ListenerState], generation: int) -> list[dict[str, Any]]:
    return [
        {
            "name": ls.name,
            "supportedKinds": [{"group": GATEWAY_GROUP, "kind": k} for k in ls.supported_kinds],
            "attachedRoutes": ls.attached_routes,
            "conditions": render_all(listener_conditions(ls), generation),
        }
        for ls in listeners
    ]


def route_status(route: Resource, parents: list[ParentResult], route_conds: list[Cond],
                 controller: str) -> dict[str, Any]:
    generation = route.metadata.generation
    ours = []
    for parent in parents:
        conds = parent.conds + route_conds + [Cond("Accepted", True, "Accepted"),
                                              Cond("ResolvedRefs", True, "ResolvedRefs")]
        ours.append({"parentRef": parent_ref_status(parent.ref), "controllerName": controller,
                     "conditions": render_all(conds, generation)})
    return {"parents": ours}


def policy_status(policy: Resource, ancestors: dict[ObjectKey, list[Cond]], controller: str) -> dict[str, Any]:
    """PolicyAncestorStatus entries of ours, one per ancestor (a Gateway; the limit of 16,
    PolicyStatus.ancestors, is applied with the other controllers' entries when stored)."""
    generation = policy.metadata.generation
    ours = [{"ancestorRef": {"group": key.group, "kind": key.kind, "namespace": key.namespace, "name": key.name},
             "controllerName": controller,
             "conditions": render_all(conds + [Cond("Accepted", True, "Accepted"),
                                               Cond("ResolvedRefs", True, "ResolvedRefs")], generation)}
            for key, conds in sorted(ancestors.items())]
    return {"ancestors": ours}
