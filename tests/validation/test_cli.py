"""validate_paths / validate_command: reports located by file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from portico.cli.validate import validate_command, validate_paths
from portico.provider.manifests import node_line, parse_path

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
  namespace: default
spec:
  parentRefs:
  - name: gw
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: api
    backendRefs:
    - name: web
      port: 80
"""

GATEWAY_LIST = """\
apiVersion: v1
kind: List
items:
- apiVersion: gateway.networking.k8s.io/v1
  kind: Gateway
  metadata: {name: gw}
  spec:
    gatewayClassName: portico
    listeners:
    - {name: a, port: 80, protocol: HTTP}
    - {name: a, port: 81, protocol: HTTP}
"""

GOOD = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
"""


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("validate")(validate_command)
    app.command("other")(lambda: None)  # keep `validate` a sub-command
    return app


def test_reports_carry_file_line_and_path(tmp_path: Path) -> None:
    (tmp_path / "route.yaml").write_text(ROUTE + "---\n" + GATEWAY_LIST)
    reports = validate_paths([tmp_path])
    by_path = {r.path: r for r in reports}
    path_report = by_path["spec.rules[0].matches[0].path"]
    assert path_report.line == 11
    assert path_report.file.endswith("route.yaml")
    assert path_report.object == "HTTPRoute default/web"
    assert path_report.message.startswith("value must be an absolute path")
    listeners = by_path["spec.listeners"]
    assert listeners.message == "Listener name must be unique within the Gateway"
    assert listeners.line == 17 + 9  # `listeners:` in the second document (which starts on line 18)


def test_valid_files_have_no_reports(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(GOOD)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "bad.yaml").write_text(ROUTE)
    assert validate_paths([tmp_path]) == []


def test_yaml_errors_are_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text("a: [1,\n  b: c\n")
    reports = validate_paths([tmp_path])
    assert len(reports) == 1 and reports[0].rule == "yaml"


def test_json_manifests(tmp_path: Path) -> None:
    (tmp_path / "gc.json").write_text(
        json.dumps({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                    "metadata": {"name": "x"}, "spec": {"controllerName": "bad"}})
    )  # fmt: skip
    (r,) = validate_paths([tmp_path])
    assert r.path == "spec.controllerName" and r.rule == "pattern"


def test_command_text_and_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "route.yaml"
    bad.write_text(ROUTE)
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    runner = CliRunner()
    result = runner.invoke(_app(), ["validate", str(bad)])
    assert result.exit_code == 1
    assert "route.yaml:11" in result.output and "spec.rules[0].matches[0].path" in result.output
    result = runner.invoke(_app(), ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_command_json(tmp_path: Path) -> None:
    bad = tmp_path / "route.yaml"
    bad.write_text(ROUTE)
    result = CliRunner().invoke(_app(), ["validate", "-o", "json", str(bad)])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["valid"] is False and doc["objects"] == 1
    (err,) = doc["errors"]
    assert set(err) == {"file", "line", "path", "message", "rule", "object"}
    assert err["line"] == 11


@pytest.mark.parametrize(
    ("path", "segs"),
    [
        ("spec.rules[0].matches[1].path.value", ["spec", "rules", 0, "matches", 1, "path", "value"]),
        ('metadata.labels["a/b"]', ["metadata", "labels", "a/b"]),
        ("", []),
    ],
)
def test_parse_path(path: str, segs: list[str | int]) -> None:
    assert parse_path(path) == segs


def test_node_line_falls_back_to_parent() -> None:
    import yaml

    node = yaml.compose("spec:\n  rules:\n  - x: 1\n")
    assert node_line(node, ["spec", "rules", 0, "missing"], 1) == 3
    assert node_line(node, ["nothing"], 7) == 7


def test_run_and_validate_read_manifests_the_same_way(tmp_path: Path) -> None:
    """One loader: a broken document does not hide the ones after it, a `...List` kind
    contributes its items, and the YAML error has the same line and message in both."""
    from portico.provider.files import FileProvider

    text = "\n".join([
        "apiVersion: v1", "kind: Service", "metadata:", "  name: [broken", "",
        "---",
        "apiVersion: v1", "kind: ServiceList", "items:",
        "- apiVersion: gateway.networking.k8s.io/v1", "  kind: HTTPRoute",
        "  metadata: {name: r, namespace: default}", "  spec: {rules: not-a-list}", "",
    ])
    path = tmp_path / "m.yaml"
    path.write_text(text)
    reports = validate_paths([path])
    [yaml_error] = [r for r in reports if r.rule == "yaml"]
    [route_error] = [r for r in reports if r.path == "spec.rules"]
    assert route_error.line == 13 and route_error.object == "HTTPRoute default/r"
    event = FileProvider([str(tmp_path)]).scan()
    [loaded_error] = event.errors
    assert (loaded_error.line, loaded_error.message) == (yaml_error.line, yaml_error.message)
    assert [d.key.name for d in event.upserts] == ["r"]
