"""Fixtures: one real data plane (ADS server + Envoy) and echo backends per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from xds_harness import EchoBackend, Plane


@pytest.fixture(scope="module")
def plane() -> Iterator[Plane]:
    p = Plane()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoBackend]:
    b = EchoBackend("one")
    yield b
    b.close()


@pytest.fixture(scope="module")
def echo2() -> Iterator[EchoBackend]:
    b = EchoBackend("two")
    yield b
    b.close()
