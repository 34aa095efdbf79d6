"""The Gateway address pool (standalone contract: loopback, stable, honoured requests)."""

from __future__ import annotations

import ipaddress

import pytest

from portico.addresses import AddressPool


def test_assigned_address_is_in_the_pool_and_stable() -> None:
    pool = AddressPool("127.10.0.0/16")
    first = pool.assign(("ns", "gw"), [])
    assert first is not None
    assert ipaddress.ip_address(first) in ipaddress.ip_network("127.10.0.0/16")
    assert first not in ("127.10.0.0", "127.10.255.255")
    assert pool.assign(("ns", "gw"), []) == first
    other = pool.assign(("ns", "gw2"), [])
    assert other not in (None, first)


def test_same_key_gets_the_same_address_in_a_new_pool() -> None:
    assert AddressPool().assign(("a", "b")) == AddressPool().assign(("a", "b"))


def test_requested_loopback_address_is_honoured() -> None:
    pool = AddressPool()
    assert pool.assign(("ns", "gw"), ["192.0.2.1", "127.0.0.250"]) == "127.0.0.250"
    assert pool.assign(("ns", "gw"), ["not an address"]) is None
    assert pool.assign(("ns", "gw"), ["::1"]) is None


def test_release_frees_the_address() -> None:
    pool = AddressPool("127.0.1.0/30")  # two usable hosts
    a = pool.assign(("ns", "a"))
    b = pool.assign(("ns", "b"))
    assert {a, b} == {"127.0.1.1", "127.0.1.2"}
    assert pool.assign(("ns", "c")) is None
    pool.release(("ns", "a"))
    assert pool.assign(("ns", "c")) == a


def test_requesting_an_address_releases_the_pool_one() -> None:
    pool = AddressPool("127.0.1.0/30")
    a = pool.assign(("ns", "a"))
    assert pool.assign(("ns", "a"), ["127.0.0.9"]) == "127.0.0.9"
    b, c = pool.assign(("ns", "b")), pool.assign(("ns", "c"))
    assert a is not None and {b, c} == {"127.0.1.1", "127.0.1.2"}


def test_pool_must_be_loopback() -> None:
    with pytest.raises(ValueError):
        AddressPool("10.0.0.0/8")
