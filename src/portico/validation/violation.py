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


SHOWN_CHARS = 100  # of an invalid value echoed in a message (and so in logs and /api/errors)


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` (an invalid value, as quoted in a message) cut to `limit` characters: a
    document's author must not fill the logs (or hide a line in them) with one value."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
