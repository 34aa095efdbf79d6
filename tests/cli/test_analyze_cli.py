"""`portico analyze -f DIR`: what statuses report and what they do not (shadowed routes,
Services without ready endpoints, unused ReferenceGrants, policies targeting nothing),
on manifests translated offline as `config-dump -f` does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from portico import CONTROLLER_NAME
from portico.analyze import analyze

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
    shadowed = [(f.object, f.message.split(" match")[0]) for f in analyze(objects, CONTROLLER_NAME)
                if f.code == "ShadowedRoute"]
    assert sorted(shadowed) == [("HTTPRoute a/a-new", "rule 0"), ("HTTPRoute a/b-old", "rule 1")]
