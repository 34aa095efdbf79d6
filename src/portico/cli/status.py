"""`portico status`: a running instance's GatewayClasses, Gateways, listeners,
routes and policies with their conditions, read from its admin API."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import yaml
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from portico import CONTROLLER_NAME, kinds

GATEWAY_KINDS = ("GatewayClass", "Gateway", "ListenerSet")
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute")
# policies: one row per ancestor (status.ancestors), as routes have one per parent
POLICY_KINDS = tuple(k.kind for k in kinds.POLICY_KINDS)
# Ingress objects Portico serves: their address (status.loadBalancer), as a Gateway's
INGRESS_KINDS = ("Ingress",)
KINDS = GATEWAY_KINDS + ROUTE_KINDS + POLICY_KINDS + INGRESS_KINDS


def fetch(admin: str, kind: str | None = None, name: str | None = None, timeout: float = 5.0,
          token: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(objects, errors) from the admin API: Gateway API objects (of `kind`, named `name`
    when given) and the documents not applied; OSError when it does not answer."""
    data = get_json(admin, "/api/objects", {"kind": kind, "name": name}, token, timeout)
    objects = [o for o in data.get("items", []) if o.get("kind") in KINDS]
    errors = [e for e in data.get("errors", []) if _concerns(e, kind, name)]
    return objects, errors


def get_json(admin: str, path: str, query: dict[str, str | None], token: str | None = None,
             timeout: float = 5.0) -> dict[str, Any]:
    """GET `path` of the admin API at `admin` (HOST:PORT), no proxy; OSError when it fails."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    encoded = urllib.parse.urlencode({k: v for k, v in query.items() if v})
    try:
        url = f"http://{admin}{path}" + (("&" if "?" in path else "?") + encoded if encoded else "")
        request = urllib.request.Request(url)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with opener.open(request, timeout=timeout) as r:
            data: dict[str, Any] = json.loads(r.read().decode())
            return data
    except urllib.error.HTTPError as e:
        raise OSError(f"admin API at {admin} answered {e.code} {_message(e)}"
                      + (" (give its token: --admin-token)" if e.code == 401 else "")) from e
    except urllib.error.URLError as e:
        raise OSError(f"admin API at {admin} does not answer: {e.reason}") from e


def _message(error: urllib.error.HTTPError) -> str:
    """The admin API's own message ({"error": ...}), else the HTTP reason."""
    try:
        body = json.loads(error.read().decode() or "{}")
    except (OSError, ValueError):
        body = {}
    detail = body.get("error") if isinstance(body, dict) else None
    return f"{error.reason}: {detail}" if isinstance(detail, str) and detail else str(error.reason)


def _concerns(error: dict[str, Any], kind: str | None, name: str | None) -> bool:
    """Does a load error belong to the objects asked for ("Kind ns/name", or none known)?"""
    what = str(error.get("object") or "")
    if not (kind or name):
        return True
    if not what:
        return False
    obj_kind, _, ref = what.partition(" ")
    return (not kind or obj_kind == kind) and (not name or ref.rsplit("/", 1)[-1] == name)


def conditions_text(conditions: list[dict[str, Any]]) -> str:
    """'Accepted ✓  Programmed ✗ (AddressNotUsable: ...)' — failures carry their reason."""
    parts = []
    for c in conditions:
        # Conflicted is the one condition whose healthy state is False: it reads "not
        # Conflicted ✓" then ("Conflicted ✓" read as a conflict confirmed)
        negative = c.get("type") == "Conflicted"
        healthy = (c.get("status") == "True") != negative
        mark = "[green]✓[/]" if healthy else "[red]✗[/]"
        detail = "" if healthy else f" ({c.get('reason')}: {c.get('message', '')})"
        parts.append(f"{'not ' if negative and healthy else ''}{c.get('type')} {mark}{detail}")
    return "  ".join(parts)


def name_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else str(meta.get("name"))


def rows(objects: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(kind, name, where, conditions) rows: one per object, listener and route parent."""
    out = []
    for obj in sorted(objects, key=lambda o: (KINDS.index(o["kind"]), name_of(o))):
        status = obj.get("status") or {}
        kind, name = obj["kind"], name_of(obj)
        if kind in GATEWAY_KINDS:
            addresses = ", ".join(a.get("value", "") for a in status.get("addresses", []))
            out.append((kind, name, addresses, conditions_text(status.get("conditions", []))))
            for ls in status.get("listeners", []):
                where = f"listener {ls.get('name')}: {ls.get('attachedRoutes', 0)} routes"
                out.append(("", "", where, conditions_text(ls.get("conditions", []))))
            continue
        if kind in INGRESS_KINDS:
            out.append((kind, name, ingress_where(obj), ""))
            continue
        field, ref_field = ("ancestors", "ancestorRef") if kind in POLICY_KINDS else ("parents", "parentRef")
        parents = [p for p in status.get(field, []) if p.get("controllerName") == CONTROLLER_NAME]
        if not parents:
            out.append((kind, name, "no parent of ours" if field == "parents" else "no ancestor of ours", ""))
        for i, p in enumerate(parents):
            ref = p.get(ref_field, {})
            where = f"→ {ref.get('kind', 'Gateway')} {ref.get('namespace') or obj['metadata'].get('namespace')}/" \
                    f"{ref.get('name')}" + (f" [{ref['sectionName']}]" if ref.get("sectionName") else "")
            out.append((kind if i == 0 else "", name if i == 0 else "", where,
                        conditions_text(p.get("conditions", []))))
    return out


def ingress_where(ingress: dict[str, Any]) -> str:
    """An Ingress's class and the addresses that serve it (status.loadBalancer.ingress)."""
    from portico.ingress import ingress_class

    found = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    addresses = ", ".join(str(a.get("ip") or a.get("hostname")) for a in found if a.get("ip") or a.get("hostname"))
    named = ingress_class(ingress)
    return (f"class {named}: " if named else "no class: ") + (
        addresses or "no address (not of a Portico IngressClass, or not served yet)")


def render(objects: list[dict[str, Any]], output: str, console: Console,
           errors: list[dict[str, Any]] | None = None) -> None:
    errors = errors or []
    if output == "json":
        console.print_json(json.dumps({"items": objects, "errors": errors}))
        return
    if output == "yaml":
        console.print(yaml.safe_dump({"items": objects, "errors": errors}, sort_keys=False), markup=False,
                      highlight=False)
        return
    # Nothing wraps inside a cell (kubectl's way): a name or a condition folded at 80
    # columns cannot be copied or read; a line longer than the terminal wraps as a whole.
    table = Table(show_lines=False)
    for column in ("KIND", "NAME", "WHERE", "CONDITIONS"):
        table.add_column(column, no_wrap=True)
    for row in rows(objects):
        table.add_row(*row)
    natural = Measurement.get(console, console.options.update(width=10_000), table).maximum
    wide = console if natural <= console.width else Console(
        file=console.file, width=natural, force_terminal=console.is_terminal, no_color=console.no_color,
        color_system=console.color_system)  # type: ignore[arg-type]
    wide.print(table)
    if errors:
        console.print(f"[red]{len(errors)} document(s) not applied:[/]")
        for e in errors:
            what = f" {e['object']}" if e.get("object") else ""
            where = f" {e['path']}:" if e.get("path") else ""
            console.print(f"  {e.get('file')}:{e.get('line')}{what}{where} {e.get('message')}", markup=False,
                          highlight=False)
