"""Processes a test started and did not stop (an assertion failed before its `stop`) are
stopped when the test ends, so a failure never leaves a `portico run` and its Envoy behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import STARTED, stop


@pytest.fixture(autouse=True)
def stop_leftovers() -> Iterator[None]:
    # processes of module-scoped fixtures were started before this fixture and are theirs to stop
    first = len(STARTED)
    yield
    for proc in STARTED[first:]:
        stop(proc)
    del STARTED[first:]


@pytest.fixture(autouse=True, scope="session")
def stop_all_at_exit() -> Iterator[None]:
    yield
    for proc in STARTED:
        stop(proc)
