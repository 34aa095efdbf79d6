"""/metrics on the admin address: translations, xDS pushes/ACKs/NACKs per group,
status writes and stored objects by kind and validity (prometheus_client)."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from test_admin import running
from test_control_loop import CLASS, GATEWAY, EmulatedStore, FakeXds, docs, host

from portico.admin import AdminServer
from portico.control import ControlLoop
from portico.metrics import Metrics
from portico.provider import DocumentError, ProviderEvent


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_what_the_control_plane_did() -> None:
    store = EmulatedStore()
    metrics = Metrics()
    metrics.watch_store(store)
    xds = FakeXds()
    loop = ControlLoop(store, host(), xds, metrics=metrics)
    loop.apply(docs(CLASS, GATEWAY))
    loop.apply(ProviderEvent(upserts=docs(CLASS, GATEWAY).upserts,
                             errors=(DocumentError("bad.yaml", 3, "invalid", object="HTTPRoute ns/broken"),)))
    assert loop.sync()
    loop.on_ack("portico", 1)
    loop.on_nack("portico", 1, "bad listener")
    xds.broken = True
    changed = docs(CLASS, {**GATEWAY, "spec": {**GATEWAY["spec"], "listeners": [
        {"name": "http", "port": 8081, "protocol": "HTTP"}]}})
    loop.apply(ProviderEvent(upserts=changed.upserts, errors=(
        DocumentError("bad.yaml", 3, "invalid", object="HTTPRoute ns/broken"),)))
    assert not loop.sync()  # the push fails: counted as a failed translation
    with running(AdminServer(store, metrics=metrics)) as base:
        got = scrape(base)
    assert got[("portico_translations_total", (("result", "ok"),))] >= 1
    assert got[("portico_translations_total", (("result", "failed"),))] == 1
    assert got[("portico_translation_duration_seconds_count", ())] == 2
    assert got[("portico_xds_pushes_total", (("group", "portico"),))] == 1
    assert got[("portico_xds_acks_total", (("group", "portico"),))] == 1
    assert got[("portico_xds_nacks_total", (("group", "portico"),))] == 1
    assert got[("portico_status_writes_total", ())] >= 2  # GatewayClass and Gateway
    assert got[("portico_objects", (("kind", "Gateway"), ("state", "valid")))] == 1
    assert got[("portico_objects", (("kind", "HTTPRoute"), ("state", "invalid")))] == 1


def test_no_metrics_without_a_registry() -> None:
    with running(AdminServer(EmulatedStore())) as base:
        try:
            urllib.request.urlopen(f"{base}/metrics", timeout=5)
        except urllib.error.HTTPError as e:
            assert e.code == 404
        else:
            raise AssertionError("expected 404")


def test_envoy_stats_are_served_per_group() -> None:
    from portico.infra.addresses import AddressPool
    from portico.infra.host import HostInfrastructure

    class Plane:
        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        def admin_get(self, path: str) -> tuple[int, bytes]:
            return (200, b"envoy_server_live 1\n") if path == "/stats/prometheus" else (404, b"")

    infra = HostInfrastructure(AddressPool(in_use=set), lambda group, replica: Plane())
    import asyncio
    asyncio.run(infra.reconcile({}))
    assert infra.envoy_stats("portico") == b"envoy_server_live 1\n" and infra.envoy_stats("other") is None
    server = AdminServer(EmulatedStore(), envoys=infra)
    with running(server) as base:
        with urllib.request.urlopen(f"{base}/metrics/envoy?group=portico", timeout=5) as r:
            assert r.read() == b"envoy_server_live 1\n"
        try:
            urllib.request.urlopen(f"{base}/metrics/envoy?group=other", timeout=5)
        except urllib.error.HTTPError as e:
            assert e.code == 404


def test_the_grafana_dashboard_queries_metrics_that_exist() -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    metrics = Metrics()
    metrics.watch_store(EmulatedStore())
    exposed = {f.name for f in text_string_to_metric_families(metrics.exposition().decode())}
    exposed |= {s.name for f in text_string_to_metric_families(metrics.exposition().decode()) for s in f.samples}
    for name in {n for e in exprs for n in re.findall(r"portico_[a-z_]+", e)}:
        family = name.removesuffix("_total").removesuffix("_bucket")
        assert name in exposed or family in exposed, name
