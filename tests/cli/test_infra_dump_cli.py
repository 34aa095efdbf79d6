"""`portico config-dump -f DIR --infra kubernetes`: the objects the controller would
apply for each Gateway, offline, by the same rendering (portico.infra.kubernetes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

from portico.infra.kubernetes import resource_name

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart"


def dump(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portico.cli", "config-dump", "-f", str(QUICKSTART), *args],
                          capture_output=True, text=True)


def test_each_gateway_gets_its_kubernetes_objects_offline() -> None:
    result = dump("--infra", "kubernetes")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {d["kind"] for d in docs} >= {"ServiceAccount", "ConfigMap", "Secret", "Deployment", "Service"}
    name = resource_name("default", "quickstart")
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"} == {name}
    for d in docs:
        assert d["metadata"]["ownerReferences"][0]["kind"] == "Gateway"
        if d["kind"] == "Secret":  # no key is made up and printed
            assert set(d["data"].values()) == {"<issued by the controller's CA at apply time>"}
        else:
            kubernetes_validate.validate(d, "1.33", strict=True)
    assert "&id" not in result.stdout
    assert dump("--infra", "kubernetes") .stdout == result.stdout  # deterministic, for review diffs


def test_an_unknown_gateway_or_infrastructure_is_an_error() -> None:
    assert dump("--infra", "kubernetes", "--gateway", "default/none").returncode == 1
    assert dump("--infra", "nomad").returncode == 2
