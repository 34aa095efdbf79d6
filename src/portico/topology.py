"""The topology the admin API's `/topology` page draws: GatewayClasses -> Gateways ->
listeners -> routes -> backends, each node with a state from its conditions
("ok", "pending", "error") and the reason to show, read from the stored objects
and the statuses Portico wrote (only our entries). Public Gateways are marked
`public`, and the routes they expose without authentication `unauthenticated` (why:
`portico.exposure`, read from the translation's IR by the caller)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from portico import exposure

ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute")


def topology(objects: list[dict[str, Any]], controller: str,
             exposures: Iterable[exposure.Exposure] = ()) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    classes = {o["metadata"]["name"] for o in objects if o.get("kind") == "GatewayClass"
               and (o.get("spec") or {}).get("controllerName") == controller}
    services = {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects if o.get("kind") == "Service"}
    for o in objects:
        if o.get("kind") == "GatewayClass" and o["metadata"]["name"] in classes:
            nodes.append(_node(o, "GatewayClass", state_of(o.get("status", {}).get("conditions", []))))
    gateways = [o for o in objects if o.get("kind") == "Gateway" and (o.get("spec") or {}).get("gatewayClassName")
                in classes]
    for gw in gateways:
        gid = node_id(gw)
        nodes.append(_node(gw, "Gateway", state_of(gw.get("status", {}).get("conditions", []))))
        edges.append({"source": f"GatewayClass//{gw['spec']['gatewayClassName']}", "target": gid})
        for ls in (gw.get("status") or {}).get("listeners", []):
            lid = f"{gid}/listener/{ls['name']}"
            state, reason = state_of(ls.get("conditions", []))
            nodes.append({"id": lid, "kind": "Listener", "label": f"{ls['name']} ({ls.get('attachedRoutes', 0)})",
                          "state": state, "reason": reason, "namespace": gw["metadata"].get("namespace"),
                          "name": gw["metadata"]["name"]})
            edges.append({"source": gid, "target": lid})
    gateway_ids = {node_id(gw): gw for gw in gateways}
    # routes a public Gateway exposes without authentication: marked on the page
    exposed: dict[str, str] = {}
    for e in exposures:  # (a route on two public Gateways: both messages)
        exposed[e.route_id] = f"{exposed[e.route_id]}\n{e.message}" if e.route_id in exposed else e.message
    public = exposure.public_gateways(objects)
    for node in nodes:
        if node["kind"] == "Gateway" and (node["namespace"] or "", node["name"]) in public:
            node["public"] = True
    for route in (o for o in objects if o.get("kind") in ROUTE_KINDS):
        ns = route["metadata"].get("namespace")
        parents = [p for p in (route.get("status") or {}).get("parents", []) if p.get("controllerName") == controller]
        if not parents:
            continue
        conditions = [c for p in parents for c in p.get("conditions", [])]
        rid = node_id(route)
        nodes.append(_node(route, route["kind"], state_of(conditions)))
        if rid in exposed:
            nodes[-1]["unauthenticated"] = exposed[rid]
        for parent in parents:
            ref = parent.get("parentRef", {})
            gid = f"Gateway/{ref.get('namespace', ns)}/{ref.get('name')}"
            if gid not in gateway_ids:
                continue
            listeners = [ls["name"] for ls in (gateway_ids[gid].get("status") or {}).get("listeners", [])
                         if ref.get("sectionName") in (None, ls["name"])]
            for name in listeners or [None]:
                edges.append({"source": f"{gid}/listener/{name}" if name else gid, "target": rid})
        for rule in (route.get("spec") or {}).get("rules", []):
            for ref in rule.get("backendRefs", []):
                target = (ref.get("namespace", ns), ref.get("name"))
                sid = f"Service/{target[0]}/{target[1]}"
                if not any(n["id"] == sid for n in nodes):
                    found = target in services
                    nodes.append({"id": sid, "kind": "Service", "label": f"Service {target[0]}/{target[1]}",
                                  "state": "ok" if found else "error", "reason": "" if found else "not found",
                                  "namespace": target[0], "name": target[1]})
                edges.append({"source": rid, "target": sid})
    return {"nodes": nodes, "edges": [dict(e, id=f"{e['source']}->{e['target']}") for e in _unique(edges)]}


def node_id(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def state_of(conditions: list[dict[str, Any]]) -> tuple[str, str]:
    """ "error" when a condition that should be True is not (or PartiallyInvalid is),
    "pending" when only Programmed waits, else "ok"; with the first problem's reason."""
    bad = [c for c in conditions if (c.get("type") in ("Accepted", "ResolvedRefs") and c.get("status") != "True")
           or (c.get("type") == "PartiallyInvalid" and c.get("status") == "True")
           or (c.get("type") == "Programmed" and c.get("status") != "True" and c.get("reason") != "Pending")]
    if bad:
        return "error", f"{bad[0].get('type')}: {bad[0].get('reason')}: {bad[0].get('message', '')}"
    waiting = [c for c in conditions if c.get("type") == "Programmed" and c.get("status") != "True"]
    if waiting:
        return "pending", f"Programmed: {waiting[0].get('reason')}"
    return "ok", ""


def _node(obj: dict[str, Any], kind: str, state: tuple[str, str]) -> dict[str, Any]:
    ns = obj["metadata"].get("namespace")
    return {"id": node_id(obj), "kind": kind, "label": f"{kind} {ns + '/' if ns else ''}{obj['metadata']['name']}",
            "state": state[0], "reason": state[1], "namespace": ns, "name": obj["metadata"]["name"]}


def _unique(edges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for e in edges:
        seen.setdefault((e["source"], e["target"]), e)
    return list(seen.values())
