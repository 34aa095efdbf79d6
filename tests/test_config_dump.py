"""Config dumps: the IR per Gateway and the Envoy resources per group, from a running
instance's admin API or from manifests translated offline; private keys never in them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_admin import get, running

from portico.admin import AdminServer
from portico.dump import redacted
from portico.standalone import offline

RECIPES = Path(__file__).resolve().parents[1] / "examples" / "recipes"
HTTPS = [str(RECIPES / "00-common.yaml"), str(RECIPES / "https.yaml")]


def test_offline_dump_of_the_ir_and_of_xds_keeps_keys_out() -> None:
    ir = offline(HTTPS).diagnostics.config_dump()
    assert list(ir["gateways"]) and all(set(g) == {"xds", "infra"} for g in ir["gateways"].values())
    text = json.dumps(ir)
    assert "<redacted>" in text and "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" in text
    xds = offline(HTTPS).diagnostics.config_dump(fmt="xds")
    resources = xds["groups"]["portico"]
    assert {"Listener", "Cluster", "Secret"} <= set(resources)
    assert "PRIVATE KEY" not in json.dumps(xds)
    only = next(iter(ir["gateways"]))
    assert list(offline(HTTPS).diagnostics.config_dump(gateway=only)["gateways"]) == [only]
    assert offline(HTTPS).diagnostics.config_dump(gateway="nowhere/none") == {"gateways": {}}


def test_redaction_reaches_every_depth() -> None:
    assert redacted({"a": [{"key_pem": "k", "cert_pem": "c"}], "privateKey": {"inlineBytes": "x"}}) == {
        "a": [{"key_pem": "<redacted>", "cert_pem": "c"}], "privateKey": "<redacted>"}


def test_the_admin_api_and_the_command() -> None:
    from portico.store import Store

    class Asked:
        def config_dump(self, gateway: str | None = None, fmt: str = "ir") -> dict[str, object]:
            return {"asked": [gateway, fmt]}

        def explain(self, *args: object) -> dict[str, object]:
            return {}

        def readiness(self) -> tuple[bool, dict[str, object]]:
            return True, {}

        def exposures(self, objects: object, controller: str) -> list[object]:
            return []

    server = AdminServer(Store(), diagnostics=Asked())
    with running(server) as base:
        assert get(base + "/api/config_dump?gateway=ns/gw&format=xds")[1] == {"asked": ["ns/gw", "xds"]}
        assert get(base + "/api/config_dump?format=yaml")[0] == 400
        out = subprocess.run([sys.executable, "-m", "portico.cli", "config-dump", "--admin-address",
                              base.removeprefix("http://"), "--gateway", "a/b"],
                             capture_output=True, text=True, check=True).stdout
        assert json.loads(out) == {"asked": ["a/b", "ir"]}
    offline = subprocess.run([sys.executable, "-m", "portico.cli", "config-dump", "--xds",
                              *[a for p in HTTPS for a in ("-f", p)]], capture_output=True, text=True, check=True)
    assert "Listener" in json.loads(offline.stdout)["groups"]["portico"]


def test_envoys_own_config_dump_is_redacted() -> None:
    from portico.store import Store

    leaked = {"configs": [{"dynamic_active_secrets": [{"secret": {"tls_certificate": {
        "certificate_chain": {"inline_string": "CERT"},
        "privateKey": {"inline_string": "-----BEGIN PRIVATE KEY-----"}}}}]}]}
    class Envoys:
        def envoy_stats(self, group: str) -> bytes | None:
            return None

        def envoy_admin(self, group: str, path: str) -> bytes | None:
            return json.dumps(leaked).encode() if group == "portico" else None

    server = AdminServer(Store(), envoys=Envoys())
    with running(server) as base:
        status, body, _ = get(base + "/api/config_dump?format=envoy")
        assert status == 200 and "PRIVATE KEY" not in json.dumps(body) and "CERT" in json.dumps(body)
        assert get(base + "/api/config_dump?format=envoy&group=other")[0] == 404


def test_security_policy_users_and_api_keys_are_not_in_dumps() -> None:
    """SecurityPolicy basicAuth users and apiKeyAuth keys reach Envoy, not the dumps."""
    policies = [str(Path(__file__).parent / "translator" / "testdata" / "security-policies" / "in.yaml")]
    for fmt in ("ir", "xds"):
        text = json.dumps(offline(policies).diagnostics.config_dump(fmt=fmt))
        assert "k-billing-0001" not in text and "Kd5ORu2LcaGO" not in text, fmt
        assert "<redacted>" in text
        # the oidc client secret (Secret portal-client), and the HMAC secret made from it
        assert "portal-s3cret" not in text and "6b7ce999a634bffb" not in text, fmt
        assert "default/portal-login" in text
