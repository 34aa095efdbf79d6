"""The control loop, shared by both modes: provider events → store → translate →
xDS per group, and statuses back through a StatusWriter.

Changes are batched by the work in flight, not by a timer: a change that arrives
while the loop is idle is translated at once; those that arrive while a sync
(translation, push, statuses) is under way are all taken by the next one (`run`).
A Gateway or ListenerSet is reported `Programmed=True` only once the Envoy
group serving it has ACKed an xDS version containing its listeners
(`portico.status.programmed`). Everything mode-specific is behind the seams
(`portico.seams`): where Gateways are placed and how data planes run is the
Infrastructure's, where statuses go is the StatusWriter's.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Protocol

from portico import CONTROLLER_NAME
from portico.ir import IR
from portico.metrics import Metrics
from portico.models import Gateway, GatewayClass, InvalidObject, Other, Resource, model_for, parse_object
from portico.objects import GATEWAY_GROUP, ObjectKey
from portico.provider import ProviderEvent
from portico.seams import EventRecorder, Infrastructure, StatusWriter
from portico.status import ProgrammedGate, held_back, with_ours
from portico.status.programmed import PROGRAMMABLE
from portico.store import Store
from portico.translator import Snapshot, Translation, translate
from portico.translator.incremental import Incremental
from portico.translator.snapshot import GatewayName

log = logging.getLogger(__name__)

Translate = Callable[[Snapshot], Translation]


class Xds(Protocol):
    """What the loop needs of the xDS server (`portico.xds.server.XdsServer`)."""

    def update(self, group: str, ir: IR) -> int: ...

    def remove(self, group: str) -> None: ...


class StoreStatusWriter:
    """Standalone mode's StatusWriter: statuses live in the store (admin API, `portico status`)."""

    def __init__(self, store: Store, controller_name: str = CONTROLLER_NAME) -> None:
        self.store = store
        self.controller_name = controller_name

    def write(self, key: ObjectKey, status: dict[str, Any]) -> None:
        current = self.store.get(key)
        # other controllers' entries as they are now, not as the translation read them
        self.store.set_status(key, with_ours(current.status if current else None, status, self.controller_name))

    def release(self, keep: Iterable[ObjectKey]) -> None:
        self.store.release_statuses(keep)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a configuration is translated and published.

    Translation allocates hundreds of thousands of objects, most of which outlive a
    young-generation collection (the new IR, statuses), so the collector keeps
    promoting them and runs full collections over the whole heap (every stored
    object) in the middle of it: at 10k routes that was over half of the time of a
    sync. Reference counting still frees garbage at once; cycles wait until the end.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# kinds without a model of their own that are served all the same (`portico.ingress`)
SERVED_OTHER_KINDS = {("networking.k8s.io", "Ingress"), ("networking.k8s.io", "IngressClass")}


