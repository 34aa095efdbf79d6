"""The Gateway address pool (standalone contract: loopback, stable, honoured requests)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from portico.infra.addresses import AddressPool, listening_addresses


def test_assigned_address_is_in_the_pool_and_stable() -> None:
    pool = AddressPool("127.10.0.0/16")
    first = pool.assign(("ns", "gw"), [])
    assert first is not None
    assert ipaddress.ip_address(first) in ipaddress.ip_network("127.10.0.0/16")
    assert first not in ("127.10.0.0", "127.10.255.255")
    assert pool.assign(("ns", "gw"), []) == first
    other = pool.assign(("ns", "gw2"), [])
    assert other not in (None, first)


def test_addresses_in_use_on_the_machine_are_skipped() -> None:
    pool = AddressPool("127.0.1.0/29", in_use=lambda: {"127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.5"})
    got = {pool.assign(("ns", "a")), pool.assign(("ns", "b"))}
    assert got == {"127.0.1.4", "127.0.1.6"}
    assert pool.assign(("ns", "c")) is None


def test_listening_addresses_reads_proc_net(tmp_path: Path) -> None:
    head = "  sl  local_address rem_address   st tx_queue rx_queue\n"
    (tmp_path / "tcp").write_text(head + "   0: 0100007F:1F90 00000000:0000 0A 0\n"
                                         "   1: 0200007F:1F90 0100007F:1234 01 0\n")
    (tmp_path / "udp").write_text(head + "   0: 05000A7F:0035 00000000:0000 07 0\n")
    assert listening_addresses(str(tmp_path)) == {"127.0.0.1", "127.10.0.5"}
    assert listening_addresses(str(tmp_path / "missing")) == set()


def test_a_real_listener_is_seen() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.77", 0))
        s.listen()
        assert "127.0.0.77" in listening_addresses()


def test_requested_loopback_address_is_honoured() -> None:
    pool = AddressPool()
    assert pool.assign(("ns", "gw"), ["192.0.2.1", "127.0.0.250"]) == "127.0.0.250"
    assert pool.assign(("ns", "gw"), ["not an address"]) is None
    assert pool.assign(("ns", "gw"), ["::1"]) is None


def test_release_frees_the_address() -> None:
    pool = AddressPool("127.0.1.0/30", in_use=set)  # two usable hosts
    a = pool.assign(("ns", "a"))
    b = pool.assign(("ns", "b"))
    assert {a, b} == {"127.0.1.1", "127.0.1.2"}
    assert pool.assign(("ns", "c")) is None
    pool.release(("ns", "a"))
    assert pool.assign(("ns", "c")) == a


def test_requesting_an_address_releases_the_pool_one() -> None:
    pool = AddressPool("127.0.1.0/30", in_use=set)
    a = pool.assign(("ns", "a"))
    assert pool.assign(("ns", "a"), ["127.0.0.9"]) == "127.0.0.9"
    b, c = pool.assign(("ns", "b")), pool.assign(("ns", "c"))
    assert a is not None and {b, c} == {"127.0.1.1", "127.0.1.2"}


def test_pool_must_be_loopback() -> None:
    with pytest.raises(ValueError):
        AddressPool("10.0.0.0/8")


def test_pool_addresses_are_derived_from_the_gateway_identity() -> None:
    """A restarted control plane (a new pool) gives a Gateway the address it had."""
    first, second = AddressPool(in_use=set), AddressPool(in_use=set)
    assert first.assign(("ns", "gw")) == second.assign(("ns", "gw"))
    assert first.assign(("ns", "other")) != first.assign(("ns", "gw"))


def test_reserved_addresses_survive_a_restart_even_while_in_use() -> None:
    """A previous run's address is taken back although its (adopted) Envoy listens on it."""
    busy = {"127.10.3.4"}
    pool = AddressPool(in_use=lambda: busy)
    assert pool.reserve(("ns", "gw"), "127.10.3.4")
    assert pool.assign(("ns", "gw")) == "127.10.3.4"
    assert not pool.reserve(("ns", "other"), "127.10.3.4")  # one owner per address
    assert not pool.reserve(("ns", "x"), "127.99.0.1")  # outside the pool


def test_an_address_without_a_value_is_assigned_from_the_pool() -> None:
    """GatewaySpecAddress.value: "When a value is unspecified, an implementation
    SHOULD automatically assign an address matching the requested type"."""
    from portico.infra.host import HostInfrastructure
    from portico.models import parse_object

    gw = parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                       "metadata": {"name": "gw", "namespace": "ns"},
                       "spec": {"gatewayClassName": "portico", "addresses": [{"type": "IPAddress"}],
                                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}})
    infra = HostInfrastructure(AddressPool("127.10.0.0/16", in_use=set))
    placement = infra.placements({("ns", "gw"): gw})[("ns", "gw")]  # type: ignore[dict-item]
    assert placement.bind_address is not None
    assert ipaddress.ip_address(placement.bind_address) in ipaddress.ip_network("127.10.0.0/16")
    assert placement.address_problem == ""
