"""Routes Envoy rejects are found and left out, so that one bad route never freezes others.

Envoy rejects (NACKs) a route configuration or virtual host as a whole: while the bad
route is in it, no later change to any route sharing it is applied. The translator
refuses what it knows Envoy refuses; this is the general rule for the rest. When Envoy
of a group NACKs its newest version, the suspects are the HTTPRoutes and GRPCRoutes
changed since the group's last ACKed version (every route when none was ACKed). They
are searched by pushing trial versions and watching Envoy's answer:

1. every suspect left out: a NACK means the cause is not a route that changed, and the
   search gives up (the configuration is pushed whole again, and held back as before);
2. then sets of suspects put back, halving a set that Envoy rejects (group testing):
   a set Envoy accepts is clean, a single suspect Envoy rejects is the offender.

Offenders are `Quarantined` at their generation, with Envoy's message: the translator
reports them Accepted=False (UnsupportedValue) and leaves them out of the configuration,
so everything else keeps converging; a new generation of the route (its fix) is
translated again. Suspects not yet put back are reported as held out during the search
(a few Envoy round trips). One search at a time; versions are per group.

Bookkeeping only (the store is read, never written): the control loop feeds it pushes,
ACKs and NACKs, and puts `entries()` into each snapshot (`Snapshot.quarantined`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from portico.objects import ObjectKey
from portico.store import Store
from portico.translator.snapshot import Quarantined

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 1024  # of Envoy's message in a condition (it may dump the whole rejected resource)
STILL = "still rejected: "


def summary(message: str) -> str:
    """Envoy's reason, without the dump of the resource it may precede it with."""
    message = message.removeprefix(STILL)
    marker = message.find("Proto constraint validation failed")
    if marker > 0:
        message = message[marker:]
    return message if len(message) <= MESSAGE_LIMIT else message[:MESSAGE_LIMIT - 3] + "..."


@dataclass
class Candidate:
    """A set of suspects to put back. `rejected`: Envoy's message when the set is known to
    hold an offender ("": unknown). `sibling`: the other half of a set known to hold one,
    which holds it if this half is accepted (with `parent`'s message)."""

    keys: list[ObjectKey]
    rejected: str = ""
    sibling: Candidate | None = None
    parent: str = ""


@dataclass
class Search:
    group: str
    message: str
    suspects: dict[ObjectKey, int]  # key -> generation
    queue: list[Candidate] = field(default_factory=list)  # sets still to put back, in order
    clean: set[ObjectKey] = field(default_factory=set)
    testing: Candidate | None = None  # the set put back by the trial (None: the baseline, none)
    trial: int = 0  # bumped per trial: a push made from an older trial's snapshot tests nothing
    version: int | None = None  # the version testing this trial


