"""Status conditions (metav1.Condition) as the Gateway API writes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Conditions carry no clock here (the translator is pure): the store stamps
# lastTransitionTime when a condition's status changes.
EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class Cond:
    type: str
    status: bool
    reason: str
    message: str = ""

    def render(self, generation: int) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": "True" if self.status else "False",
            "reason": self.reason,
            "message": self.message or self.reason,
            "observedGeneration": generation,
            "lastTransitionTime": EPOCH,
        }


def render_all(conds: list[Cond], generation: int) -> list[dict[str, Any]]:
    """One entry per type, first one wins (a later default never overrides an error)."""
    seen: dict[str, Cond] = {}
    for c in conds:
        seen.setdefault(c.type, c)
    return [c.render(generation) for c in seen.values()]
