"""Ingress (networking.k8s.io/v1) to the Gateway API: `portico convert`, and serving
Ingress objects of Portico's IngressClass through the same conversion (`serve`).

Per namespace and IngressClass, a Gateway (named after the class) with an HTTP
listener on port 80 and an HTTPS listener on 443 per `tls` entry host (its Secret
as the certificate); per Ingress and host, an HTTPRoute bound to that Gateway.

- Paths: `Exact` -> Exact; `Prefix` -> PathPrefix (both match whole path elements,
  as the Ingress spec says); `ImplementationSpecific` -> PathPrefix (Portico's
  reading of it, as for ingress-nginx without use-regex).
- Backends: Services by port number, or by port name when the Service is among
  the inputs (HTTPRoute needs a number); `resource` backends are not converted.
- `defaultBackend`: an HTTPRoute without hostnames for `/`, which every more
  specific route outranks.
- Annotations: none is converted yet (the ingress-nginx subset is to come); each is
  listed as not converted, never dropped silently. `kubernetes.io/ingress.class`
  is read as the class.

Everything not converted is reported with its reason (`Conversion.not_converted`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from portico import CONTROLLER_NAME

log = logging.getLogger(__name__)
GATEWAY_API = "gateway.networking.k8s.io/v1"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
INGRESS_CONTROLLER = "portico.dev/ingress-controller"
PATH_TYPES = {"Exact": "Exact", "Prefix": "PathPrefix", "ImplementationSpecific": "PathPrefix"}


@dataclass
class Conversion:
    objects: list[dict[str, Any]] = field(default_factory=list)
    not_converted: list[str] = field(default_factory=list)


def convert(inputs: list[dict[str, Any]], gateway_class: str = "portico", prefix: str = "") -> Conversion:
    """`prefix` starts the Gateway and HTTPRoute names (serving: apart from the user's own)."""
    out = Conversion()
    services = {(o["metadata"].get("namespace", "default"), o["metadata"]["name"]): o
                for o in inputs if o.get("kind") == "Service"}
    ingresses = [o for o in inputs if o.get("kind") == "Ingress" and o.get("apiVersion") == "networking.k8s.io/v1"]
    gateways: dict[tuple[str, str], dict[str, Any]] = {}
    for ing in sorted(ingresses, key=lambda o: (o["metadata"].get("namespace", "default"), o["metadata"]["name"])):
        label = f"Ingress {ing['metadata'].get('namespace', 'default')}/{ing['metadata']['name']}"
        try:
            _convert_one(ing, label, services, gateways, gateway_class, prefix, out)
        except (AttributeError, KeyError, TypeError, ValueError) as e:  # not shaped as an Ingress
            out.not_converted.append(f"{label}: malformed ({type(e).__name__}: {e}); not converted")
    classes = [{"apiVersion": GATEWAY_API, "kind": "GatewayClass", "metadata": {"name": gateway_class},
                "spec": {"controllerName": CONTROLLER_NAME}}] if ingresses else []
    out.objects = classes + list(gateways.values()) + out.objects
    return out


def ingress_class(ing: dict[str, Any]) -> str | None:
    """The class an Ingress names: ingressClassName, else the kubernetes.io/ingress.class annotation."""
    named = (ing.get("spec") or {}).get("ingressClassName") or \
        (ing["metadata"].get("annotations") or {}).get(CLASS_ANNOTATION)
    return str(named) if named else None


def _convert_one(ing: dict[str, Any], label: str, services: dict[tuple[str, str], dict[str, Any]],
                 gateways: dict[tuple[str, str], dict[str, Any]], gateway_class: str, prefix: str,
                 out: Conversion) -> None:
    meta, spec = ing["metadata"], ing.get("spec") or {}
    ns, name = meta.get("namespace", "default"), meta["name"]
    ingress_class_name = ingress_class(ing) or "default"
    for key in sorted(meta.get("annotations") or {}):
        if key != CLASS_ANNOTATION:
            out.not_converted.append(f"{label}: annotation {key}: not supported yet")
    gw = gateways.setdefault((ns, ingress_class_name),
                             _gateway(ns, _dns(prefix + ingress_class_name), gateway_class))
    for tls in spec.get("tls") or []:
        _add_https(gw, tls, label, out)
    by_host: dict[str, list[dict[str, Any]]] = {}
    for rule in spec.get("rules") or []:
        paths = ((rule.get("http") or {}).get("paths")) or []
        by_host.setdefault(rule.get("host", ""), []).extend(paths)
    for host, paths in by_host.items():
        rules = [r for p in paths if (r := _rule(p, ns, services, label, out)) is not None]
        if rules:
            out.objects.append(_route(f"{prefix}{name}-{_dns(host) if host else 'any'}", ns, gw,
                                      [host] if host else [], rules))
    default = spec.get("defaultBackend")
    if default:
        backend = _backend(default, ns, services, f"{label} defaultBackend", out)
        if backend is not None:
            out.objects.append(_route(f"{prefix}{name}-default", ns, gw, [], [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [backend]}]))


def _gateway(namespace: str, name: str, gateway_class: str) -> dict[str, Any]:
    return {"apiVersion": GATEWAY_API, "kind": "Gateway", "metadata": {"name": name, "namespace": namespace},
            "spec": {"gatewayClassName": gateway_class, "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP"}]}}


