"""The result type of validation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Violation:
    """One reason an object would be rejected by the API server.

    path: the field, e.g. ``spec.rules[0].matches[1].path.value`` ("" for the object).
    message: the CRD's own message for CEL rules, a Kubernetes-style one otherwise.
    rule: the CEL rule text, or the schema keyword (``maxLength``, ``required``...).
    """

    path: str
    message: str
    rule: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message