class ControlLoop:
    """Everything between the provider and the xDS server; no sockets of its own."""

    def __init__(self, store: Store, infra: Infrastructure, xds: Xds, writer: StatusWriter | None = None, *,
                 controller_name: str = CONTROLLER_NAME, translator: Translate = translate,
                 metrics: Metrics | None = None,
                 events: EventRecorder | None = None) -> None:
        self.store = store
        self.infra = infra
        self.xds = xds
        self.writer = writer or StoreStatusWriter(store, controller_name)
        self.metrics = metrics or Metrics()
        self.controller_name = controller_name
        self.translator = translator
        self.last_irs: dict[str, IR] = {}  # group -> the IR its Envoys were last sent
        self.last_translation: Translation | None = None
        self.syncs = 0  # translations attempted (for tests and logs)
        self.gate = ProgrammedGate()
        self._desired: dict[ObjectKey, dict[str, Any]] = {}  # translator statuses
        self._memo = Incremental()  # incremental translation (`portico.translator.incremental`)
        self._revision: int | None = None  # the store's object revision of the last snapshot
        self._complete = False  # the last publish wrote every status (a patch's may then write its changes)
        self._patched_since_full = 0  # patched translations since the last full collection (`_collect`)
        self._full_due = False  # a full collection waits for a quiet moment (`run`)
        self._written: dict[ObjectKey, str] = {}  # key -> uid of the object `_desired[key]` was written to
        self._dirty = asyncio.Event()
        self._ignored_kinds: set[tuple[str, str]] = set()
        self._ingress_gateways: dict[tuple[str, str], tuple[str, str]] = {}
        self._ingress_notes: set[tuple[ObjectKey | None, str]] = set()
        self._synthesized: set[ObjectKey] = set()  # objects made of Ingresses (`_ingress_resources`)
        self.events: EventRecorder | None = events
        self._received: float | None = None  # when the first change not yet translated arrived
        self._observed: float | None = None  # ... and when its provider saw it (ProviderEvent.observed)
        self._timeline: dict[str, float] = {}  # the sync under way: observed, received, translated
        self._pending: dict[str, tuple[int, dict[str, float]]] = {}  # group -> (version pushed, timeline)
        infra.on_change = self._dirty.set

    # ------------------------------------------------------------ inputs

    def apply(self, event: ProviderEvent) -> None:
        """A provider sync: update the store; translate soon if anything changed."""
        self._warn_ignored(event)
        changed = self.store.apply(event)
        if changed or event.initial:
            if self._received is None:
                self._received = time.monotonic()
                self._observed = event.observed
            self._dirty.set()

    def _warn_ignored(self, event: ProviderEvent) -> None:
        """Objects of kinds Portico does not serve (e.g. Ingress) are stored and listed, not
        translated: say so once per kind, naming the first one, rather than ignore them silently."""
        for doc in event.upserts:
            kind = (doc.key.group, doc.key.kind)
            if kind in self._ignored_kinds or model_for(str(doc.raw.get("apiVersion", "")), doc.key.kind) is not Other \
                    or kind in SERVED_OTHER_KINDS:
                continue
            self._ignored_kinds.add(kind)
            log.warning("%s objects (%s) are not served by Portico: they are stored and listed, nothing routes "
                        "them (first: %s at %s:%d)", doc.key.kind, doc.key.group or "core", doc.key,
                        doc.source.file, doc.source.line)

    def on_ack(self, group: str, version: int) -> None:
        """Envoy of `group` accepted xDS `version`: publish the Gateways it programs."""
        self.metrics.acks.labels(group).inc()
        self._log_applied(group, version)
        for key in self.gate.acked(group, version):
            if key in self._desired:
                self._hand(key, self._desired[key])

    def on_nack(self, group: str, version: int, message: str) -> None:
        log.error("Envoy of %s rejected configuration version %d: %s", group, version, message)
        self.metrics.nacks.labels(group).inc()
        for key in self.gate.nacked(group, version, message):
            if key in self._desired:
                self._hand(key, held_back(self._desired[key], self.gate.held_message(key)))
        if self.infra.rejected(group, message):
            self._dirty.set()  # e.g. listeners that cannot bind become PortUnavailable

    def config_dump(self, gateway: str | None = None, fmt: str = "ir") -> dict[str, Any]:
        """The last translation per Gateway ("ir") or the Envoy resources per xDS group ("xds"),
        private keys redacted (`portico.dump`); `gateway` "namespace/name" narrows it."""
        from portico.dump import ir_dump, xds_dump

        outputs = self.last_translation.gateways if self.last_translation is not None else {}
        if fmt == "xds":
            wanted = {k: out for k, out in outputs.items() if gateway in (None, f"{k.namespace}/{k.name}")}
            groups = self.infra.groups(wanted) if gateway is not None else self.last_irs
            return {"groups": xds_dump(groups)}
        return {"gateways": ir_dump(outputs, gateway)}

    def explain(self, port: int, host: str, path: str = "/", method: str = "GET",
                headers: tuple[tuple[str, str], ...] = (), sni: str | None = None,
                gateway: str | None = None, listener: str | None = None) -> dict[str, Any]:
        """`portico explain` on the last translation: {"gateway", "lines"} or {"error"}; the
        listener by port, or by name (`listener`)."""
        from portico.explain import Request, explain, render

        outputs = self.last_translation.gateways if self.last_translation is not None else {}
        for key, out in sorted(outputs.items()):
            if gateway not in (None, f"{key.namespace}/{key.name}"):
                continue
            bind = next((ls.bind_port for ls in out.infra.listeners
                         if (ls.name == listener if listener else ls.port == port)), None)
            if bind is None:
                continue
            answer = explain(out.xds, Request(bind, host, path, method, headers, sni))
            return {"gateway": f"{key.namespace}/{key.name}", "lines": render(answer, out.xds)}
        where = f"has a listener {listener}" if listener else f"listens on port {port}"
        return {"error": f"no Gateway{' ' + gateway if gateway else ''} {where}"}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready once a configuration was translated and every Envoy group has ACKed its
        newest version (`/readyz`); the details name each group's state."""
        groups = {}
        for group in sorted(self.last_irs):
            state = self.gate.group(group)
            groups[group] = "ready" if state.acked >= state.version else (
                state.nack_message or f"waiting for version {state.version}")
        ready = self.last_translation is not None and all(v == "ready" for v in groups.values())
        return ready, {"groups": groups}

    # ------------------------------------------------------------ the loop

    async def run(self, events: AsyncIterator[ProviderEvent], ready: Callable[[], None] | None = None) -> None:
        """Consume `events` and translate until cancelled; `ready` after the first sync.
        A provider that fails ends the loop with a RuntimeError at once: a control plane
        that no longer sees changes must not look healthy.

        One sync at a time, started as soon as there is a change: no timer. The consumer
        applies changes to the store while a sync is under way (the translation runs in a
        thread), and all of them go into the next sync. So a change made while the loop is
        idle waits for nothing, and a burst costs as many translations as fit into it one
        after another, never one per change (issue 30: a fixed 50 ms sleep after every
        sync was most of the latency of changes made one after another)."""
        consumer = asyncio.create_task(self._consume(events))
        consumer.add_done_callback(lambda _: self._dirty.set())
        try:
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                if consumer.done():
                    self._raise_if_failed(consumer)
                with gc_paused():
                    if await self.sync_async():
                        await self._reconcile()
                    if ready is not None:
                        ready()
                        ready = None
                    # One turn of the event loop before the garbage of the sync is collected (it
                    # blocks the event loop): the xDS streams the push woke take the new
                    # configuration, and the consumer applies the changes already queued.
                    await asyncio.sleep(0)
                if self._full_collection_due() and not await self._quiet(self.FULL_COLLECTION_QUIET):
                    continue  # a change came first: translated at once, the collection waits
                self._collect()
        finally:
            consumer.cancel()

    # a full collection (unfrozen) at least every this many patched translations
    FULL_COLLECTION_EVERY = 500
    # ... made once no change came for this long (seconds): it blocks the event loop (a
    # second at 10k routes), which the xDS streams need to send the new configuration
    FULL_COLLECTION_QUIET = 0.05

    def _full_collection_due(self) -> bool:
        """After each sync: is a full collection due (`_collect`)? It stays due until made."""
        translation = self.last_translation
        patched = translation is not None and translation.status_changes is not None
        self._patched_since_full = self._patched_since_full + 1 if patched else 0
        self._full_due = self._full_due or not patched or not self._patched_since_full % self.FULL_COLLECTION_EVERY
        return self._full_due

    async def _quiet(self, seconds: float) -> bool:
        """True once `seconds` passed without a change; False as soon as one arrives."""
        try:
            await asyncio.wait_for(self._dirty.wait(), seconds)
        except TimeoutError:
            return True
        return False

    def _collect(self) -> None:
        """The garbage of a sync, once the xDS streams have sent the new configuration.

        After a full translation everything is collected, then what survives (the store,
        the state the next patch works on) is frozen: later collections skip it, so one
        after a patched translation costs what the patch allocated, not a scan of every
        object (at 10k routes a full collection blocks the event loop for over a second,
        the p99 of a route change). Refcounting frees what a patch replaces; cyclic garbage
        among frozen objects waits for the next full translation, or at most
        FULL_COLLECTION_EVERY patches."""
        if not self._full_due:
            gc.collect(1)
            return
        self._full_due = False
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    @staticmethod
    def _raise_if_failed(consumer: asyncio.Task[None]) -> None:
        error = None if consumer.cancelled() else consumer.exception()
        if error is not None:
            log.critical("the provider failed; no further change can be applied", exc_info=error)
            raise RuntimeError(f"the provider failed: {type(error).__name__}: {error}") from error

    async def _consume(self, events: AsyncIterator[ProviderEvent]) -> None:
        async for event in events:
            self.apply(event)

    async def _reconcile(self) -> None:
        if self.last_translation is None:
            return
        try:
            await self.infra.reconcile(self.last_translation.gateways)
        except Exception:
            log.exception("infrastructure reconciliation failed; retrying on the next change")

    async def sync_async(self) -> bool:
        """Translate off the event loop (large configurations take a while); push and
        write statuses on it. False when the translation failed."""
        try:
            with gc_paused():
                snapshot = self.snapshot()
                started = time.monotonic()
                translation = await asyncio.to_thread(self.translator, snapshot)
                self._translated(started, translation)
                self.publish(translation)
        except Exception:
            return self._counted(ok=False)
        return self._counted(ok=True)

    def sync(self) -> bool:
        """`sync_async` without a thread (tests, tools)."""
        try:
            with gc_paused():
                snapshot = self.snapshot()
                started = time.monotonic()
                translation = self.translator(snapshot)
                self._translated(started, translation)
                self.publish(translation)
        except Exception:
            return self._counted(ok=False)
        return self._counted(ok=True)

    def _counted(self, ok: bool) -> bool:
        """A sync's outcome, counted (and a failure logged, from within its except)."""
        self.metrics.translations.labels("ok" if ok else "failed").inc()
        if not ok:
            log.exception("translation failed; the last good configuration keeps serving")
        return ok

    # ------------------------------------------------------------ steps

    def snapshot(self) -> Snapshot:
        self.syncs += 1
        synthesized = self._ingress_resources()
        resources = {**synthesized, **self.store.resources()} if synthesized else self.store.resources()
        revision, since = self.store.object_revision, self._revision
        self._revision = revision
        # what changed since the last snapshot (the memo's delta path); objects made of
        # Ingresses are new on every snapshot, so with them the memo compares for itself
        keys = self.store.changes_since(since) if since is not None and not synthesized else None
        changes = (since, keys) if since is not None and keys is not None else None
        return Snapshot(resources, self.infra.placements(self.our_gateways(synthesized)), self.controller_name,
                        memo=self._memo, revision=revision, changes=changes)

    def _ingress_resources(self) -> dict[ObjectKey, Resource]:
        """Ingress objects of ours, as the Gateway API objects that serve them (`portico.ingress`)."""
        from portico.ingress import serve

        if not self.store.of_kind("Ingress"):  # the common case, without a pass over every object
            self._ingress_gateways, self._synthesized = {}, set()
            return {}
        raws = [o.raw for k, o in self.store.objects().items() if k.kind in ("Ingress", "IngressClass", "Service")]
        served = serve(raws, self.controller_name)  # nothing to do without an Ingress of ours
        self._ingress_gateways = served.gateway_of
        out: dict[ObjectKey, Resource] = {}
        for raw in served.objects:
            try:
                obj = parse_object(raw)
            except InvalidObject as e:  # e.g. a host that is no hostname: that object is left out
                self._ingress_note(None, f"{raw['kind']} {raw['metadata']['name']} from an Ingress: {e}")
                continue
            out[obj.key] = obj
        self._synthesized = set(out)
        for (ns, name), notes in served.notes_of.items():
            for note in notes:
                self._ingress_note(ObjectKey("networking.k8s.io", "Ingress", ns, name), note)
        return out

    def _ingress_note(self, key: ObjectKey | None, note: str) -> None:
        """What of an Ingress is not served, said once: in the log, and as a Warning Event
        on the Ingress where there are Events (Kubernetes mode)."""
        if (key, note) in self._ingress_notes:
            return
        self._ingress_notes.add((key, note))
        log.warning("Ingress %s not fully served: %s", f"{key.namespace}/{key.name}" if key else "", note)
        if key is not None and self.events is not None:
            self.events.warn(key, "networking.k8s.io/v1", "NotServed", note)

    def _ingress_statuses(self, translation: Translation) -> dict[ObjectKey, dict[str, Any]]:
        """Ingress status.loadBalancer: the addresses of the Gateway serving it."""
        out = {}
        for (ns, name), (gw_ns, gw_name) in self._ingress_gateways.items():
            gw = translation.statuses.get(ObjectKey(GATEWAY_GROUP, "Gateway", gw_ns, gw_name)) or {}
            ips = [{"ip": a["value"]} for a in gw.get("addresses", []) if a.get("value")]
            out[ObjectKey("networking.k8s.io", "Ingress", ns, name)] = {"loadBalancer": {"ingress": ips}}
        return out

    def our_gateways(self, synthesized: dict[ObjectKey, Resource]) -> dict[GatewayName, Gateway]:
        """Gateways of a GatewayClass of ours (accepted or not: the translator judges),
        the stored ones and those serving Ingresses (`synthesized`; stored objects win)."""
        objects = {**{k: r for k, r in synthesized.items() if k.kind in ("GatewayClass", "Gateway")},
                   **self.store.of_kind("GatewayClass"), **self.store.of_kind("Gateway")}
        ours = {k.name for k, r in objects.items() if k.kind == "GatewayClass"
                and isinstance(r, GatewayClass) and r.spec.controller_name == self.controller_name}
        return {(k.namespace, k.name): r for k, r in objects.items()
                if k.kind == "Gateway" and isinstance(r, Gateway) and r.spec.gateway_class_name in ours}

    def publish(self, translation: Translation) -> None:
        owners = self._push(self.infra.groups(translation.gateways))
        self.last_translation = translation
        complete, self._complete = self._complete, False
        if translation.status_changes is not None and complete and not self._synthesized:
            self._publish_changes(translation.statuses, translation.status_changes, owners)
            self._complete = True
            return
        # the objects serving Ingresses exist only here: their statuses are not written
        statuses = {**{k: v for k, v in translation.statuses.items() if k not in self._synthesized},
                    **self._ingress_statuses(translation)}
        previous, self._desired = self._desired, statuses
        written, self._written = self._written, {}
        self.gate.forget(statuses.keys())
        for key, status in statuses.items():
            self._publish_one(key, status, owners, previous, written)
        self.writer.release(statuses)
        self._complete = True

    def _publish_one(self, key: ObjectKey, status: dict[str, Any], owners: dict[ObjectKey, tuple[str, frozenset[str]]],
                     previous: dict[ObjectKey, dict[str, Any]], written: dict[ObjectKey, str]) -> None:
        """A Gateway's or ListenerSet's status through the Programmed gate; another's written
        unless unchanged (`_write`)."""
        owner = owners.get(key)
        if owner is not None and key.kind in PROGRAMMABLE:
            self._hand(key, self.gate.gate(key, status, *owner))
        else:
            self._write(key, status, previous, written)

    def _publish_changes(self, statuses: dict[ObjectKey, dict[str, Any]], changes: frozenset[ObjectKey],
                         owners: dict[ObjectKey, tuple[str, frozenset[str]]]) -> None:
        """`publish` of a patched translation (`translator.incremental`): only the statuses
        it names may differ from those of the previous one, which was published in full.
        Gateways and ListenerSets still pass the Programmed gate: the version changed."""
        previous, self._desired = self._desired, statuses
        removed = [key for key in changes if key not in statuses]
        for key in removed:
            self._written.pop(key, None)
        gated = {key for key in owners if key.kind in PROGRAMMABLE}
        for key in gated | changes:
            if key in statuses:
                self._publish_one(key, statuses[key], owners, previous, self._written)
        if removed:
            self.gate.forget(statuses.keys())
            self.writer.release(statuses)

    def _push(self, groups: dict[str, IR]) -> dict[ObjectKey, tuple[str, frozenset[str]]]:
        """Send each group's IR if it changed; (group, listeners) of every Gateway/ListenerSet."""
        for gone in set(self.last_irs) - set(groups):
            self.xds.remove(gone)
            self.gate.forget_group(gone)
            del self.last_irs[gone]
        owners: dict[ObjectKey, tuple[str, frozenset[str]]] = {}
        for group, model in sorted(groups.items()):
            if model != self.last_irs.get(group):
                version = self.xds.update(group, model)
                self.metrics.pushes.labels(group).inc()
                self._pending[group] = (version, {**self._timeline, "pushed": time.monotonic()})
                self.gate.pushed(group, version)
                self.last_irs[group] = model
                log.info("%s: configuration version %d: %d listeners, %d clusters", group, version,
                         len(model.listeners), len(model.clusters))
            for (kind, namespace, name), listeners in model.gateway_listeners:
                owners[ObjectKey(GATEWAY_GROUP, kind, namespace, name)] = (group, frozenset(listeners))
        return owners

    def _write(self, key: ObjectKey, status: dict[str, Any], previous: dict[ObjectKey, dict[str, Any]],
               written: dict[ObjectKey, str]) -> None:
        """Write a route's (or other object's) status unless this very status was written
        to this very object (same uid) by the previous sync: at 10k routes, re-stamping
        every unchanged status took longer than translating the change."""
        obj = self.store.get(key)
        if obj is None:
            return
        uid = str(obj.raw["metadata"].get("uid", ""))
        if written.get(key) == uid and previous.get(key) == status:
            self._written[key] = uid
            return
        self._hand(key, status)
        self._written[key] = uid

    def _translated(self, started: float, translation: Translation) -> None:
        now = time.monotonic()
        if translation.status_changes is not None:
            self.metrics.patched.inc()
        self.metrics.translation_seconds.observe(now - started)
        received, self._received = self._received, None
        observed, self._observed = self._observed, None
        self._timeline = {"received": received if received is not None else started, "started": started,
                          "translated": now}
        if observed is not None:
            self._timeline["observed"] = observed

    def _log_applied(self, group: str, version: int) -> None:
        """One line per applied change and group: its timeline as milliseconds from when the
        change arrived in the store (received): before it, the provider's part (its event to
        the store: parsing, admission); then waiting for the loop (coalescing), translated,
        pushed, ACKed by Envoy. `observed_at`/`acked_at` are time.monotonic() values, to
        line the change up with what a client saw (bench/propagation.py)."""
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

    def _hand(self, key: ObjectKey, status: dict[str, Any]) -> None:
        self.metrics.status_writes.inc()
        self.writer.write(key, status)
