"""Golden translator tests: testdata/<case>/in.yaml → ir.yaml and status.yaml.

Run `pytest tests/translator --update-golden` to rewrite the expectations,
then review the diff: the golden files are the specification by example.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from portico.models import parse_object
from portico.translator import Snapshot, translate

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p.name for p in TESTDATA.iterdir() if (p / "in.yaml").exists())


def load_snapshot(path: Path) -> Snapshot:
    objects = {}
    for i, doc in enumerate(d for d in yaml.safe_load_all(path.read_text()) if d):
        doc.setdefault("metadata", {}).setdefault("creationTimestamp", f"2026-01-01T00:00:{i:02d}Z")
        obj = parse_object(doc)
        objects[obj.key] = obj
    gateways = sorted((k.namespace, k.name) for k in objects if k.kind == "Gateway")
    addresses = {gw: f"127.10.0.{i + 1}" for i, gw in enumerate(gateways)}
    return Snapshot(objects, addresses=addresses)


def as_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, width=120)


def check(path: Path, text: str, update: bool) -> None:
    if update or not path.exists():
        path.write_text(text)
    assert path.read_text() == text, f"{path} differs; rerun with --update-golden and review the diff"


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, update_golden: bool) -> None:
    out = translate(load_snapshot(TESTDATA / case / "in.yaml"))
    check(TESTDATA / case / "ir.yaml", as_yaml(dataclasses.asdict(out.ir)), update_golden)
    statuses = {str(k): v for k, v in sorted(out.statuses.items())}
    check(TESTDATA / case / "status.yaml", as_yaml(statuses), update_golden)


def test_translation_is_deterministic() -> None:
    for case in CASES:
        snap = load_snapshot(TESTDATA / case / "in.yaml")
        assert translate(snap) == translate(snap)