def _add_https(gw: dict[str, Any], tls: dict[str, Any], label: str, out: Conversion) -> None:
    secret = tls.get("secretName")
    if not secret:
        out.not_converted.append(f"{label}: a tls entry without secretName (no certificate to serve)")
        return
    listeners = gw["spec"]["listeners"]
    for host in tls.get("hosts") or [""]:
        name = f"https-{_dns(host)}" if host else "https"
        if any(ls["name"] == name for ls in listeners):
            continue
        listener: dict[str, Any] = {"name": name[:63], "port": 443, "protocol": "HTTPS",
                                    "tls": {"mode": "Terminate", "certificateRefs": [{"name": secret}]}}
        if host:
            listener["hostname"] = host
        listeners.append(listener)


def _rule(path: dict[str, Any], ns: str, services: dict[tuple[str, str], dict[str, Any]], label: str,
          out: Conversion) -> dict[str, Any] | None:
    value = path.get("path") or "/"
    kind = path.get("pathType", "ImplementationSpecific")
    if kind not in PATH_TYPES:
        out.not_converted.append(f"{label}: path {value}: pathType {kind} is not an Ingress path type")
        return None
    backend = _backend(path.get("backend") or {}, ns, services, f"{label} path {value}", out)
    if backend is None:
        return None
    return {"matches": [{"path": {"type": PATH_TYPES[kind], "value": value}}], "backendRefs": [backend]}


def _backend(backend: dict[str, Any], ns: str, services: dict[tuple[str, str], dict[str, Any]], where: str,
             out: Conversion) -> dict[str, Any] | None:
    if "resource" in backend:
        out.not_converted.append(f"{where}: a resource backend ({backend['resource'].get('kind')}): "
                                 "HTTPRoute backends are Services here")
        return None
    service = backend.get("service") or {}
    port = service.get("port") or {}
    number = port.get("number")
    if number is None and port.get("name"):
        svc = services.get((ns, service.get("name", "")))
        number = next((p.get("port") for p in ((svc or {}).get("spec") or {}).get("ports", [])
                       if p.get("name") == port["name"]), None)
        if number is None:
            out.not_converted.append(f"{where}: Service port {port['name']!r} by name needs the Service "
                                     f"{ns}/{service.get('name')} among the inputs")
            return None
    if not service.get("name") or number is None:
        out.not_converted.append(f"{where}: a backend without a Service name and port")
        return None
    return {"name": service["name"], "port": int(number)}


def _route(name: str, ns: str, gw: dict[str, Any], hostnames: list[str], rules: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": [{"name": gw["metadata"]["name"]}], "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"apiVersion": GATEWAY_API, "kind": "HTTPRoute", "metadata": {"name": _dns(name), "namespace": ns},
            "spec": spec}


def _dns(value: str) -> str:
    """A DNS label from a host or class name (`*.example.com` -> `wildcard-example-com`)."""
    label = re.sub(r"[^a-z0-9-]+", "-", value.lower().replace("*", "wildcard")).strip("-")
    return label[:63].strip("-") or "x"


# ---------------------------------------------------------------- serving


def ours(ingress: dict[str, Any], classes: list[dict[str, Any]]) -> bool:
    """An Ingress of an IngressClass whose controller is Portico's (by ingressClassName,
    the kubernetes.io/ingress.class annotation, or no class and our default class)."""
    mine = {c["metadata"]["name"] for c in classes if (c.get("spec") or {}).get("controller") == INGRESS_CONTROLLER}
    default = any(c["metadata"]["name"] in mine and (c["metadata"].get("annotations") or {})
                  .get(DEFAULT_CLASS_ANNOTATION) == "true" for c in classes)
    named = ingress_class(ingress)
    return named in mine or named == "portico" if named else default


@dataclass
class Served:
    """What serving the Ingress objects adds to a translation: Gateway API objects, and
    for each Ingress (ns, name) the Gateway (ns, name) whose address it reports."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    gateway_of: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    not_converted: list[str] = field(default_factory=list)


def serve(raws: list[dict[str, Any]], controller_name: str) -> Served:
    """Ingress objects of ours as Gateway API objects on Portico-managed Gateways
    (`ingress-<class>` of GatewayClass `portico-ingress`): the Ingress is served by the
    very translator that serves routes."""
    classes = [r for r in raws if r.get("kind") == "IngressClass"]
    mine = [r for r in raws if r.get("kind") == "Ingress" and r.get("apiVersion") == "networking.k8s.io/v1"
            and ours(r, classes)]
    if not mine:
        return Served()
    services = [r for r in raws if r.get("kind") == "Service"]
    result = convert(mine + services, gateway_class="portico-ingress", prefix="ingress-")
    out = Served()
    for obj in result.objects:
        obj = {**obj, "metadata": {**obj["metadata"], "generation": 1, "uid": f"ingress/{obj['metadata']['name']}",
                                   "creationTimestamp": "1970-01-01T00:00:00Z"}}
        if obj["kind"] == "GatewayClass":
            obj["spec"] = {"controllerName": controller_name}
        out.objects.append(obj)
    for ing in mine:
        ns = ing["metadata"].get("namespace", "default")
        out.gateway_of[(ns, ing["metadata"]["name"])] = (ns, _dns("ingress-" + (ingress_class(ing) or "default")))
    out.not_converted = result.not_converted
    return out
