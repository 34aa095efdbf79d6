"""SecurityPolicy in xDS: gaining JWT and authorization rules changes routes and the
jwt_authn config (ECDS), never the listener (no connection drain)."""

from __future__ import annotations

from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt
from xds_cases import PROVIDER, http_security

from portico.xds.jwt import JWT_FILTER
from portico.xds.resources import build


def test_a_route_gaining_jwt_and_rules_keeps_its_listener() -> None:
    before, after = build(http_security(with_policies=False)), build(http_security())
    assert before.listeners == after.listeners
    assert before.routes == after.routes  # (the route configuration header; routes travel by VHDS)
    assert before.virtual_hosts.keys() == after.virtual_hosts.keys()
    changed = [n for n in after.virtual_hosts if before.virtual_hosts[n].version != after.virtual_hosts[n].version]
    assert changed == ["127.30.0.3:18082/http/default:gw:http:api.example.com"]
    config = jwt.JwtAuthentication()
    after.extensions[JWT_FILTER].typed_config.Unpack(config)  # type: ignore[attr-defined]
    assert set(config.providers) == {PROVIDER.name, "default/web/local"}
    assert len(config.requirement_map) == 2  # required (one provider), optional (two)
    empty = jwt.JwtAuthentication()
    before.extensions[JWT_FILTER].typed_config.Unpack(empty)  # type: ignore[attr-defined]
    assert not empty.providers
