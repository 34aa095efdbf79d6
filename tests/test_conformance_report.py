"""docs/conformance-report.yaml and docs/conformance.md (tools/conformance_report.py):
the report claims exactly what GatewayClass status claims, every claimed feature is
shown by passing tests that exist, and the table is the report's."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from toolloader import load_tool

from portico.models import parse_object
from portico.translator import Snapshot, translate
from portico.translator.features import SUPPORTED_FEATURES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report_tool() -> ModuleType:
    return load_tool("conformance_report")


def test_the_committed_report_covers_every_claim_and_the_table_is_current(report_tool: ModuleType) -> None:
    report = yaml.safe_load(report_tool.REPORT.read_text())
    assert report["apiVersion"] == "gateway.networking.k8s.io/v1" and report["kind"] == "ConformanceReport"
    assert report_tool.problems(report, report_tool.load_evidence()) == []
    assert report_tool.TABLE.read_text() == report_tool.render(report), "run: python tools/conformance_report.py"


def test_gatewayclass_status_lists_the_claimed_features_sorted() -> None:
    gc = parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                       "metadata": {"name": "portico", "creationTimestamp": "2026-01-01T00:00:00Z"},
                       "spec": {"controllerName": "portico.dev/gateway-controller"}})
    status = translate(Snapshot({gc.key: gc})).statuses[gc.key]
    names = [f["name"] for f in status["supportedFeatures"]]
    assert names == sorted(SUPPORTED_FEATURES)  # "MUST be sorted in ascending alphabetical order"
    assert len(names) <= 64  # the CRD's maxItems


def test_every_non_mesh_feature_of_pkg_features_is_claimed(report_tool: ModuleType) -> None:
    if not report_tool.FEATURES_GO.is_dir():
        pytest.skip(f"pkg/features not found at {report_tool.FEATURES_GO}")
    text = "\n".join(p.read_text() for p in report_tool.FEATURES_GO.glob("*.go"))
    upstream = {name for _, name in report_tool.NAME_CONST.findall(text) if not name.startswith("Mesh")}
    assert upstream and upstream <= set(SUPPORTED_FEATURES)


def test_profiles_sort_tests_into_core_and_extended(report_tool: ModuleType, monkeypatch: Any) -> None:
    if not report_tool.FEATURES_GO.is_dir():
        pytest.skip(f"pkg/features not found at {report_tool.FEATURES_GO}")
    monkeypatch.setattr(report_tool, "kit_cases", lambda: {})
    kit = {"cases": [
        {"name": "Core", "result": "PASS", "features": ["Gateway", "HTTPRoute"]},
        {"name": "Cors", "result": "FAIL", "features": ["Gateway", "HTTPRoute", "HTTPRouteCORS"]},
        {"name": "Grpc", "result": "SKIP", "features": ["Gateway", "GRPCRoute"]},
        # upstream's feature gating: neither run nor counted
        {"name": "MixedNotSupported", "result": "SKIP", "features": ["Gateway", "TLSRoute"],
         "reason": "not run when the implementation claims TLSRouteModeMixed (as upstream)"},
    ]}
    tests = {"tests/x.py::test_a": "PASS"}
    report = report_tool.build(kit, tests, {"HTTPRouteHostRewrite": ["tests/x.py::test_a"]}, "now")
    http = next(p for p in report["profiles"] if p["name"] == "GATEWAY-HTTP")
    assert http["core"]["statistics"] == {"Passed": 1, "Failed": 0, "Skipped": 0}
    assert http["extended"]["statistics"] == {"Passed": 1, "Failed": 1, "Skipped": 0}
    assert http["extended"]["failedTests"] == ["Cors"] and http["extended"]["result"] == "failure"
    tls = next(p for p in report["profiles"] if p["name"] == "GATEWAY-TLS")
    assert tls["core"]["statistics"] == {"Passed": 0, "Failed": 0, "Skipped": 0}
    grpc = next(p for p in report["profiles"] if p["name"] == "GATEWAY-GRPC")
    assert grpc["core"]["result"] == "partial" and grpc["core"]["skippedTests"] == ["Grpc"]
    by_name = {f["name"]: f for f in report["features"]}
    assert by_name["HTTPRouteCORS"]["result"] == "failure"
    assert by_name["HTTPRouteHostRewrite"] == {"name": "HTTPRouteHostRewrite", "result": "success",
                                               "tests": ["tests/x.py::test_a"]}
    assert by_name["UDPRoute"]["result"] == "untested"
    found = report_tool.problems(report, {"NotAFeature": ["tests/nope.py::test_b"]})
    assert "feature HTTPRouteCORS: failure" in found
    assert "evidence for NotAFeature: not a claimed feature" in found
    assert "evidence for NotAFeature: tests/nope.py::test_b: no such file" in found
