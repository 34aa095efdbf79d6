"""A full translation with an `Incremental` memo does not keep the previous state while
it builds the next (issue 30 item 6: the two side by side were the control plane's peak
under churn, +39 MiB at 5000 routes, which its RSS then kept)."""

from __future__ import annotations

from typing import Any

import pytest
from test_incremental_property import API, gateway, meta, route_doc, service_docs

from portico.models import parse_object
from portico.objects import ObjectKey, key_of
from portico.translator import Placement, Snapshot, pipeline, translate
from portico.translator.incremental import Incremental


def objects(endpoint_port: int) -> dict[ObjectKey, Any]:
    docs = [{"apiVersion": API, "kind": "GatewayClass", "metadata": meta("portico", None),
             "spec": {"controllerName": "portico.dev/gateway-controller"}},
            gateway("gw", None), *service_docs("a", "default", [endpoint_port]),
            route_doc({"kind": "HTTPRoute", "namespace": "default", "name": "r1", "gateway": "gw", "section": None,
                       "hostname": None, "path": "/", "service": "a", "service_namespace": None,
                       "rule_name": None, "stamp": 0})]
    return {key_of(d): parse_object(d) for d in docs}


def test_the_kept_state_is_released_before_the_pipeline_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    memo = Incremental()
    placements = {("default", "gw"): Placement("127.10.0.1")}
    first = translate(Snapshot(objects(8080), placements, memo=memo))
    kept = memo.state
    assert kept is not None and first.gateways

    run = pipeline.run
    seen: list[object] = []

    def spy(snapshot: Snapshot, rules: Any) -> Any:
        seen.append(memo.state)
        return run(snapshot, rules)

    monkeypatch.setattr(pipeline, "run", spy)
    # an EndpointSlice changed: not a change of routes alone, so the pipeline runs
    second = translate(Snapshot(objects(9090), placements, memo=memo))
    assert seen == [None], "the previous state was still kept while the next one was built"
    assert memo.state is not None and memo.state is not kept
    assert second != first
