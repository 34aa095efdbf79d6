"""`portico describe KIND/NAME`: an object's conditions in words, what is attached to
it or what it is attached to, the objects it references that are missing, and what
to do about each problem. Reads the objects (with status) of a running instance's
admin API, or of manifests translated on the spot (`-f`). Shared by the CLI and the
admin API's `/api/describe`, so it sits beside both rather than in either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# What to do, by condition reason (the Gateway API's reasons, and Portico's Pending).
ADVICE: dict[str, str] = {
    "NotAllowedByListeners": "the listener's allowedRoutes does not admit this route: allow its namespace "
                             "(allowedRoutes.namespaces) or kind (allowedRoutes.kinds), or attach elsewhere",
    "NoMatchingListenerHostname": "no route hostname matches the listener's hostname: add a matching hostname "
                                  "to the route, or widen the listener's",
    "NoMatchingParent": "no listener matches the parentRef: check its sectionName and port, and that the "
                        "listener is accepted",
    "RefNotPermitted": "a reference into another namespace needs a ReferenceGrant there, from this kind and "
                       "namespace to the referenced kind",
    "BackendNotFound": "create the referenced Service, or fix the backendRef's name, namespace or port",
    "InvalidKind": "this kind cannot be referenced here (Portico has no extension filters; backends are Services)",
    "UnsupportedProtocol": "the backend's appProtocol cannot carry this route's traffic, or the listener's "
                           "protocol is not supported",
    "UnsupportedValue": "a field has a value Portico does not support: the message names it; that rule is "
                        "not programmed",
    "InvalidCertificateRef": "the certificate Secret is missing, not kubernetes.io/tls, or its key does not "
                             "match: fix or replace the Secret",
    "InvalidCACertificateRef": "the CA bundle (ca.crt of a ConfigMap or Secret) is missing or not PEM",
    "NoValidCACertificate": "no CA reference is usable: fix at least one caCertificateRef",
    "InvalidRouteKinds": "allowedRoutes.kinds names a kind this listener's protocol cannot serve",
    "HostnameConflict": "another listener (or an older route of the other kind) claims the same hostname "
                        "on this port: change one of them",
    "ProtocolConflict": "listeners on this port disagree on the protocol: use another port",
    "OverlappingTLSConfig": "HTTPS/TLS listeners share hostnames or certificates: clients may be sent to the "
                            "wrong one; make them distinct",
    "PortUnavailable": "Envoy cannot bind the port: another process holds it, or it needs privileges "
                       "(--port-offset)",
    "InvalidParameters": "the parametersRef names an object that does not exist or a kind Portico does not "
                         "read (PorticoProxy, ConfigMap)",
    "AddressNotAssigned": "no address yet: the address pool is exhausted, or (Kubernetes) the Gateway's "
                          "Service has no load balancer address",
    "AddressNotUsable": "a requested address cannot be used here (standalone: loopback IPv4 only)",
    "UnsupportedAddress": "only IPAddress addresses are supported",
    "Pending": "waiting for the Envoy serving it to acknowledge the configuration",
    "NotAllowed": "the parent Gateway's allowedListeners does not admit this ListenerSet's namespace",
    "ParentNotAccepted": "the parent Gateway is not accepted: describe it",
    "Conflicted": "an older policy targets the same object and wins",
    "Invalid": "the object is invalid: the message says why",
}
POSITIVE = {"Accepted", "Programmed", "ResolvedRefs", "ResolvedReferences"}


def find(objects: Iterable[dict[str, Any]], kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
    for obj in objects:
        meta = obj.get("metadata", {})
        if obj.get("kind", "").lower() == kind.lower() and meta.get("name") == name and (
                namespace is None or meta.get("namespace", "") in (namespace, "")):
            return obj
    return None


def not_found(objects: Iterable[dict[str, Any]], kind: str, name: str, namespace: str | None) -> str:
    """Why `find` found nothing, and what there is instead."""
    objects = list(objects)
    kinds = sorted({str(o.get("kind", "")) for o in objects})
    same = [o for o in objects if str(o.get("kind", "")).lower() == kind.lower()]
    if not same:
        return f"no object of kind {kind!r} (kinds here: {', '.join(kinds) or 'none'}; KIND/NAME, e.g. httproute/web)"
    kind = str(same[0]["kind"])
    where = f" in namespace {namespace}" if namespace else ""
    names = sorted(_qualified(o) for o in same)
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    hint = "; another namespace? -n NAMESPACE" if namespace and any(
        o.get("metadata", {}).get("name") == name for o in same) else ""
    return f"no {kind} named {name!r}{where} ({kind}s here: {shown}{hint})"


def _qualified(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))


def describe(obj: dict[str, Any], objects: list[dict[str, Any]], controller: str) -> list[str]:
    meta = obj["metadata"]
    ns = meta.get("namespace")
    lines = [f"{obj['kind']} {ns + '/' if ns else ''}{meta['name']} (generation {meta.get('generation', '?')})"]
    status = obj.get("status") or {}
    lines += _conditions(status.get("conditions", []), "  ")
    kind = obj["kind"]
    if kind in ("Gateway", "ListenerSet"):
        lines += _gateway(obj, objects, controller)
    elif kind.endswith("Route"):
        lines += _route(obj, objects, controller)
    elif kind == "Ingress":
        lines += _ingress(obj, objects)
    elif "parents" not in status and "conditions" not in status and "ancestors" not in status:
        lines.append("  no status: not a kind Portico writes status for, or not translated yet")
    for ancestor in status.get("ancestors", []):
        ref = ancestor.get("ancestorRef", {})
        lines.append(f"  for {ref.get('kind', 'Gateway')} {ref.get('namespace', ns)}/{ref.get('name')}:")
        lines += _conditions(ancestor.get("conditions", []), "    ")
    return lines


def _ingress(ingress: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    """Where it is served (status.loadBalancer, which Portico writes for the Ingresses of
    its IngressClass) and how each of its ingress-nginx annotations is served."""
    from portico.cli.status import ingress_where
    from portico.ingress import convert

    lines = [f"  {ingress_where(ingress)}"]
    services = [o for o in objects if o.get("kind") == "Service"]
    report = convert([ingress, *services]).reports
    for annotation, outcome, detail in report[0].annotations if report else []:
        lines.append(f"  {annotation}: {outcome}" + (f" ({detail})" if detail else ""))
    lines += [f"  not served: {note}" for note in (report[0].notes if report else [])]
    return lines


def _conditions(conditions: list[dict[str, Any]], indent: str) -> list[str]:
    out = []
    for c in conditions:
        good = (c.get("status") == "True") == (c.get("type") in POSITIVE or c.get("type") not in
                                               ("Conflicted", "PartiallyInvalid", "OverlappingTLSConfig"))
        mark = "ok " if good else "NO "
        reason = c.get("reason", "")
        line = f"{indent}{mark}{c.get('type')}={c.get('status')} ({reason})"
        if c.get("message") and c.get("message") != reason:
            line += f": {c['message']}"
        out.append(line)
        if not good and reason in ADVICE:
            out.append(f"{indent}    what to do: {ADVICE[reason]}")
    return out


def _gateway(gw: dict[str, Any], objects: list[dict[str, Any]], controller: str) -> list[str]:
    meta = gw["metadata"]
    lines = []
    addresses = ", ".join(a.get("value", "") for a in (gw.get("status") or {}).get("addresses", []))
    if gw["kind"] == "Gateway":
        lines.append(f"  addresses: {addresses or 'none'}")
    for listener in (gw.get("status") or {}).get("listeners", []):
        kinds = ", ".join(k["kind"] for k in listener.get("supportedKinds", []))
        lines.append(f"  listener {listener['name']}: {listener.get('attachedRoutes', 0)} attached routes "
                     f"(kinds: {kinds or 'none'})")
        lines += _conditions(listener.get("conditions", []), "    ")
    attached, refused = [], []
    for route in objects:
        if not route.get("kind", "").endswith("Route"):
            continue
        for parent in (route.get("status") or {}).get("parents", []):
            ref = parent.get("parentRef", {})
            if parent.get("controllerName") != controller or ref.get("kind", "Gateway") != gw["kind"] or \
                    ref.get("name") != meta["name"] or \
                    ref.get("namespace", route["metadata"].get("namespace")) != meta.get("namespace"):
                continue
            accepted: dict[str, Any] = next((c for c in parent.get("conditions", []) if c["type"] == "Accepted"), {})
            label = f"{route['kind']} {route['metadata'].get('namespace')}/{route['metadata']['name']}"
            if accepted.get("status") == "True":
                attached.append(label)
            else:
                refused.append(f"{label}: {accepted.get('reason', '?')}")
    lines.append(f"  routes attached: {', '.join(sorted(attached)) or 'none'}")
    if refused:
        lines.append("  routes refused (describe them for why):")
        lines += [f"    {r}" for r in sorted(refused)]
    return lines


def _route(route: dict[str, Any], objects: list[dict[str, Any]], controller: str) -> list[str]:
    ns = route["metadata"].get("namespace")
    lines = []
    parents = [p for p in (route.get("status") or {}).get("parents", []) if p.get("controllerName") == controller]
    if not parents:
        lines.append("  not attached to any Gateway of Portico: check the parentRefs (name, namespace) and that "
                     "the Gateway's class names Portico's controller")
    for parent in parents:
        ref = parent.get("parentRef", {})
        where = f"{ref.get('kind', 'Gateway')} {ref.get('namespace', ns)}/{ref.get('name')}"
        if ref.get("sectionName"):
            where += f" listener {ref['sectionName']}"
        lines.append(f"  parent {where}:")
        lines += _conditions(parent.get("conditions", []), "    ")
    services = {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects if o.get("kind") == "Service"}
    policies = [o for o in objects if o.get("kind") == "BackendTLSPolicy"]
    for i, rule in enumerate((route.get("spec") or {}).get("rules", [])):
        for ref in rule.get("backendRefs", []):
            if ref.get("kind", "Service") != "Service" or ref.get("group", "") != "":
                lines.append(f"  rule {i}: backend {ref.get('kind')} {ref.get('name')}: not a Service")
                continue
            target = (ref.get("namespace", ns), ref["name"])
            found = "found" if target in services else "MISSING"
            tls = [p["metadata"]["name"] for p in policies if p["metadata"].get("namespace") == target[0]
                   and any(t.get("name") == target[1] for t in (p.get("spec") or {}).get("targetRefs", []))]
            lines.append(f"  rule {i}: backend Service {target[0]}/{target[1]}:{ref.get('port')} "
                         f"weight {ref.get('weight', 1)}: {found}"
                         + (f"; TLS to it by BackendTLSPolicy {', '.join(tls)}" if tls else ""))
    return lines
