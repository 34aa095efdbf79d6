"""Bursts of manifests parsed and admitted across worker processes (`provider.bulk`) give
exactly what the same work in-process gives."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from portico.provider.apiserver import APIServerEmulation
from portico.provider.bulk import BULK, BulkPool
from portico.provider.files import FileProvider


def route(i: int, valid: bool = True) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": f"r{i}", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [f"r{i}.example.com" if valid else "Bad_Host"],
                     "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]}}


def test_a_burst_across_processes_is_what_it_is_in_process(tmp_path: Path) -> None:
    count = BULK + 36
    for i in range(count):  # every 10th route invalid: its error, file and line, come back too
        (tmp_path / f"r{i:03d}.yaml").write_text(yaml.safe_dump(route(i, valid=i % 10 != 3)))
    (tmp_path / "list.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "List", "items": [route(1000 + i) for i in range(count)]}))
    pool = BulkPool(workers=2)
    try:
        results = []
        for p in (pool, BulkPool(workers=1)):
            counter = itertools.count()
            provider = FileProvider([tmp_path], pool=p)
            api = APIServerEmulation(provider, clock=lambda: "2026-01-01T00:00:00Z",
                                     new_uid=lambda c=counter: f"uid-{next(c)}", pool=p)
            event = provider.scan()
            results.append((event, api.admit(event)))
        assert pool.used == 2  # the files, then the checks
        (loaded, admitted), (loaded_alone, admitted_alone) = results
        assert loaded == loaded_alone and len(loaded.upserts) == 2 * count
        assert admitted == admitted_alone
        assert len(admitted.upserts) == 2 * count - 10 and len(admitted.errors) == 10
    finally:
        pool.close()
