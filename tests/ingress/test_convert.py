"""`portico convert`: Ingress in, Gateway API out. Golden per path type and annotation
family (cases/<case>.yaml -> cases/<case>.out.yaml), every output object valid for
`portico validate`, translated with every route and policy accepted, and everything
not converted listed with its reason."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from portico.ingress import comment, convert
from portico.models import parse_object
from portico.translator import Placement, Snapshot, translate
from portico.validation import validate

HERE = Path(__file__).parent
CASES = sorted(p.stem for p in (HERE / "cases").glob("*.yaml") if not p.stem.endswith(".out"))


def load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def golden_text(inputs: list[dict[str, Any]]) -> str:
    result = convert(inputs)
    return yaml.safe_dump_all(result.objects, sort_keys=False) + "".join(comment(n) for n in result.not_converted)


def check(path: Path, text: str, update: bool) -> None:
    if update or not path.exists():
        path.write_text(text)
    assert path.read_text() == text, f"{path.name}: rerun with --update-golden and review the diff"


@pytest.fixture(scope="module")
def certificate() -> dict[str, str]:
    cert = trustme.CA().issue_cert("shop.example.com")
    return {"tls.crt": base64.b64encode(b"".join(b.bytes() for b in cert.cert_chain_pems)).decode(),
            "tls.key": base64.b64encode(cert.private_key_pem.bytes()).decode()}


def served(inputs: list[dict[str, Any]], objects: list[dict[str, Any]],
           certificate: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The statuses of the converted objects, translated beside the inputs' Services
    and a certificate for every Secret a listener names."""
    secrets = {ref["name"] for o in objects if o["kind"] == "Gateway" for ls in o["spec"]["listeners"]
               for ref in (ls.get("tls") or {}).get("certificateRefs", [])}
    docs = [d for d in inputs if d["kind"] != "Ingress"] + objects + [
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": s, "namespace": "shop"}, "data": certificate} for s in sorted(secrets)]
    parsed = {}
    for i, raw in enumerate(docs):
        obj = parse_object({**raw, "metadata": {**raw["metadata"], "creationTimestamp": f"2026-01-01T00:00:{i:02d}Z"}})
        parsed[obj.key] = obj
    out = translate(Snapshot(parsed, {("shop", "portico"): Placement("127.10.0.1")}))
    return {f"{k.kind} {k.name}": v for k, v in out.statuses.items()}


def conditions(status: dict[str, Any]) -> list[dict[str, Any]]:
    entries = status.get("parents") or status.get("ancestors") or []
    return [c for e in entries for c in e["conditions"]]


@pytest.mark.parametrize("case", CASES)
def test_conversion_is_golden_valid_and_served(case: str, update_golden: bool, certificate: dict[str, str]) -> None:
    inputs = load(HERE / "cases" / f"{case}.yaml")
    check(HERE / "cases" / f"{case}.out.yaml", golden_text(inputs), update_golden)
    result = convert(inputs)
    for obj in result.objects:
        assert validate(obj) == [], obj["metadata"]
    statuses = served(inputs, result.objects, certificate)
    for obj in result.objects:
        if obj["kind"] in ("HTTPRoute", "TLSRoute", "BackendTrafficPolicy", "SecurityPolicy", "RateLimitPolicy",
                           "BackendTLSPolicy"):
            conds = conditions(statuses[f"{obj['kind']} {obj['metadata']['name']}"])
            assert conds and all(c["status"] == "True" for c in conds if c["type"] == "Accepted"), (obj, conds)


def test_the_whole_shop(update_golden: bool) -> None:
    """in.yaml (two hosts, TLS, a default backend) -> out.yaml, as before annotations."""
    check(HERE / "out.yaml", golden_text(load(HERE / "in.yaml")), update_golden)


def test_the_command(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "portico.cli", "convert", "--provider", "ingress-nginx",
                          str(HERE / "in.yaml")], capture_output=True, text=True, check=True).stdout
    assert out.startswith("# not converted: Ingress shop/shop path /buckets")
    (tmp_path / "converted.yaml").write_text(out)
    check_run = subprocess.run([sys.executable, "-m", "portico.cli", "validate", str(tmp_path / "converted.yaml")],
                               capture_output=True, text=True)
    assert check_run.returncode == 0, check_run.stdout + check_run.stderr
    as_json = subprocess.run([sys.executable, "-m", "portico.cli", "convert", "-o", "json", str(HERE / "in.yaml")],
                             capture_output=True, text=True, check=True).stdout
    assert '"notConverted"' in as_json
    report = json.loads(as_json)["report"]
    assert report[0]["ingress"] == "shop/shop" and report[0]["annotations"] == [
        {"annotation": "nginx.ingress.kubernetes.io/proxy-body-size", "outcome": "converted", "detail": ""}]
    unknown = subprocess.run([sys.executable, "-m", "portico.cli", "convert", "--provider", "traefik",
                              str(HERE / "in.yaml")], capture_output=True, text=True)
    assert unknown.returncode != 0 and "ingress-nginx" in unknown.stderr


