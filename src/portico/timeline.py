"""A change's timeline, from when it arrived in the store to when Envoy ACKed it: one
log line per applied change and xDS group (`event: change_applied`), which
bench/propagation.py lines up with what a client saw.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("portico.control")


class Timeline:
    def __init__(self) -> None:
        self._received: float | None = None  # when the first change not yet translated arrived
        self._observed: float | None = None  # ... and when its provider saw it (ProviderEvent.observed)
        self._current: dict[str, float] = {}  # the sync under way: observed, received, translated
        self._pending: dict[str, tuple[int, dict[str, float]]] = {}  # group -> (version pushed, timeline)

    def received(self, observed: float | None) -> None:
        """A change arrived in the store (the first one since the last translation counts)."""
        if self._received is None:
            self._received = time.monotonic()
            self._observed = observed

    def translated(self, started: float, now: float) -> None:
        received, self._received = self._received, None
        observed, self._observed = self._observed, None
        self._current = {"received": received if received is not None else started, "started": started,
                         "translated": now}
        if observed is not None:
            self._current["observed"] = observed

    def pushed(self, group: str, version: int) -> None:
        self._pending[group] = (version, {**self._current, "pushed": time.monotonic()})

    def applied(self, group: str, version: int) -> None:
        """Envoy of `group` ACKed `version`: the timeline as milliseconds from when the change
        arrived in the store (received): before it, the provider's part (its event to the
        store: parsing, admission); then waiting for the loop (coalescing), translated,
        pushed, ACKed. `observed_at`/`acked_at` are time.monotonic() values."""
        pushed_version, times = self._pending.get(group, (0, {}))
        if not times or version < pushed_version:
            return
        del self._pending[group]
        start, acked = times["received"], time.monotonic()
        fields: dict[str, Any] = {
            "event": "change_applied", "group": group, "version": version,
            "started_ms": round((times.get("started", start) - start) * 1e3, 1),
            "translated_ms": round((times["translated"] - start) * 1e3, 1),
            "pushed_ms": round((times["pushed"] - start) * 1e3, 1),
            "acked_ms": round((acked - start) * 1e3, 1), "acked_at": acked}
        if "observed" in times:
            fields.update(provider_ms=round((start - times["observed"]) * 1e3, 1), observed_at=times["observed"])
        log.info("%s: version %d applied: translated +%.1f ms, pushed +%.1f ms, ACKed +%.1f ms", group, version,
                 fields["translated_ms"], fields["pushed_ms"], fields["acked_ms"], extra={"fields": fields})
