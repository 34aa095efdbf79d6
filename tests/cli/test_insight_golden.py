"""Golden outputs of `describe` (every Gateway and route) and `explain` (a request per
listener) on the translator's golden inputs, and no private key in any output of
describe, explain, config-dump or the topology."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portico import CONTROLLER_NAME
from portico.describe import describe
from portico.standalone import offline
from portico.topology import topology

TESTDATA = Path(__file__).resolve().parents[1] / "translator" / "testdata"
GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in TESTDATA.iterdir() if (p / "in.yaml").exists())
ROUTES = ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute")


def outputs(case: str) -> str:
    paths = [str(TESTDATA / case / "in.yaml")]
    translated = offline(paths)
    objects = translated.objects()
    lines: list[str] = []
    for obj in objects:
        if obj["kind"] in ("Gateway", *ROUTES):
            lines += ["$ describe"] + describe(obj, objects, CONTROLLER_NAME) + [""]
    loop = translated.loop
    outs = loop.last_translation.gateways if loop.last_translation is not None else {}
    for key, out in sorted(outs.items()):
        for listener in out.infra.listeners:
            if listener.protocol not in ("HTTP", "HTTPS"):
                continue
            hosts = [h for r in objects if r["kind"] in ("HTTPRoute", "GRPCRoute")
                     for h in (r.get("spec") or {}).get("hostnames", []) if "*" not in h][:1] or ["example.com"]
            result = translated.diagnostics.explain(listener.port, hosts[0], "/", gateway=f"{key.namespace}/{key.name}",
                                                    sni=hosts[0] if listener.protocol == "HTTPS" else None)
            lines += [f"$ explain {key.namespace}/{key.name} port {listener.port} host {hosts[0]} path /",
                      *result.get("lines", [result.get("error", "")]), ""]
    return "\n".join(lines)


@pytest.mark.parametrize("case", CASES)
def test_describe_and_explain_golden(case: str, update_golden: bool) -> None:
    text = outputs(case)
    path = GOLDEN / f"{case}.txt"
    if update_golden or not path.exists():
        path.write_text(text)
    assert path.read_text() == text, f"{path} differs; rerun with --update-golden and review the diff"
    assert "PRIVATE KEY" not in text


@pytest.mark.parametrize("case", ["https-listeners", "gateway-tls", "backendtlspolicy", "tls-certificate-problems"])
def test_no_private_key_in_dumps_or_topology(case: str) -> None:
    paths = [str(TESTDATA / case / "in.yaml")]
    assert "PRIVATE KEY" in (TESTDATA / case / "in.yaml").read_text()  # the input has keys
    translated = offline(paths)
    for fmt in ("ir", "xds"):
        assert "PRIVATE KEY" not in json.dumps(translated.diagnostics.config_dump(None, fmt))
    objects = translated.objects()
    assert "PRIVATE KEY" not in json.dumps(objects)
    assert "PRIVATE KEY" not in json.dumps(topology(objects, CONTROLLER_NAME))
