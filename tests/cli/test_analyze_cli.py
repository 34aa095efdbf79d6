"""`portico analyze -f DIR`: what statuses report and what they do not (shadowed routes,
Services without ready endpoints, unused ReferenceGrants, policies targeting nothing),
on manifests translated offline as `config-dump -f` does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from portico import CONTROLLER_NAME
from portico.analyze import analyze
from portico.exposure import Exposure
from portico.standalone import offline

HERE = Path(__file__).parent
PROBLEMS = HERE / "testdata" / "analyze"
QUICKSTART = HERE.parents[1] / "examples" / "quickstart"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portico.cli", "analyze", *args], capture_output=True, text=True)


def test_each_problem_is_found_once_and_nothing_else() -> None:
    result = run("-f", str(PROBLEMS), "-o", "json")
    assert result.returncode == 1, result.stderr  # there are errors
    found = {(f["level"], f["code"], f["object"]) for f in json.loads(result.stdout)["findings"]}
    assert found == {
        ("error", "BackendNotFound", "HTTPRoute apps/broken"),  # from its status
        ("error", "TargetNotFound", "BackendTrafficPolicy apps/retries"),  # from its status
        ("error", "NoEndpoints", "Service apps/idle"),
        ("warning", "TargetNotFound", "BackendTLSPolicy apps/tls-to-nothing"),  # no status says it
        ("warning", "ShadowedRoute", "HTTPRoute apps/second"),
        ("warning", "UnusedReferenceGrant", "ReferenceGrant apps/forgotten"),
    }
    text = run("-f", str(PROBLEMS)).stdout
    assert "rule 0 match" in text and "HTTPRoute apps/first has the same match" in text


def test_a_clean_directory_passes() -> None:
    result = run("-f", str(QUICKSTART))
    assert result.returncode == 0 and result.stdout == "no problems found\n"


def route(name: str, created: str, hostnames: list[str], *paths: str) -> dict[str, object]:
    return {"kind": "HTTPRoute", "metadata": {"name": name, "namespace": "a", "creationTimestamp": created},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": hostnames,
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": p}}]} for p in paths]}}


def test_shadowing_follows_the_specs_precedence() -> None:
    objects = [route("b-old", "2020-01-01T00:00:00Z", ["x.example"], "/", "/"),  # its own rule 1 is shadowed
               route("a-new", "2021-01-01T00:00:00Z", ["x.example"], "/"),
               route("other-host", "2019-01-01T00:00:00Z", ["y.example"], "/")]  # another hostname: no conflict
    shadowed = [(f.object, f.message.split(" match")[0]) for f in analyze(objects, CONTROLLER_NAME, [])
                if f.code == "ShadowedRoute"]
    assert sorted(shadowed) == [("HTTPRoute a/a-new", "rule 0"), ("HTTPRoute a/b-old", "rule 1")]


def test_routes_a_public_gateway_exposes_without_authentication(tmp_path: Path) -> None:
    """Gateway annotation gateway.portico.dev/public: every route attached to it sending
    requests to a backend with no authentication (SecurityPolicy jwt/oidc/basicAuth/
    apiKeyAuth/extAuth, the most specific one; or an ExternalAuth filter) is a finding."""
    result = run("-f", str(HERE / "testdata" / "public"), "-o", "json")
    assert result.returncode == 0, result.stderr  # warnings only
    found = {f["object"]: f["message"] for f in json.loads(result.stdout)["findings"]
             if f["code"] == "UnauthenticatedPublicRoute"}
    assert set(found) == {
        "HTTPRoute apps/open",  # no policy (its redirect rule exposes nothing)
        "HTTPRoute apps/optional",  # an optional token authenticates no one
        "HTTPRoute apps/cidrs",  # its own policy (client addresses) wins over the listener's API keys
        "TCPRoute apps/db",
    }  # not: a required JWT, the listener's API keys, ExternalAuth, extAuth, the annotated website, a private Gateway
    assert found["HTTPRoute apps/open"].startswith("rule api on public Gateway apps/edge")
    # without the annotation, nothing is public
    text = (HERE / "testdata" / "public" / "all.yaml").read_text().replace("gateway.portico.dev/public", "x/y")
    (tmp_path / "all.yaml").write_text(text)
    result = run("-f", str(tmp_path), "-o", "json")
    assert not [f for f in json.loads(result.stdout)["findings"] if f["code"] == "UnauthenticatedPublicRoute"]


def translated(path: Path) -> tuple[list[dict[str, Any]], list[Exposure]]:
    """The manifests under `path` translated as `analyze -f` does: objects with statuses, exposures."""
    done = offline([str(path)])
    objects = done.objects()
    return objects, done.diagnostics.exposures(objects, CONTROLLER_NAME)


def test_the_topology_marks_the_exposed_routes() -> None:
    from portico.topology import topology

    objects, exposures = translated(HERE / "testdata" / "public")
    nodes = {n["id"]: n for n in topology(objects, CONTROLLER_NAME, exposures)["nodes"]}
    marked = {i for i, n in nodes.items() if n.get("unauthenticated")}
    assert marked == {"HTTPRoute/apps/open", "HTTPRoute/apps/optional", "HTTPRoute/apps/cidrs", "TCPRoute/apps/db"}
    assert nodes["Gateway/apps/edge"].get("public") and not nodes["Gateway/apps/internal"].get("public")


def test_a_listeners_own_policy_decides_for_a_route_on_every_listener(tmp_path: Path) -> None:
    """A route attached to the whole Gateway is exposed where any listener's policy (the
    more specific one) authenticates no one, even when the Gateway-wide policy does."""
    gateway = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "edge", "namespace": "apps", "annotations": {"gateway.portico.dev/public": "true"}},
               "spec": {"gatewayClassName": "portico", "listeners": [
                   {"name": "web", "port": 80, "protocol": "HTTP"}, {"name": "admin", "port": 8080, "protocol": "HTTP"}]}}
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "app", "namespace": "apps"},
             "spec": {"parentRefs": [{"name": "edge"}], "rules": [{"backendRefs": [{"name": "app", "port": 80}]}]}}

    def policy(name: str, section: str | None, spec: dict[str, object]) -> dict[str, object]:
        ref = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge",
               **({"sectionName": section} if section else {})}
        return {"apiVersion": "gateway.portico.dev/v1alpha1", "kind": "SecurityPolicy",
                "metadata": {"name": name, "namespace": "apps"}, "spec": {"targetRefs": [ref], **spec}}

    keys = {"apiKeyAuth": {"credentialRefs": [{"name": "keys"}]}}
    cidrs = {"authorization": {"defaultAction": "Deny", "rules": [
        {"action": "Allow", "principal": {"clientCIDRs": ["10.0.0.0/8"]}}]}}

    base = [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
             "spec": {"controllerName": CONTROLLER_NAME}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": "apps"},
             "spec": {"ports": [{"name": "http", "port": 80}]}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "apps"},
             "stringData": {"ops": "k-ops-0001"}}]

    def exposed(*policies: dict[str, object]) -> list[str]:
        (tmp_path / "all.yaml").write_text(yaml.safe_dump_all([*base, gateway, route, *policies]))
        objects, exposures = translated(tmp_path)
        found = analyze(objects, CONTROLLER_NAME, exposures)
        return [f.object for f in found if f.code == "UnauthenticatedPublicRoute"]

    assert exposed(policy("all", None, keys)) == []
    assert exposed(policy("all", None, keys), policy("admin", "admin", cidrs)) == ["HTTPRoute apps/app"]
    assert exposed(policy("web", "web", keys), policy("admin", "admin", keys)) == []
