"""One bad route never freezes others (issue 31 item 1), with `portico run` and real Envoy.

team-a's route passes validation but Envoy rejects it (a Portico HTTPRouteFilter whose
regex substitution holds a CR LF: Envoy refuses it, nothing before Envoy knows). Before,
Envoy NACKed the route table every later version still carried, so team-b's change on
the same hostname was never applied. Now the loop finds team-a's route, reports it
Accepted=False with Envoy's message and pushes the configuration without it: team-b's
edit is served within the usual time, and team-a's fix (a new generation) brings it back.
"""

from __future__ import annotations

from typing import Any

import pytest
from support import wait_for, write_atomically
from test_standalone import NS, Gateway, route_doc
from test_standalone import gateway as gateway_fixture

pytestmark = pytest.mark.timeout(180)
gateway = gateway_fixture  # `portico run` with two echo backends (test_standalone)


def team_a(substitution: str) -> list[dict[str, Any]]:
    route = route_doc("team-a", "/team-a", "svc-a")
    route["spec"]["rules"][0]["filters"] = [{"type": "ExtensionRef", "extensionRef": {
        "group": "gateway.portico.dev", "kind": "HTTPRouteFilter", "name": "team-a-rewrite"}}]
    rewrite = {"apiVersion": "gateway.portico.dev/v1alpha1", "kind": "HTTPRouteFilter",
               "metadata": {"name": "team-a-rewrite", "namespace": NS},
               "spec": {"urlRewrite": {"path": {"type": "ReplaceRegexMatch", "replaceRegexMatch": {
                   "pattern": "^/team-a/(.*)$", "substitution": substitution}}}}}
    return [route, rewrite]


def accepted(gw: Gateway, name: str) -> tuple[str, str]:
    status = gw.obj("HTTPRoute", name).get("status") or {}
    conds = [c for p in status.get("parents") or [] for c in p["conditions"] if c["type"] == "Accepted"]
    return (conds[0]["status"], conds[0].get("message", "")) if conds else ("", "")


def test_a_route_envoy_rejects_is_left_out_and_others_keep_converging(gateway: Gateway) -> None:
    gw = gateway
    write_atomically(gw.dir / "30-team-b.yaml", [route_doc("team-b", "/b", "svc-b")])
    wait_for("team-b served", lambda: gw.send("/b")[1].get("pod") == "echo-b", timeout=10)

    # team-a's bad route and filter, created together (same hostname, same route table) ...
    write_atomically(gw.dir / "40-team-a.yaml", team_a("/x\r\n/\\1"))
    wait_for("team-a's route translated", lambda: accepted(gw, "team-a")[0])
    # ... then team-b's edit on the same hostname is applied within the usual time
    write_atomically(gw.dir / "30-team-b.yaml", [route_doc("team-b", "/b", "svc-a")])
    wait_for("team-b's edit served", lambda: gw.send("/b")[1].get("pod") == "echo-a", timeout=10)
    assert accepted(gw, "team-b")[0] == "True"
    # team-a's route is left out, with Envoy's message
    status = wait_for("team-a not accepted", lambda: accepted(gw, "team-a")[0] == "False" and accepted(gw, "team-a"))
    assert "does not match regex pattern" in status[1] and "Substitution" in status[1], status
    assert gw.send("/team-a/x")[0] == 404

    # team-a's fix: a new generation of its route, with a filter Envoy accepts
    fixed = team_a("/fixed/\\1")
    fixed[0]["spec"]["rules"][0]["filters"][0]["extensionRef"]["name"] = "team-a-rewrite-2"
    fixed[1]["metadata"]["name"] = "team-a-rewrite-2"
    write_atomically(gw.dir / "40-team-a.yaml", fixed)
    wait_for("team-a served", lambda: gw.send("/team-a/x")[1].get("path") == "/fixed/x", timeout=10)
    assert accepted(gw, "team-a")[0] == "True"
    assert gw.send("/b")[1].get("pod") == "echo-a"
