"""SecurityPolicy oidc: endpoints from the issuer's discovery document (as the control
loop hands it to the snapshot), fail closed until it is had; the memo and the incremental
path do not keep a translation made without it; the discovery module itself."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

from test_golden import load_snapshot

from portico import ir
from portico.objects import GATEWAY_GROUP, ObjectKey
from portico.oidc import Discovery, parse
from portico.translator import Snapshot, translate
from portico.translator.incremental import Incremental
from portico.translator.snapshot import Discovered

IN = Path(__file__).parent / "testdata" / "security-policies" / "in.yaml"
ISSUER = "https://accounts.example.com"
POLICY = ObjectKey("gateway.portico.dev", "SecurityPolicy", "default", "portal-discovered")
GOOD = Discovered("https://accounts.example.com/o/authorize", "https://tokens.example.com:8443/o/token")


def route_action(snapshot: Snapshot, path: str) -> ir.RouteAction:
    out = translate(snapshot)
    gw = out.gateways[ObjectKey(GATEWAY_GROUP, "Gateway", "default", "gw")]
    for li in gw.xds.listeners:
        for chain in li.filter_chains:
            for vh in chain.http.virtual_hosts if chain.http else ():
                for r in vh.routes:
                    if r.match.path is not None and r.match.path.value == path:
                        return r.action
    raise AssertionError(path)


def accepted(snapshot: Snapshot) -> tuple[str, str]:
    status = translate(snapshot).statuses[POLICY]
    cond = next(c for c in status["ancestors"][0]["conditions"] if c["type"] == "Accepted")
    return cond["status"], cond["message"]


def test_until_the_document_is_had_the_routes_answer_500_and_the_issuer_is_asked_for() -> None:
    snapshot = load_snapshot(IN)
    assert ISSUER in translate(snapshot).issuers
    # explicit endpoints need no discovery
    assert "https://idp.example.com" not in translate(snapshot).issuers
    assert route_action(snapshot, "/discovered").direct_status == 500
    assert accepted(snapshot)[0] == "False" and "being fetched" in accepted(snapshot)[1]


def test_discovered_endpoints_are_used_and_a_cluster_made_from_the_token_endpoint() -> None:
    snapshot = dataclasses.replace(load_snapshot(IN), discovered={ISSUER: GOOD})
    action = route_action(snapshot, "/discovered")
    assert action.direct_status is None and action.oidc is not None
    assert action.oidc.authorization_endpoint == GOOD.authorization_endpoint
    assert action.oidc.token_endpoint == GOOD.token_endpoint
    assert action.oidc.token_cluster == "oidc/default/portal-discovered/tokens.example.com:8443"
    gw = translate(snapshot).gateways[ObjectKey(GATEWAY_GROUP, "Gateway", "default", "gw")]
    cluster = next(c for c in gw.xds.clusters if c.name == action.oidc.token_cluster)
    assert cluster.dns and cluster.tls is not None and cluster.tls.sni == "tokens.example.com"
    assert accepted(snapshot) == ("True", "Accepted")
    # the redirect and logout defaults (Envoy Gateway's), openid always asked for
    assert action.oidc.redirect_path == "/oauth2/callback" and action.oidc.logout_path == "/logout"
    assert action.oidc.scopes == ("openid",)


def test_a_failed_discovery_is_reported() -> None:
    snapshot = dataclasses.replace(load_snapshot(IN), discovered={ISSUER: Discovered(error="GET x: HTTP 404")})
    assert route_action(snapshot, "/discovered").direct_status == 500
    assert accepted(snapshot) == ("False", f"oidc: discovery of {ISSUER}: GET x: HTTP 404")


def test_the_incremental_translation_sees_a_document_arrive() -> None:
    memo = Incremental()
    first = dataclasses.replace(load_snapshot(IN), memo=memo)
    assert route_action(first, "/discovered").direct_status == 500
    second = dataclasses.replace(first, discovered={ISSUER: GOOD})
    assert route_action(second, "/discovered").oidc is not None


def test_parse_checks_the_issuer_and_the_endpoints() -> None:
    doc = {"issuer": ISSUER, "authorization_endpoint": GOOD.authorization_endpoint,
           "token_endpoint": GOOD.token_endpoint}
    assert parse(ISSUER, json.dumps(doc).encode()) == GOOD
    assert "names issuer" in parse(ISSUER, json.dumps({**doc, "issuer": "https://evil"}).encode()).error
    assert "token_endpoint" in parse(ISSUER, json.dumps({**doc, "token_endpoint": "ftp://x"}).encode()).error
    assert parse(ISSUER, b"<html>").error == "the discovery document is not JSON"


def test_discovery_fetches_off_the_loop_once_wakes_it_and_keeps_a_good_document_on_failure() -> None:
    calls: list[str] = []
    answers = [GOOD, Discovered(error="boom")]

    async def fetch(issuer: str) -> Discovered:
        calls.append(issuer)
        return answers.pop(0)

    async def scenario() -> None:
        woken = asyncio.Event()
        d = Discovery(woken.set, fetch=fetch, ttl_s=0.0, retry_s=60.0)
        d.want([ISSUER])
        d.want([ISSUER])  # in flight: not fetched twice
        await asyncio.wait_for(woken.wait(), 5)
        assert calls == [ISSUER] and d.documents == {ISSUER: GOOD}
        woken.clear()
        d.want([ISSUER])  # due again (ttl 0): the refresh fails, the good document stays
        for _ in range(50):
            await asyncio.sleep(0.01)
            if len(calls) == 2:
                break
        await asyncio.sleep(0.01)
        assert calls == [ISSUER, ISSUER] and d.documents == {ISSUER: GOOD}
        d.want([ISSUER])  # retried only after retry_s
        await asyncio.sleep(0.01)
        assert len(calls) == 2
        d.want([])
        assert d.documents == {}

    asyncio.run(scenario())


GATEWAY_WIDE = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: portico
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Secret
metadata: {name: client, namespace: default}
stringData: {client-secret: s3cret}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{path: {type: PathPrefix, value: /discovered}}], backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: gateway.portico.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: login, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  oidc: {provider: {issuer: "https://accounts.example.com"}, clientID: app, clientSecret: {name: client}}
"""


def test_the_patching_path_sees_a_document_arrive_for_a_gateway_wide_policy(tmp_path: Path) -> None:
    """A Gateway's policy leaves route changes patchable (`translator.incremental`): a
    document that arrives must not be patched over as "nothing changed"."""
    (tmp_path / "in.yaml").write_text(GATEWAY_WIDE)
    memo = Incremental()
    first = dataclasses.replace(load_snapshot(tmp_path / "in.yaml"), memo=memo)
    assert route_action(first, "/discovered").direct_status == 500
    second = dataclasses.replace(first, discovered={ISSUER: GOOD})
    action = route_action(second, "/discovered")
    assert action.oidc is not None and action.oidc.token_endpoint == GOOD.token_endpoint
