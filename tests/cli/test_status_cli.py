"""`portico status` rendering from admin API objects."""

from __future__ import annotations

import io

from rich.console import Console

from portico import CONTROLLER_NAME
from portico.cli.status import render, rows


def cond(t: str, s: str, reason: str = "R") -> dict[str, str]:
    return {"type": t, "status": s, "reason": reason, "message": "why"}


OBJECTS = [
    {"kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "ns"},
     "status": {"parents": [
         {"controllerName": CONTROLLER_NAME, "parentRef": {"name": "gw", "sectionName": "http"},
          "conditions": [cond("Accepted", "False", "NotAllowedByListeners")]},
         {"controllerName": "other.io/controller", "parentRef": {"name": "theirs"}, "conditions": []}]}},
    {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "ns"},
     "status": {"addresses": [{"value": "127.10.0.1"}], "conditions": [cond("Programmed", "True")],
                "listeners": [{"name": "http", "attachedRoutes": 2,
                               "conditions": [cond("Conflicted", "False", "NoConflicts")]}]}},
]


def test_rows_order_gateways_first_and_show_only_our_parents() -> None:
    out = rows(OBJECTS)
    assert [r[0] for r in out] == ["Gateway", "", "HTTPRoute"]
    assert out[0][2] == "127.10.0.1"
    assert out[1][2] == "listener http: 2 routes" and "✓" in out[1][3]  # Conflicted=False is healthy
    assert out[2][2] == "→ Gateway ns/gw [http]"
    assert "NotAllowedByListeners" in out[2][3] and "theirs" not in str(out)


def test_render_json_and_table() -> None:
    buf = io.StringIO()
    render(OBJECTS, "json", Console(file=buf, width=200))
    assert '"items"' in buf.getvalue()
    buf = io.StringIO()
    render(OBJECTS, "table", Console(file=buf, width=200))
    assert "listener http" in buf.getvalue()


ERRORS = [
    {"file": "routes.yaml", "line": 12, "path": "spec.rules", "object": "HTTPRoute ns/r",
     "message": "Invalid value", "rule": "type"},
    {"file": "broken.yaml", "line": 3, "path": "", "object": "", "message": "invalid YAML: bad", "rule": ""},
]


def test_the_table_lists_documents_not_applied() -> None:
    out = io.StringIO()
    render(OBJECTS, "table", Console(file=out, width=200), ERRORS)
    text = out.getvalue()
    assert "2 document(s) not applied" in text
    assert "routes.yaml:12 HTTPRoute ns/r spec.rules: Invalid value" in text
    assert "broken.yaml:3 invalid YAML: bad" in text


def test_errors_follow_the_kind_and_name_filters() -> None:
    from portico.cli.status import _concerns

    assert [_concerns(e, None, None) for e in ERRORS] == [True, True]
    assert [_concerns(e, "HTTPRoute", "r") for e in ERRORS] == [True, False]
    assert [_concerns(e, "Gateway", None) for e in ERRORS] == [False, False]
    assert [_concerns(e, None, "other") for e in ERRORS] == [False, False]


def test_policies_have_a_row_per_ancestor_after_the_routes() -> None:
    ancestor = {"ancestorRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "ns",
                                "name": "gw"}, "controllerName": CONTROLLER_NAME,
                "conditions": [{"type": "Accepted", "status": "False", "reason": "Conflicted",
                                "message": "RateLimitPolicy ns/old takes precedence"}]}
    policy = {"kind": "RateLimitPolicy", "metadata": {"name": "new", "namespace": "ns"},
              "status": {"ancestors": [ancestor]}}
    lonely = {"kind": "SecurityPolicy", "metadata": {"name": "s", "namespace": "ns"}, "status": {}}
    route = {"kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "ns"}, "status": {}}
    out = rows([policy, lonely, route])
    assert [r[0] for r in out] == ["HTTPRoute", "SecurityPolicy", "RateLimitPolicy"]
    assert out[1][2] == "no ancestor of ours"
    assert out[2][2] == "→ Gateway ns/gw" and "Conflicted: RateLimitPolicy ns/old takes precedence" in out[2][3]


def test_conflicted_false_reads_as_no_conflict() -> None:
    """Issue 31 item 10: Conflicted=False showed as "Conflicted ✓"."""
    out = rows(OBJECTS)
    assert out[1][3].startswith("not Conflicted [green]✓")
    conflicted = rows([{**OBJECTS[1], "status": {**OBJECTS[1]["status"], "listeners": [
        {"name": "http", "conditions": [cond("Conflicted", "True", "HostnameConflict")]}]}}])
    assert conflicted[1][3].startswith("Conflicted [red]✗[/] (HostnameConflict")


def test_names_stay_whole_at_80_columns() -> None:
    """Issue 31 item 10: names wrapped at 80 columns (so did kinds)."""
    name = "storefront-checkout-v2-canary"
    objects = [{"kind": "HTTPRoute", "metadata": {"name": name, "namespace": "team-payments"},
                "status": {"parents": [{"controllerName": CONTROLLER_NAME, "parentRef": {"name": "gw"},
                                        "conditions": [cond("Accepted", "True"), cond("ResolvedRefs", "True")]}]}}]
    out = io.StringIO()
    render(objects, "table", Console(file=out, width=80))
    assert f"team-payments/{name}" in out.getvalue()
    assert "HTTPRoute" in out.getvalue() and "ResolvedRefs" in out.getvalue()