class Quarantine:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.held: dict[ObjectKey, Quarantined] = {}  # offenders, at their generation
        self.search: Search | None = None
        self._trials = 0
        self._building: int | None = None  # the trial of the snapshot being translated
        self._revisions: dict[str, dict[int, int | None]] = {}  # group -> version -> store revision
        self._acked: dict[str, int | None] = {}  # group -> store revision of its newest ACKed version
        self._newest: dict[str, int] = {}  # group -> newest version pushed
        self._gave_up: dict[str, dict[ObjectKey, int]] = {}  # group -> suspects found innocent

    # ------------------------------------------------------------ the snapshot

    def entries(self) -> dict[ObjectKey, Quarantined]:
        """What the next snapshot leaves out (offenders, and suspects not yet put back in a
        search); offenders whose route changed or is gone are released."""
        for key in [k for k, q in self.held.items() if self._generation(k) != q.generation]:
            log.info("%s changed: translated again (it was left out: Envoy rejected it)", key)
            del self.held[key]
        search = self.search
        self._building = search.trial if search is not None else None
        if search is None:
            return dict(self.held)
        back = set(search.testing.keys) if search.testing is not None else set()
        out = {k: Quarantined(g, f"held out while Portico finds the route Envoy rejects: {summary(search.message)}")
               for k, g in search.suspects.items() if k not in search.clean and k not in back}
        return {**out, **self.held}

    def pushed(self, group: str, version: int, revision: int | None) -> None:
        self._revisions.setdefault(group, {})[version] = revision
        self._newest[group] = version
        search = self.search
        if search is not None and search.group == group and search.version is None and self._building == search.trial:
            search.version = version

    def unpushed(self) -> str | None:
        """The group a trial needs a version of, when the sync that made it pushed none to it
        (its configuration did not change: Envoy's answer to the same content is wanted)."""
        search = self.search
        if search is not None and search.version is None and self._building == search.trial:
            return search.group
        return None

    # ------------------------------------------------------------ Envoy's answers

    def acked(self, group: str, version: int) -> bool:
        """True when a trial or the end of a search needs a sync."""
        revisions = self._revisions.get(group, {})
        if version in revisions:
            self._acked[group] = revisions[version]
        for old in [v for v in revisions if v <= version]:
            del revisions[old]
        search = self.search
        if search is None or search.group != group or search.version is None or version < search.version:
            return False
        return self._answer(accepted=True, message="")

    def nacked(self, group: str, version: int, message: str) -> bool:
        """True when a search started or went on (a sync is needed)."""
        search = self.search
        if search is not None:
            if search.group != group or search.version is None or version < search.version:
                return False
            return self._answer(accepted=False, message=message)
        if version != self._newest.get(group):
            return False  # a newer version is on its way (Envoy answers it too)
        found = {k: g for k, g in self._suspects(self._acked.get(group)).items() if k not in self.held}
        if not found or found == self._gave_up.get(group):
            return False
        log.warning("Envoy of %s rejected version %d: finding which of %d changed route(s) it rejects",
                    group, version, len(found))
        self.search = Search(group, message, found)
        self._next_trial(None)
        return True

    def forget_group(self, group: str) -> None:
        """`group` is gone: a search waiting for its Envoy's answer ends."""
        self._revisions.pop(group, None)
        self._acked.pop(group, None)
        self._newest.pop(group, None)
        self._gave_up.pop(group, None)
        if self.search is not None and self.search.group == group:
            self.search = None

    def _suspects(self, revision: int | None) -> dict[ObjectKey, int]:
        """The HTTPRoutes and GRPCRoutes changed since store revision `revision` (every one
        when None, or when the store's log no longer reaches back), with their generations."""
        routes = {**self.store.of_kind("HTTPRoute"), **self.store.of_kind("GRPCRoute")}
        keys = self.store.changes_since(revision) if revision is not None else None
        return {k: routes[k].metadata.generation for k in (routes if keys is None else keys) if k in routes}

    def _generation(self, key: ObjectKey) -> int | None:
        obj = self.store.get(key)
        return obj.resource.metadata.generation if obj is not None else None

    def _answer(self, accepted: bool, message: str) -> bool:
        search = self.search
        assert search is not None
        testing = search.testing
        if testing is None:  # the baseline: every suspect out
            if not accepted:
                log.warning("Envoy of %s rejects the configuration without the changed routes too: not a route's "
                            "fault; the configuration stays held back", search.group)
                self._gave_up[search.group] = search.suspects
                self.search = None
                return True
            search.queue = [Candidate(sorted(search.suspects), search.message)]
        elif accepted:
            search.clean |= set(testing.keys)
            if testing.sibling is not None:
                testing.sibling.rejected = testing.parent
        else:
            testing.rejected = message
            search.queue.insert(0, testing)
        return self._advance()

    def _advance(self) -> bool:
        """Put back the next set (halving one known to hold an offender), or end the search."""
        search = self.search
        assert search is not None
        while search.queue:
            candidate = search.queue.pop(0)
            if not candidate.rejected:
                self._next_trial(candidate)
                return True
            if len(candidate.keys) == 1:
                key = candidate.keys[0]
                self.held[key] = Quarantined(search.suspects[key], summary(candidate.rejected))
                log.error("%s is left out of the configuration: Envoy rejects it: %s", key,
                          summary(candidate.rejected))
                continue
            half = len(candidate.keys) // 2
            second = Candidate(candidate.keys[half:])
            search.queue.insert(0, second)
            self._next_trial(Candidate(candidate.keys[:half], sibling=second, parent=candidate.rejected))
            return True
        log.info("Envoy of %s: the search for rejected routes is over (%d left out)", search.group, len(self.held))
        self._gave_up.pop(search.group, None)
        self.search = None
        return True

    def _next_trial(self, candidate: Candidate | None) -> None:
        search = self.search
        assert search is not None
        self._trials += 1
        search.trial, search.version, search.testing = self._trials, None, candidate
