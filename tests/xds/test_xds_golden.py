"""Golden tests: hand-built IRs -> Envoy resources (MessageToDict, sorted YAML)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import xds_cases
import yaml
from google.protobuf.json_format import MessageToDict

from portico import ir
from portico.xds import build, resource_version
from portico.xds.resources import EXTENSION, ROUTE, SCOPED, SECRET, VHOST, Builder, vhds_name
from portico.xds.scopes import scope_name

GOLDEN = Path(__file__).parent / "golden"


def render(case: str) -> str:
    resources = build(xds_cases.CASES[case]()).by_type()
    doc: dict[str, dict[str, Any]] = {
        type_url.rsplit("/", 1)[-1]: {
            name: json.loads(json.dumps(MessageToDict(msg))) for name, msg in sorted(by_name.items())
        }
        for type_url, by_name in resources.items()
    }
    return yaml.safe_dump(doc, sort_keys=True, width=120)


@pytest.mark.parametrize("case", sorted(xds_cases.CASES))
def test_golden(case: str, update_golden: bool) -> None:
    path = GOLDEN / f"{case}.yaml"
    got = render(case)
    if update_golden or not path.exists():
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(got)
    assert got == path.read_text(), f"{path} differs; rerun with --update-golden if intended"


def test_build_is_deterministic() -> None:
    for make in xds_cases.CASES.values():
        first, second = build(make()).by_type(), build(make()).by_type()
        for type_url, by_name in first.items():
            assert {n: resource_version(m) for n, m in by_name.items()} == {
                n: resource_version(m) for n, m in second[type_url].items()
            }


def test_builder_reuses_unchanged_units_and_matches_build() -> None:
    """The memoizing Builder gives exactly build()'s output, whatever was built before."""
    builder = Builder()
    cases = [make() for make in xds_cases.CASES.values()]
    for previous, current in zip([None, *cases], [*cases, cases[0]], strict=True):
        if previous is not None:
            builder.build(previous)
        got, want = builder.build(current).by_type(), build(current).by_type()
        for type_url, by_name in want.items():
            assert {n: resource_version(m) for n, m in got[type_url].items()} == {
                n: resource_version(m) for n, m in by_name.items()
            }
    first = builder.build(cases[0])
    again = builder.build(xds_cases.http_basic())  # equal IR, new objects
    assert all(again.clusters[n] is m for n, m in first.clusters.items() if n != "portico/invalid-backend")
    assert all(again.routes[n] is m for n, m in first.routes.items())
    assert all(again.listeners[n] is m for n, m in first.listeners.items())


