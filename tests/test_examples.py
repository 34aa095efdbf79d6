"""The examples are true: every manifest under examples/ passes `portico validate`, and
translated together every Gateway is accepted and every route accepted with its
references resolved (so a user copying a recipe starts from something that works)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portico.cli.validate import validate_paths
from portico.infra.host import address_problem
from portico.models import Gateway
from portico.provider import ProviderEvent
from portico.provider.apiserver import APIServerEmulation
from portico.provider.files import FileProvider
from portico.store import Store
from portico.translator import Placement, Snapshot, translate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SETS = sorted(p for p in EXAMPLES.iterdir() if p.is_dir())


@pytest.mark.parametrize("directory", SETS, ids=[p.name for p in SETS])
def test_examples_validate_and_translate_cleanly(directory: Path) -> None:
    assert validate_paths([directory]) == []
    event: ProviderEvent = FileProvider([str(directory)]).scan()
    assert event.errors == ()
    store = Store()
    store.apply(APIServerEmulation().admit(event))
    objects = store.resources()
    gateways = sorted((k.namespace, k.name) for k, o in objects.items() if isinstance(o, Gateway))
    placements = {}
    for i, (ns, name) in enumerate(gateways):
        gw = next(o for k, o in objects.items() if isinstance(o, Gateway) and (k.namespace, k.name) == (ns, name))
        placements[(ns, name)] = Placement(f"127.10.9.{i + 1}", address_problem=address_problem(gw))
    out = translate(Snapshot(objects, placements))
    for key, status in out.statuses.items():
        conditions = status.get("conditions", []) + [c for p in status.get("parents", []) for c in p["conditions"]]
        bad = [c for c in conditions if c["type"] in ("Accepted", "ResolvedRefs", "Programmed")
               and c["status"] != "True"]
        assert not bad, f"{key}: {bad}"
        for listener in status.get("listeners", []):
            assert all(c["status"] == "True" for c in listener["conditions"] if c["type"] != "Conflicted"), (
                key, listener["name"])
    assert len(out.gateways) == len(gateways)


@pytest.mark.parametrize("kind", ["TCPRoute", "UDPRoute", "TLSRoute"])
def test_gateway_api_v1_6_l4_routes_are_served_as_v1(kind: str) -> None:
    """Gateway API v1.6: TCPRoute and UDPRoute (and TLSRoute) are v1."""
    from portico.models import TCPRoute, TLSRoute, UDPRoute, parse_object
    from portico.validation import validate

    spec: dict[str, object] = {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "s", "port": 80}]}]}
    if kind == "TLSRoute":
        spec["hostnames"] = ["a.example.com"]
    raw = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind, "metadata": {"name": "r", "namespace": "d"},
           "spec": spec}
    assert validate(raw) == []
    assert isinstance(parse_object(raw), {"TCPRoute": TCPRoute, "UDPRoute": UDPRoute, "TLSRoute": TLSRoute}[kind])
