"""The translator's front stage for Ingress: the Ingress objects of ours, as the Gateway
API objects that serve them (`portico.ingress`), before the translation proper; and
after it, each Ingress's status.loadBalancer from its Gateway's addresses.

Pure: objects in, objects, statuses and notes out. Saying what was not served (once,
in the log and as Events) is the control loop's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from portico.ingress import serve
from portico.models import InvalidObject, Resource, parse_object
from portico.objects import GATEWAY_GROUP, ObjectKey

INGRESS_GROUP = "networking.k8s.io"
# what the stage reads of the stored objects
INPUT_KINDS = ("Ingress", "IngressClass", "Service")


@dataclass(frozen=True)
class IngressStage:
    # the Gateway API objects serving Ingresses (stored objects of the same key win)
    objects: dict[ObjectKey, Resource] = field(default_factory=dict)
    # Ingress (namespace, name) -> the Gateway (namespace, name) whose addresses it reports
    gateway_of: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    # (the Ingress, or None for an object made of one) -> what of it is not served
    notes: tuple[tuple[ObjectKey | None, str], ...] = ()


def synthesize(raws: list[dict[str, Any]], controller_name: str) -> IngressStage:
    """The stage for the stored Ingress, IngressClass and Service objects (`raws`)."""
    served = serve(raws, controller_name)
    notes: list[tuple[ObjectKey | None, str]] = []
    objects: dict[ObjectKey, Resource] = {}
    for raw in served.objects:
        try:
            obj = parse_object(raw)
        except InvalidObject as e:  # e.g. a host that is no hostname: that object is left out
            notes.append((None, f"{raw['kind']} {raw['metadata']['name']} from an Ingress: {e}"))
            continue
        objects[obj.key] = obj
    for (ns, name), said in served.notes_of.items():
        notes.extend((ObjectKey(INGRESS_GROUP, "Ingress", ns, name), note) for note in said)
    return IngressStage(objects, served.gateway_of, tuple(notes))


def ingress_statuses(stage: IngressStage, statuses: Mapping[ObjectKey, dict[str, Any]]
                     ) -> dict[ObjectKey, dict[str, Any]]:
    """Ingress status.loadBalancer: the addresses of the Gateway serving it."""
    out = {}
    for (ns, name), (gw_ns, gw_name) in stage.gateway_of.items():
        gw = statuses.get(ObjectKey(GATEWAY_GROUP, "Gateway", gw_ns, gw_name)) or {}
        # networking/v1 IngressLoadBalancerIngress: an IP is `ip`, a load balancer's DNS name `hostname`
        ips = [{"hostname" if a.get("type") == "Hostname" else "ip": a["value"]}
               for a in gw.get("addresses", []) if a.get("value")]
        out[ObjectKey(INGRESS_GROUP, "Ingress", ns, name)] = {"loadBalancer": {"ingress": ips}}
    return out
