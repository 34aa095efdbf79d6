"""Kubernetes API plumbing both Kubernetes-mode modules share (the provider's informers,
the infrastructure's generated objects, the status writer, leader election): a kinds-table
row as a lightkube resource, and the HTTP status of a failed request. Neutral ground, so
that no mode imports another for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx2 as httpx  # lightkube's HTTP client
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource


@dataclass(frozen=True)
class Kind:
    """A resource to watch: group, version, kind, plural, namespaced."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def resource(self) -> Any:
        """lightkube's generic resource class (made once per process: lightkube's
        registry refuses a second class for a core kind)."""
        if self not in _RESOURCES:
            create = create_namespaced_resource if self.namespaced else create_global_resource
            _RESOURCES[self] = create(self.group, self.version, self.kind, self.plural)
        return _RESOURCES[self]


_RESOURCES: dict[Kind, Any] = {}


def status_code(error: httpx.HTTPStatusError) -> int:
    if isinstance(error, ApiError) and error.status.code:
        return int(error.status.code)
    return error.response.status_code