@pytest.mark.parametrize("catch_all", [False, True], ids=["scoped", "vhds"])
def test_builder_assembles_a_changed_route_configuration_like_build(catch_all: bool) -> None:
    """A route configuration's virtual hosts rebuilt around the unchanged first and last
    ones (the Builder's incremental assembly) equal those built from nothing: a virtual host
    changed, inserted, removed, at the start, middle and end. Exact hostnames only: one
    scope each; with a catch-all route too: VHDS."""
    model = xds_cases.http_basic()
    chain = model.listeners[0].filter_chains[0]
    assert chain.http is not None
    template = chain.http.virtual_hosts[0]

    def host(name: str, path: str = "/") -> ir.VirtualHost:
        route = ir.Route(f"{name}{path}", ir.RouteMatch(ir.PathMatch("Prefix", path)), template.routes[0].action)
        return ir.VirtualHost(name, (name,), (route,))

    def with_hosts(hosts: list[ir.VirtualHost]) -> ir.IR:
        everything = [*hosts, *([host("*")] if catch_all else [])]
        http = dataclasses.replace(chain.http, virtual_hosts=tuple(everything))
        listener = dataclasses.replace(model.listeners[0], filter_chains=(dataclasses.replace(chain, http=http),))
        return dataclasses.replace(model, listeners=(listener,))

    hosts = [host(f"h{i:02d}.example.com") for i in range(12)]
    steps = [
        lambda h: h[:5] + [host("h05.example.com", "/new")] + h[6:],  # one changed in the middle
        lambda h: h[:3] + [host("h03a.example.com")] + h[3:],  # one inserted
        lambda h: h[:7] + h[8:],  # one removed
        lambda h: [host("h00.example.com", "/x")] + h[1:],  # the first changed
        lambda h: h[:-1] + [host("h11.example.com", "/y")],  # the last changed
        lambda h: h[:2] + h[-2:],  # most removed
        lambda h: h,  # the very same
    ]
    builder = Builder()
    builder.build(with_hosts(hosts))
    for step in steps:
        hosts = step(hosts)
        got, want = builder.build(with_hosts(hosts)).by_type(), build(with_hosts(hosts)).by_type()
        for type_url in (ROUTE, VHOST, SCOPED):
            assert {n: m.SerializeToString(deterministic=True) for n, m in got[type_url].items()} == {
                n: m.SerializeToString(deterministic=True) for n, m in want[type_url].items()}
        config = chain.http.route_config_name
        if not catch_all:  # one scope per hostname, no route configuration, no VHDS
            assert sorted(got[SCOPED]) == sorted(scope_name(config, h.name) for h in hosts)
            assert all(m.name == n and m.key.fragments[1].string_key == n.rsplit("/", 1)[1]
                       for n, m in got[SCOPED].items())
            assert not got[ROUTE] and not got[VHOST]
            continue
        # every virtual host is a VHDS resource of its route configuration
        assert sorted(got[VHOST]) == sorted([vhds_name(config, h.name) for h in [*hosts, host("*")]])
        assert all(m.name == n for n, m in got[VHOST].items())
        assert not got[ROUTE][config].virtual_hosts and got[ROUTE][config].HasField("vhds")
        assert not got[SCOPED]


def test_builder_gathers_jwt_and_oidc_per_virtual_host_like_build() -> None:
    """The jwt_authn config (ECDS) and the OIDC secrets (SDS) follow the routes that name them
    when the Builder keeps unchanged virtual hosts and walks only the changed ones: a host
    gaining, losing and swapping a JWT requirement or an OIDC login, others kept as they were."""
    secured = xds_cases.http_security()
    chain = secured.listeners[0].filter_chains[0]
    assert chain.http is not None
    by_name = {r.name: r for r in chain.http.virtual_hosts[0].routes}
    jwt, optional, oidc, open_ = by_name["secured"], by_name["optional"], by_name["login"], by_name["open"]

    def host(i: int, route: ir.Route) -> ir.VirtualHost:
        return ir.VirtualHost(f"h{i}", (f"h{i}.example.com",), (route,))

    def with_hosts(hosts: list[ir.VirtualHost]) -> ir.IR:
        http = dataclasses.replace(chain.http, virtual_hosts=tuple(hosts))
        listener = dataclasses.replace(secured.listeners[0], filter_chains=(dataclasses.replace(chain, http=http),))
        return dataclasses.replace(secured, listeners=(listener,))

    hosts = [host(i, open_) for i in range(6)]
    steps = [
        lambda h: h[:2] + [host(2, jwt)] + h[3:],  # one gains a JWT requirement
        lambda h: h[:4] + [host(4, oidc)] + h[5:],  # another an OIDC login
        lambda h: h[:1] + [host(1, optional)] + h[2:],  # a second requirement, other providers
        lambda h: h[:2] + [host(2, open_)] + h[3:],  # the first loses its requirement
        lambda h: h[:4] + h[5:],  # the OIDC host removed
        lambda h: h,  # the very same
        lambda h: [host(i, open_) for i in range(6)],  # none left
    ]
    builder = Builder()
    builder.build(with_hosts(hosts))
    for step in steps:
        hosts = step(hosts)
        got, want = builder.build(with_hosts(hosts)).by_type(), build(with_hosts(hosts)).by_type()
        for type_url in (EXTENSION, SECRET):
            assert {n: m.SerializeToString(deterministic=True) for n, m in got[type_url].items()} == {
                n: m.SerializeToString(deterministic=True) for n, m in want[type_url].items()}, type_url
