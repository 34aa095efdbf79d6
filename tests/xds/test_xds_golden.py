"""Golden tests: hand-built IRs -> Envoy resources (MessageToDict, sorted YAML)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import xds_cases
import yaml
from google.protobuf.json_format import MessageToDict

from portico.xds import build, resource_version
from portico.xds.resources import Builder

GOLDEN = Path(__file__).parent / "golden"


def render(case: str) -> str:
    resources = build(xds_cases.CASES[case]()).by_type()
    doc: dict[str, dict[str, Any]] = {
        type_url.rsplit("/", 1)[-1]: {
            name: json.loads(json.dumps(MessageToDict(msg))) for name, msg in sorted(by_name.items())
        }
        for type_url, by_name in resources.items()
    }
    return yaml.safe_dump(doc, sort_keys=True, width=120)


@pytest.mark.parametrize("case", sorted(xds_cases.CASES))
def test_golden(case: str, update_golden: bool) -> None:
    path = GOLDEN / f"{case}.yaml"
    got = render(case)
    if update_golden or not path.exists():
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got)
    assert got == path.read_text(), f"{path} differs; rerun with --update-golden if intended"


def test_build_is_deterministic() -> None:
    for make in xds_cases.CASES.values():
        first, second = build(make()).by_type(), build(make()).by_type()
        for type_url, by_name in first.items():
            assert {n: resource_version(m) for n, m in by_name.items()} == {
                n: resource_version(m) for n, m in second[type_url].items()
            }


def test_builder_reuses_unchanged_units_and_matches_build() -> None:
    """The memoizing Builder gives exactly build()'s output, whatever was built before."""
    builder = Builder()
    cases = [make() for make in xds_cases.CASES.values()]
    for previous, current in zip([None, *cases], [*cases, cases[0]], strict=True):
        if previous is not None:
            builder.build(previous)
        got, want = builder.build(current).by_type(), build(current).by_type()
        for type_url, by_name in want.items():
            assert {n: resource_version(m) for n, m in got[type_url].items()} == {
                n: resource_version(m) for n, m in by_name.items()
            }
    first = builder.build(cases[0])
    again = builder.build(xds_cases.http_basic())  # equal IR, new objects
    assert all(again.clusters[n] is m for n, m in first.clusters.items() if n != "portico/invalid-backend")
    assert all(again.routes[n] is m for n, m in first.routes.items())
    assert all(again.listeners[n] is m for n, m in first.listeners.items())
