"""Gateway API Duration (GEP-2257): e.g. "1h", "500ms", "1m30s"."""

from __future__ import annotations

import re

_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}


def parse_duration_ms(text: str) -> int | None:
    """Milliseconds, or None when the text is not a valid Duration."""
    if not re.fullmatch(r"([0-9]{1,5}(h|m|s|ms)){1,4}", text):
        return None
    return sum(int(n) * _UNIT_MS[u] for n, u in _PART.findall(text))


def parse_duration_s(text: str) -> int | None:
    """Whole seconds (rounded up, so a lifetime is never cut short), or None when invalid."""
    ms = parse_duration_ms(text)
    return None if ms is None else -(-ms // 1000)


def durations_problem(pairs: list[tuple[str, str | None]]) -> str:
    """Why the first of (field name, value) pairs that is set is not a Duration ("" if none)."""
    for name, value in pairs:
        if value is not None and parse_duration_ms(value) is None:
            return f"{name} {value!r} is not a duration"
    return ""
