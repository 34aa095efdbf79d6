"""docs/spec-coverage.md is complete, true and current (tools/spec_coverage.py)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from toolloader import load_tool

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def coverage() -> ModuleType:
    module = load_tool("spec_coverage")
    return module


def test_every_crd_field_has_one_true_entry_and_the_document_is_current(coverage: ModuleType) -> None:
    entries = coverage.load_audit()
    assert coverage.problems(entries) == []
    assert coverage.OUTPUT.read_text() == coverage.render(entries), "run: python tools/spec_coverage.py"


def test_the_audit_check_finds_what_is_wrong(coverage: ModuleType) -> None:
    Entry = coverage.Entry
    entries = [e for e in coverage.load_audit() if not (e.kind == "HTTPRoute" and "spec.rules[].retry.*" in e.fields)]
    entries += [
        Entry("GRPCRoute", ("spec.rules[].name",), "full", "twice", (), ("golden:grpcroute",)),
        Entry("Gateway", ("nothing.here",), "full", "x", ("portico.translator.nope:f",), ("tests/test_x.py::test_y",)),
        Entry("Gateway", ("nothing.either",), "sometimes", "x", (), ("golden:simple-route",)),
        Entry("Gateway", ("nothing.tested",), "full", "x", (), ()),
    ]
    found = "\n".join(coverage.problems(entries))
    assert "HTTPRoute spec.rules[].retry.attempts: no audit entry" in found
    assert "GRPCRoute spec.rules[].name: 2 audit entries" in found
    assert "code portico.translator.nope:f" in found
    assert "test tests/test_x.py::test_y: no such file" in found
    assert "support 'sometimes'" in found
    assert "golden:simple-route sets none of these fields" in found
    assert "('nothing.tested',): no test" in found


def test_patterns(coverage: ModuleType) -> None:
    entry = coverage.Entry("HTTPRoute", ("spec.rules[].filters[].cors.**", "spec.rules[].timeouts.*"),
                           "full", "", (), ())
    assert entry.covers("spec.rules[].filters[].cors.allowOrigins[]")
    assert entry.covers("spec.rules[].timeouts.request")
    assert not entry.covers("spec.rules[].timeouts.request.extra")
    assert not entry.covers("spec.rulesX.filters[].cors.maxAge")
