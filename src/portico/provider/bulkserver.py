"""What the bulk pool's forkserver loads before it forks any worker
(`portico.provider.bulk`): the parsing and validation modules (and the API-server
emulation's, whose `parse_and_check` the workers run), and the CRD schemas
compiled (their CEL rules too). Every worker forked from it has them in its copy of the
forkserver's memory: compiled once, not once per worker (0.25 s each, on the path of a
cold start: the first burst waits for the pool)."""

from __future__ import annotations

from portico.provider import apiserver, bulk
from portico.validation import compile_all

compile_all()

__all__ = ["apiserver", "bulk"]
