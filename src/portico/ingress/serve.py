"""Serving the Ingress objects of Portico's IngressClass: each becomes, through
`convert`, the Gateway API objects the one translator serves (the same IR as routes).

An Ingress is ours by `ingressClassName` or the `kubernetes.io/ingress.class`
annotation naming an IngressClass whose controller is `portico.dev/ingress-controller`
(or `portico`), or without a class when our IngressClass is the default one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portico.ingress.convert import CLASS_ANNOTATION, convert, default_class, dns_label, ingress_class

INGRESS_CONTROLLER = "portico.dev/ingress-controller"


def ours(ingress: dict[str, Any], classes: list[dict[str, Any]]) -> bool:
    """An Ingress of ours, in ingress-nginx's order (`GetIngressClass`): spec.ingressClassName
    names an IngressClass whose controller is Portico's; else the kubernetes.io/ingress.class
    annotation names one, or is `portico` (ingress-nginx: its --ingress-class value, no
    IngressClass needed); else, without a class, our IngressClass is the cluster's one
    default (what Kubernetes' DefaultIngressClass admission would have set)."""
    mine = {c["metadata"]["name"] for c in classes if (c.get("spec") or {}).get("controller") == INGRESS_CONTROLLER}
    by_name = (ingress.get("spec") or {}).get("ingressClassName")
    if by_name:
        return by_name in mine
    annotated = (ingress["metadata"].get("annotations") or {}).get(CLASS_ANNOTATION)
    if annotated:
        return annotated in mine or annotated == "portico"
    return default_class(classes) in mine


GATEWAY_CLASS = "portico-ingress"


def gateway_name(class_name: str) -> str:
    """The Gateway that serves the Ingress objects of an IngressClass (in each namespace)."""
    return dns_label("ingress-" + class_name)


@dataclass
class Served:
    """What serving the Ingress objects adds to a translation: Gateway API objects, for
    each Ingress (ns, name) the Gateway (ns, name) whose address it reports, and what of
    each Ingress is not served (the warnings its users see)."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    gateway_of: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    not_converted: list[str] = field(default_factory=list)
    notes_of: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def serve(raws: list[dict[str, Any]], controller_name: str) -> Served:
    """Ingress objects of ours as Gateway API objects on Portico-managed Gateways
    (`ingress-<class>` of GatewayClass `portico-ingress`)."""
    classes = [r for r in raws if r.get("kind") == "IngressClass"]
    mine = [r for r in raws if r.get("kind") == "Ingress" and r.get("apiVersion") == "networking.k8s.io/v1"
            and ours(r, classes)]
    if not mine:
        return Served()
    services = [r for r in raws if r.get("kind") == "Service"]
    result = convert(mine + services + classes, gateway_class=GATEWAY_CLASS, prefix="ingress-")
    out = Served()
    for obj in result.objects:
        obj = {**obj, "metadata": {**obj["metadata"], "generation": 1,
                                   "uid": f"ingress/{obj['kind']}/{obj['metadata']['name']}",
                                   "creationTimestamp": "1970-01-01T00:00:00Z"}}
        if obj["kind"] == "GatewayClass":
            obj["spec"] = {"controllerName": controller_name}
        out.objects.append(obj)
    for ing in mine:
        key = (ing["metadata"].get("namespace", "default"), ing["metadata"]["name"])
        named = ingress_class(ing) or default_class(classes) or "default"
        out.gateway_of[key] = (key[0], gateway_name(named))
        label = f"Ingress {key[0]}/{key[1]}"
        out.notes_of[key] = [n[len(label) + 1:].lstrip(": ").strip() for n in result.not_converted
                             if n.startswith(label + ":") or n.startswith(label + " ")]
    out.not_converted = result.not_converted
    return out
