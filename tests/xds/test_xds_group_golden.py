"""xDS goldens per Envoy group: translator cases with several Gateways, grouped one
group per Gateway (as `--envoy-per-gateway` and Kubernetes mode do), each group's Envoy
resources in its own golden file. They show that a group holds only its own Gateway's
listeners, clusters and secrets. `pytest tests/xds --update-golden` rewrites them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf.json_format import MessageToDict

from portico.infra.addresses import AddressPool
from portico.infra.host import HostInfrastructure
from portico.translator import translate
from portico.xds import build
from portico.xds.resources import SECRET

sys.path.insert(0, str(Path(__file__).parents[1] / "translator"))
from test_golden import TESTDATA, load_snapshot  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "groups"
CASES = ["backendtlspolicy", "gateway-tls", "traffic-policies", "client-policies", "traffic-fallback"]


def rendered(case: str) -> dict[str, str]:
    groups = HostInfrastructure(AddressPool(in_use=set), per_gateway=True).groups(
        translate(load_snapshot(TESTDATA / case / "in.yaml")).gateways)
    out = {}
    for group, model in sorted(groups.items()):
        doc = {}
        for type_url, by_name in build(model).by_type().items():
            entries = {}
            for name, msg in sorted(by_name.items()):
                body = json.loads(json.dumps(MessageToDict(msg)))
                if type_url == SECRET:  # the golden shows which secrets, not the keys
                    body = {"name": name}
                entries[name] = body
            doc[type_url.rsplit("/", 1)[-1]] = entries
        out[group] = yaml.safe_dump(doc, sort_keys=True, width=120)
    return out


@pytest.mark.parametrize("case", CASES)
def test_group_golden(case: str, update_golden: bool) -> None:
    for group, text in rendered(case).items():
        path = GOLDEN / case / f"{group.replace('/', '_')}.yaml"
        if update_golden or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert text == path.read_text(), f"{path} differs; rerun with --update-golden if intended"


def test_a_group_holds_only_its_gateways_resources() -> None:
    groups = HostInfrastructure(AddressPool(in_use=set), per_gateway=True).groups(
        translate(load_snapshot(TESTDATA / "gateway-tls" / "in.yaml")).gateways)
    assert len(groups) > 1
    seen: dict[str, str] = {}
    for group, model in groups.items():
        for listener in model.listeners:
            assert listener.name not in seen, f"{listener.name} in {group} and {seen[listener.name]}"
            seen[listener.name] = group
        owners = {f"{ns}/{name}" for (_, ns, name), _ in model.gateway_listeners}
        assert owners <= {group}