def test_the_migration_report() -> None:
    """`convert --report`: per Ingress each annotation with its outcome, and a summary."""
    out = subprocess.run([sys.executable, "-m", "portico.cli", "convert", "--report",
                          str(HERE / "cases" / "proxy-ssl.yaml"), str(HERE / "cases" / "not-converted.yaml")],
                         capture_output=True, text=True, check=True).stdout
    assert "## Ingress shop/verified" in out and "## Ingress shop/odd" in out
    assert "| `nginx.ingress.kubernetes.io/proxy-ssl-secret` | converted |  |" in out
    assert ("| `nginx.ingress.kubernetes.io/configuration-snippet` | not converted | 'more_set_headers x: y;': "
            "raw nginx configuration is never run") in out
    assert "| `nginx.ingress.kubernetes.io/backend-protocol` | converted with a difference | ingress-nginx does " \
           "not verify" in out
    summary = out.split("## Summary", 1)[1]
    assert ("3 Ingress(es), 11 annotation(s): 6 converted, 1 converted with a difference, 4 not converted."
            in summary)
    assert "- [ ] shop/odd: `nginx.ingress.kubernetes.io/configuration-snippet`" in summary
    assert "- [ ] shop/odd: annotation example.com/owner: not an ingress-nginx annotation" in summary


def _ingress(annotations: dict[str, str], services: list[str]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "shop", "namespace": "shop", "annotations": annotations},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": "shop.example.com", "http": {"paths": [
                {"path": f"/{s}", "pathType": "Prefix", "backend": {"service": {"name": s, "port": {"number": 80}}}}
                for s in services]}}]}}


def test_default_backend_alone_is_a_fallback_of_every_rule() -> None:
    """ingress-nginx sends a location's requests to the default-backend Service (its first
    port) while the location's Service has no endpoints, for every path of the Ingress: a
    BackendTrafficPolicy fallback on the Ingress's routes, without a port."""
    out = convert([_ingress({"nginx.ingress.kubernetes.io/default-backend": "maintenance"}, ["web", "api"])])
    policies = [o for o in out.objects if o["kind"] == "BackendTrafficPolicy"]
    assert [p["spec"] for p in policies] == [{
        "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "shop-shop-example-com"}],
        "fallback": {"name": "maintenance"}}]
    assert all(validate(p) == [] for p in policies)
    (outcome, why), = [(o, w) for a, o, w in out.reports[0].annotations]
    assert outcome == "converted with a difference" and "does not exist answers 500" in why
    bad = convert([_ingress({"nginx.ingress.kubernetes.io/default-backend": "Not/A/Service"}, ["web"])])
    assert not [o for o in bad.objects if o["kind"] == "BackendTrafficPolicy"]
    assert [o for _, o, _ in bad.reports[0].annotations] == ["not converted"]
