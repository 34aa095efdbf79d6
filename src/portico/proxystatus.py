"""`portico proxy-status` (as `istioctl proxy-status` / `egctl x status`): every Envoy
connected to this control plane, its Gateway (xDS group), node id (in Kubernetes
mode the pod's name: the Deployment passes it as `--service-node`) and address, the
xDS version it has applied against the newest one, the expiry of the client
certificate it connected with (Kubernetes mode's mutual TLS: to follow a renewal),
and the last configuration it rejected with Envoy's message. The admin API serves it at GET /api/proxies (read-only,
behind the admin token like the rest of /api/); the xDS server is the only source.

A proxy is SYNCED when it applied the newest version, NACKED when it rejected a
version newer than the one it applied (it keeps serving what it applied: the last
good configuration), STALE otherwise (an update on its way)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Connections(Protocol):
    def connections(self) -> list[dict[str, Any]]: ...


def state_of(proxy: dict[str, Any]) -> str:
    if proxy["applied"] >= proxy["latest"]:
        return "SYNCED"
    if proxy["nack_version"] > proxy["applied"]:
        return "NACKED"
    return "STALE"


def proxy_status(xds: Connections) -> Callable[[], dict[str, Any]]:
    """The view the admin API serves: {"items": [...]}, by Gateway then node."""
    def view() -> dict[str, Any]:
        items = [{**c, "state": state_of(c)} for c in xds.connections()]
        return {"items": sorted(items, key=lambda p: (p["group"], p["node"], p["peer"]))}

    return view


def table(items: list[dict[str, Any]]) -> list[str]:
    """The lines `portico proxy-status` prints."""
    rows = [("GATEWAY", "NODE", "ADDRESS", "STATE", "APPLIED", "LATEST", "CERT EXPIRES", "LAST NACK")]
    for p in items:
        nack = f"v{p['nack_version']}: {p['nack']}" if p["nack"] else "-"
        expires = str(p.get("cert_expires") or "")[:10] or "-"  # the date; -o json has the time and serial
        rows.append((p["group"], p["node"], p["peer"] or "-", p["state"], str(p["applied"]), str(p["latest"]),
                     expires, nack))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip() for r in rows]
