"""docs/conditions.md is complete, true and current (tools/conditions_audit.py)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from toolloader import load_tool

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    module = load_tool("conditions_audit")
    if not module.GO_TYPES.is_dir():
        pytest.skip(f"Gateway API Go types not found at {module.GO_TYPES}")
    if not (module.KIT / "cases").is_dir():
        pytest.skip(f"conformance kit not found at {module.KIT} (its cases are evidence)")
    return module


def test_every_condition_constant_is_set_with_evidence_or_explained(audit: ModuleType) -> None:
    entries = audit.load_audit()
    assert audit.problems(entries) == []
    assert audit.OUTPUT.read_text() == audit.render(entries), "run: python tools/conditions_audit.py"


def test_the_go_sources_are_read_whole(audit: ModuleType) -> None:
    consts = {c.go_name: c for c in audit.go_constants()}
    assert len(consts) >= 100
    insecure = consts["GatewayReasonConfigurationChanged"]
    assert (insecure.owner, insecure.kind, insecure.value, insecure.types) == (
        "Gateway", "Reason", "ConfigurationChanged", ("InsecureFrontendValidationMode",))
    assert consts["RouteReasonIncompatibleFilters"].types == ("Accepted",)
    assert consts["GatewayConditionReady"].deprecated


def test_the_audit_check_finds_what_is_wrong(audit: ModuleType) -> None:
    entry = audit.AuditEntry
    entries = {k: v for k, v in audit.load_audit().items() if k != "GatewayClassReasonUnsupported"}
    entries["NoSuchConstant"] = entry(set=False, why="x")
    entries["GatewayReasonPending"] = entry(set=False, why="")
    entries["GatewayReasonListenersNotValid"] = entry(set=False, why="claimed unset, yet set")
    entries["ListenerSetReasonNotAllowed"] = entry(code=("portico.translator.nope:f",),
                                                   tests=("tests/test_x.py::test_y", "golden:nope", "kit:Nope"))
    found = "\n".join(audit.problems(entries))
    assert "GatewayClassReasonUnsupported (GatewayClass Reason Unsupported): no test shows it" in found
    assert "NoSuchConstant: no such constant" in found
    assert "GatewayReasonPending: not set, and no why" in found
    assert "GatewayReasonListenersNotValid: marked not set, but portico.translator.gateway:gateway_conditions" in found
    assert "code portico.translator.nope:f does not exist" in found
    assert "test tests/test_x.py::test_y: no such file" in found
    assert "test golden:nope: no such golden case" in found
    assert "test kit:Nope: not a passing kit case" in found
