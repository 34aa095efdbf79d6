"""SecurityPolicy in xDS: gaining JWT and authorization rules changes routes and the
jwt_authn config (ECDS), never the listener (no connection drain)."""

from __future__ import annotations

from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt
from xds_cases import OIDC, PROVIDER, http_security

from portico.xds.jwt import JWT_FILTER
from portico.xds.resources import build


def test_a_route_gaining_jwt_and_rules_keeps_its_listener() -> None:
    before, after = build(http_security(with_policies=False)), build(http_security())
    assert before.listeners == after.listeners
    assert not before.routes and not after.routes  # (exact hostnames only: scoped by Host)
    assert before.scopes.keys() == after.scopes.keys()
    changed = [n for n in after.scopes if before.scopes[n].version != after.scopes[n].version]
    assert changed == ["127.30.0.3:18082/http/api.example.com"]
    config = jwt.JwtAuthentication()
    after.extensions[JWT_FILTER].typed_config.Unpack(config)  # type: ignore[attr-defined]
    assert set(config.providers) == {PROVIDER.name, "default/web/local"}
    assert len(config.requirement_map) == 2  # required (one provider), optional (two)
    empty = jwt.JwtAuthentication()
    before.extensions[JWT_FILTER].typed_config.Unpack(empty)  # type: ignore[attr-defined]
    assert not empty.providers


def test_a_route_gaining_oidc_keeps_its_listener_and_its_secrets_travel_by_sds_only() -> None:
    from google.protobuf.json_format import MessageToJson

    from portico.dump import xds_dump

    before, after = build(http_security(with_policies=False)), build(http_security())
    assert before.listeners == after.listeners  # the composite filter is there, disabled, either way
    client, hmac = OIDC.secret_names()
    assert client not in before.secrets and hmac not in before.secrets
    assert after.secrets[client].generic_secret.secret.inline_string == OIDC.client_secret
    assert after.secrets[hmac].generic_secret.secret.inline_string == OIDC.hmac_secret
    # the route names them; neither value is anywhere but in the SDS secrets
    for kind in (after.listeners, after.routes, after.virtual_hosts, after.scopes, after.clusters):
        for msg in kind.values():
            text = MessageToJson(msg) if hasattr(msg, "DESCRIPTOR") else str(msg)
            assert OIDC.client_secret not in text and OIDC.hmac_secret not in text
    dumped = str(xds_dump({"g": http_security()}))
    assert client in dumped and OIDC.client_secret not in dumped and OIDC.hmac_secret not in dumped


def test_explain_names_the_checks_and_the_rule_that_decides() -> None:
    from portico.explain import Request, explain, render

    model = http_security()
    post = render(explain(model, Request(18082, "api.example.com", "/orders/1", "POST")), model)
    auth = [line for line in post if line.startswith(("authentication", "authorization"))]
    assert auth == [
        "authentication: JWT of default/api/idp (required; none valid: 401)",
        "authorization: rule no-interns of SecurityPolicy default/api denies (403) if: a token of default/api/idp; "
        "claims org.role in intern",
        "authorization: rule writers of SecurityPolicy default/api allows if: a token of default/api/idp; scopes orders:write",
        "authorization: rule 3 of SecurityPolicy default/api denies (403) if: client address in 10.0.0.0/8",
        "authorization: otherwise no rule matches: defaultAction of SecurityPolicy default/api denies (403)",
    ]
    login = render(explain(model, Request(18082, "api.example.com", "/app/home", "GET")), model)
    assert [line for line in login if line.startswith("authentication")] == [
        "authentication: OIDC login of SecurityPolicy default/login (no session: 302 to "
        "https://idp.example.com/authorize; callback /callback, logout /bye)"]
    get = render(explain(model, Request(18082, "api.example.com", "/orders", "GET",
                                        headers=(("X-Team", "b"), ("x-debug", "1")))), model)
    assert [line for line in get if line.startswith("authorization")][-1] == (
        "authorization: rule readers of SecurityPolicy default/api allows: it matches the request")
