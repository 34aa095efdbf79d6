"""`portico convert`: Ingress in, Gateway API out; golden, accepted by `portico validate`,
translated with every route attached, and everything not converted listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from portico.ingress import convert
from portico.models import parse_object
from portico.translator import Placement, Snapshot, translate
from portico.validation import validate

HERE = Path(__file__).parent


def inputs() -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all((HERE / "in.yaml").read_text()) if d]


def test_conversion_is_golden_valid_and_served(update_golden: bool) -> None:
    result = convert(inputs())
    text = yaml.safe_dump_all(result.objects, sort_keys=False) + "".join(
        f"# not converted: {n}\n" for n in result.not_converted)
    golden = HERE / "out.yaml"
    if update_golden or not golden.exists():
        golden.write_text(text)
    assert golden.read_text() == text, "rerun with --update-golden and review the diff"
    for obj in result.objects:
        assert validate(obj) == [], obj["metadata"]
    assert result.not_converted == [
        "Ingress shop/shop: annotation nginx.ingress.kubernetes.io/proxy-body-size: not supported yet",
        "Ingress shop/shop path /buckets: a resource backend (Bucket): HTTPRoute backends are Services here",
        "Ingress shop/shop path /named: Service port 'http' by name needs the Service shop/elsewhere among the inputs",
    ]
    kinds = [o["kind"] for o in result.objects]
    assert kinds.count("Gateway") == 1 and kinds.count("HTTPRoute") == 3  # two hosts and the default backend
    # served: with the Services and the certificate's Secret, every route is accepted on its Gateway
    objects = {}
    for i, raw in enumerate([*inputs(), *result.objects]):
        if raw["kind"] == "Ingress":
            continue
        raw = {**raw, "metadata": {**raw["metadata"], "creationTimestamp": f"2026-01-01T00:00:{i:02d}Z"}}
        obj = parse_object(raw)
        objects[obj.key] = obj
    out = translate(Snapshot(objects, {("shop", "portico"): Placement("127.10.0.1")}))
    routes = {str(k): v for k, v in out.statuses.items() if k.kind == "HTTPRoute"}
    assert len(routes) == 3
    for key, status in routes.items():
        accepted = [c for p in status["parents"] for c in p["conditions"] if c["type"] == "Accepted"]
        assert accepted and all(c["status"] == "True" for c in accepted), key


def test_the_command(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "portico.cli", "convert", str(HERE / "in.yaml")],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("# not converted: Ingress shop/shop: annotation")
    (tmp_path / "converted.yaml").write_text(out)
    check = subprocess.run([sys.executable, "-m", "portico.cli", "validate", str(tmp_path / "converted.yaml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    as_json = subprocess.run([sys.executable, "-m", "portico.cli", "convert", "-o", "json", str(HERE / "in.yaml")],
                             capture_output=True, text=True, check=True).stdout
    assert '"notConverted"' in as_json
