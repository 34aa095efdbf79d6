"""hack/kind-conformance.sh cannot run here (no Docker daemon, no kind): what it calls is
checked instead. Every portico command it runs exists, the values it derives (version,
image, Gateway API commit, features) are the ones deploy/ and the GatewayClass carry,
the GatewayClass it applies is accepted with those features, and the CI workflow runs it
and keeps the report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from portico import CONTROLLER_NAME, __version__
from portico.standalone import offline
from portico.translator.features import SUPPORTED_FEATURES

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "hack" / "kind-conformance.sh"
PORTICO = [sys.executable, "-m", "portico.cli"]


def bash(snippet: str) -> str:
    """A line of the script's own, run as it is written (ROOT set as the script sets it)."""
    entry = Path(sys.executable).parent / "portico"  # the CLI as pip installs it
    return subprocess.run(["bash", "-c", f'ROOT="{ROOT}"; PORTICO="{entry}"; PYTHON="{sys.executable}"; {snippet}'],
                          capture_output=True, text=True, check=True).stdout.strip()


def line(pattern: str) -> str:
    return next(ln.strip() for ln in SCRIPT.read_text().splitlines() if re.search(pattern, ln))


def test_the_script_parses_and_its_portico_commands_exist() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    commands = re.findall(r'"\$PORTICO" ([a-z][a-z -]*?)(?:$|\||\))', SCRIPT.read_text(), re.M)
    assert sorted(set(commands)) == ["install check"]
    for command in commands:
        subprocess.run([*PORTICO, *command.split(), "--help"], capture_output=True, check=True)


def test_derived_values_match_what_deploy_and_the_class_carry() -> None:
    version = bash(line(r"^VERSION=") + ' ; echo "$VERSION"')
    assert version == __version__
    image = bash(f'VERSION={version}; ' + line(r"^IMAGE=").split("#")[0] + ' ; echo "$IMAGE"')
    deployment = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "controller.yaml").read_text())
                      if d and d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image
    commit = bash(line(r"^GATEWAY_API_COMMIT=") + ' ; echo "$GATEWAY_API_COMMIT"')
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    features = bash(f"cd {ROOT} && " + line(r"^FEATURES=") + ' ; echo "$FEATURES"')
    assert features.split(",") == SUPPORTED_FEATURES
    assert "kubectl apply --server-side -k \"$ROOT/deploy\"" in SCRIPT.read_text()


def test_the_gatewayclass_it_applies_is_accepted_with_those_features() -> None:
    [gc] = offline([str(ROOT / "hack" / "gatewayclass.yaml")]).objects()
    assert gc["spec"]["controllerName"] == CONTROLLER_NAME
    assert any(c["type"] == "Accepted" and c["status"] == "True" for c in gc["status"]["conditions"])
    assert [f["name"] for f in gc["status"]["supportedFeatures"]] == sorted(SUPPORTED_FEATURES)


def test_the_workflow_runs_the_script_and_keeps_the_report() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "conformance-kind.yaml").read_text())
    steps = workflow["jobs"]["conformance"]["steps"]
    assert any(s.get("run") == "hack/kind-conformance.sh" for s in steps)
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == "conformance-report.yaml" and upload["if"] == "always()"
    assert "cannot run on the team's development machines" in (ROOT / "hack" / "README.md").read_text()
