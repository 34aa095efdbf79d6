"""Golden translator tests: testdata/<case>/in.yaml → ir.yaml (per Gateway: its xDS IR
and its infrastructure description) and status.yaml.

Run `pytest tests/translator --update-golden` to rewrite the expectations,
then review the diff: the golden files are the specification by example.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from portico.infra.host import address_problem
from portico.models import Gateway, parse_object
from portico.objects import GATEWAY_GROUP, ObjectKey
from portico.translator import Placement, Snapshot, translate

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p.name for p in TESTDATA.iterdir() if (p / "in.yaml").exists())


def load_snapshot(path: Path) -> Snapshot:
    objects = {}
    for i, doc in enumerate(d for d in yaml.safe_load_all(path.read_text()) if d):
        doc.setdefault("metadata", {}).setdefault("creationTimestamp", f"2026-01-01T00:00:{i:02d}Z")
        obj = parse_object(doc)
        objects[obj.key] = obj
    gateways = sorted((k.namespace, k.name) for k in objects if k.kind == "Gateway")
    # as the host infrastructure places them, with addresses in order
    placements = {gw: Placement(f"127.10.0.{i + 1}", address_problem=problem(objects[gw_key(gw)]))
                  for i, gw in enumerate(gateways)}
    return Snapshot(objects, placements=placements)


def gw_key(gw: tuple[str, str]) -> ObjectKey:
    return ObjectKey(GATEWAY_GROUP, "Gateway", *gw)


def without_defaults(obj: Any) -> Any:
    """An IR dataclass as a dict of the fields that differ from their defaults: a golden
    file shows what its case sets, and a new IR field does not rewrite every golden."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            if f.default_factory is not dataclasses.MISSING and value == f.default_factory():
                continue
            out[f.name] = without_defaults(value)
        return out
    if isinstance(obj, (tuple, list)):
        return [without_defaults(v) for v in obj]
    if isinstance(obj, dict):
        return {k: without_defaults(v) for k, v in obj.items()}
    return obj


def as_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, width=120)


def check(path: Path, text: str, update: bool) -> None:
    if update or not path.exists():
        path.write_text(text)
    assert path.read_text() == text, f"{path} differs; rerun with --update-golden and review the diff"


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, update_golden: bool) -> None:
    out = translate(load_snapshot(TESTDATA / case / "in.yaml"))
    per_gateway = {str(k): {"xds": without_defaults(g.xds), "infra": without_defaults(g.infra)}
                   for k, g in sorted(out.gateways.items())}
    check(TESTDATA / case / "ir.yaml", as_yaml(per_gateway), update_golden)
    statuses = {str(k): v for k, v in sorted(out.statuses.items())}
    check(TESTDATA / case / "status.yaml", as_yaml(statuses), update_golden)


def test_translation_is_deterministic() -> None:
    for case in CASES:
        snap = load_snapshot(TESTDATA / case / "in.yaml")
        assert translate(snap) == translate(snap)


def problem(obj: object) -> str:
    assert isinstance(obj, Gateway)
    return address_problem(obj)
