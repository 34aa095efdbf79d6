"""Smoke test of the benchmark suite (bench/): every benchmark runs at a tiny size
and produces its table, summary and JSON. Nothing here asserts on timings."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    attached,
    changes,
    coldstart,
    groups,
    heap,
    kube_propagation,
    kube_sync,
    propagation,
    rds_split,
    scale,
    security,
    tools,
    traffic,
    translation,
    vhds_cost,
)
from bench.common import Report  # noqa: E402
from bench.docs import write_docs  # noqa: E402

pytestmark = pytest.mark.timeout(240)


def check(report: Report, tmp_path: Path) -> dict[str, object]:
    assert report.rows and report.summary
    path = report.emit(tmp_path)
    data = json.loads(path.read_text())
    assert data["benchmark"] == report.name and data["machine"]["cores"]
    return dict(data)


def test_propagation(tmp_path: Path) -> None:
    report = propagation.run([0, 5], additions=2)
    check(report, tmp_path)
    assert [(r["existing"], r["pattern"], r["served"]) for r in report.data["runs"]] == [
        (0, "paused", 2), (0, "back-to-back", 2), (5, "paused", 2), (5, "back-to-back", 2)]
    assert all(not r["unexpected"] for r in report.data["runs"])


def test_changes(tmp_path: Path) -> None:
    report = changes.run(changes=4, clients=2, settle_s=0.1, quiet_s=0.5)
    check(report, tmp_path)
    assert report.data["requests_sent"] > 0 and report.data["failures"] == []


def test_attached(tmp_path: Path) -> None:
    report = attached.run(count=5, poll_ms=10)
    check(report, tmp_path)
    assert report.data["run"]["create"]["attached_seen"][-1] == 5
    assert report.data["run"]["delete"]["attached_seen"][-1] == 0


def test_scale(tmp_path: Path) -> None:
    report = scale.run(namespaces=2, per_ns=3, rounds=2, churn_ns=1)
    check(report, tmp_path)
    assert len(report.data["rounds"]) == 2


def test_translation(tmp_path: Path) -> None:
    report = translation.run([5, 10], repeat=1)
    check(report, tmp_path)
    assert report.data["one_change"]["versions"] >= 2


def test_traffic(tmp_path: Path) -> None:
    if any(tools.which(t) is None for t in tools.PACKAGES):
        pytest.skip("nginx, haproxy or wrk not installed (make bench installs them)")
    report = traffic.run([1], seconds=1, rounds=1, ablation=False, pairs=1)
    check(report, tmp_path)
    assert {row[1] for row in report.rows} == {"direct", "portico", "envoy", "nginx", "haproxy"}


def test_security(tmp_path: Path) -> None:
    if any(tools.which(t) is None for t in ("nginx", "wrk")):
        pytest.skip("nginx or wrk not installed (make bench installs them)")
    report = security.run([1], seconds=1, rounds=1)
    check(report, tmp_path)
    assert [row[1] for row in report.rows] == ["open", "jwt", "jwt+authz", "api-key", "basic"]
    assert report.targets[0]["met"]  # every request answered 200


def test_groups(tmp_path: Path) -> None:
    report = groups.run(2)
    check(report, tmp_path)
    assert report.data["merged"]["envoys"] == 1 and report.data["per_gateway"]["envoys"] == 2


def test_docs_render(tmp_path: Path) -> None:
    check(translation.run([5], repeat=1), tmp_path)
    doc = write_docs(tmp_path / "benchmarks.md", tmp_path)
    text = doc.read_text()
    assert "6. Translation cost" in text and "results:end" in text


def test_kube_sync(tmp_path: Path) -> None:
    report = kube_sync.run(2, 3, quiet_s=0.5, timeout_s=120)
    data = check(report, tmp_path)
    assert data["data"]["status_writes"] >= 2 * 3  # every route got its status


def test_kube_propagation(tmp_path: Path) -> None:
    """Routes created through the double reach a real Envoy fed by the controller over mTLS;
    each addition has its standalone baseline and its timeline from the watch event on."""
    report = kube_propagation.run([0, 3], additions=2)
    check(report, tmp_path)
    assert [(r["existing"], r["pattern"], r["served"]) for r in report.data["runs"]] == [
        (0, "paused", 2), (0, "back-to-back", 2), (3, "paused", 2), (3, "back-to-back", 2)]
    assert all(not r["unexpected"] and not r["timeouts"] for r in report.data["runs"])
    assert len(report.data["standalone"]) == 4
    # the controller's log placed the changes whose batch its own watch event opened (a batch
    # opened by the echo of a status write is not attributed): the watch event after the write
    for r in report.data["runs"]:
        assert r["timelines"]
        assert all(t["watch"] >= 0 and t["ack"] >= 0 for t in r["timelines"])


def test_vhds_cost() -> None:
    """Portico's own resources for a few routes, served to Envoy in each variant: every update
    ACKed without a NACK, Envoy's time read from its log for each."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        dump = vhds_cost.portico_resources(5, Path(tmp))
    for variant in vhds_cost.VARIANTS:
        result = asyncio.run(vhds_cost.run_variant(dump, variant, changes=2, additions=1, requests=10))
        assert result["nacks"] == [] and result["envoy_samples"] == 2 and result["add_envoy_p50_ms"] is not None


def test_coldstart(tmp_path: Path) -> None:
    report = coldstart.run([0, 5], timeout=120)
    check(report, tmp_path)
    assert [(r["routes"], r["failures"]) for r in report.data["runs"]] == [(0, 0), (5, 0)]
    assert report.data["runs"][1]["served_s"] >= report.data["runs"][1]["healthz_s"]


def test_heap(capsys: pytest.CaptureFixture[str]) -> None:
    result = heap.run(2, 5, 5)
    # per namespace: the Namespace, and per route its Service, EndpointSlice and HTTPRoute
    assert result["objects"] == 2 + 2 * 5 * 3 + 2  # (+ the Gateway and its GatewayClass)
    assert result["heap_mib"] > 0 and "portico/store.py" in result["by_module"]
    assert "objects:" in capsys.readouterr().out


@pytest.mark.parametrize("mode", rds_split.MODES)
def test_rds_split(mode: str) -> None:
    """Each split serves the same hosts, takes changes and additions (Envoy ACKs, the log has
    Envoy's time for each); what scoped RDS alone cannot match is what the benchmark reports."""
    result = asyncio.run(rds_split.run_mode(mode, hosts=5, changes=2, additions=1, probe=True, requests=10))
    assert result["nacks"] == [] and result["envoy_samples"] == 2 and result["add_envoy_p50_ms"] is not None
    exact_only = mode == "srds"  # scope keys match bytes: no case folding, no fallback scope
    assert result["answers"] == {"Host with port": 503, "upper-case Host": 404 if exact_only else 503,
                                 "unknown Host": 404}
