"""The control loop, shared by both modes: provider events → store → translate →
xDS per group, and statuses back through a StatusWriter.

Changes are batched by the work in flight, not by a timer: a change that arrives
while the loop is idle is translated at once; those that arrive while a sync
(translation, push, statuses) is under way are all taken by the next one (`run`).
A Gateway or ListenerSet is reported `Programmed=True` only once the Envoy
group serving it has ACKed an xDS version containing its listeners
(`portico.status.publisher`). Everything mode-specific is behind the seams
(`portico.seams`): where Gateways are placed and how data planes run is the
Infrastructure's, where statuses go is the StatusWriter's. What the loop did is
read through `portico.diagnostics`; the loop is built by `portico.runtime`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from portico import CONTROLLER_NAME
from portico.contracts import GatewayName, ProviderEvent
from portico.gcpolicy import Collector, gc_paused
from portico.ir import IR
from portico.metrics import Metrics
from portico.models import Gateway, GatewayClass, Resource
from portico.notices import Notices
from portico.objects import GATEWAY_GROUP, ObjectKey
from portico.oidc import Discovery
from portico.seams import EventRecorder, Infrastructure, StatusWriter, Xds
from portico.status import ProgrammedGate
from portico.status.publisher import Owners, StatusPublisher
from portico.status.quarantine import Quarantine
from portico.status.store import StoreStatusWriter
from portico.store import Store
from portico.timeline import Timeline
from portico.translator import Snapshot, Translation, patch, translate
from portico.translator.incremental import Incremental
from portico.translator.ingress import INPUT_KINDS, IngressStage, ingress_statuses, synthesize

log = logging.getLogger(__name__)

Translate = Callable[[Snapshot], Translation]


class ControlLoop:
    """Everything between the provider and the xDS server; no sockets of its own. `changed`
    wakes it for what changed outside the store (placements, leadership)."""

    def __init__(self, store: Store, infra: Infrastructure, xds: Xds, writer: StatusWriter | None = None, *,
                 controller_name: str = CONTROLLER_NAME, translator: Translate = translate,
                 metrics: Metrics | None = None,
                 events: EventRecorder | None = None, changed: asyncio.Event | None = None,
                 discovery: Discovery | None = None, answered: asyncio.Event | None = None) -> None:
        self.store = store
        self.infra = infra
        self.xds = xds
        self.metrics = metrics or Metrics()
        self.statuses = StatusPublisher(store, writer or StoreStatusWriter(store, controller_name), self.metrics)
        self.notices = Notices(events)
        self.controller_name = controller_name
        self.translator = translator
        # the incremental path alone, where the translator is the pipeline (`_patched`)
        self._patch = patch if translator is translate else None
        self.last_irs: dict[str, IR] = {}  # group -> the IR its Envoys were last sent
        self.last_translation: Translation | None = None
        self.syncs = 0  # translations attempted (for tests and logs)
        self._memo = Incremental()  # incremental translation (`portico.translator.incremental`)
        self._revision: int | None = None  # the store's object revision of the last snapshot
        self._dirty = changed or asyncio.Event()
        # OpenID discovery documents for SecurityPolicy oidc, fetched off the loop; it wakes the loop
        self.discovery = discovery or Discovery(self._dirty.set)
        self._ingress = IngressStage()  # the translator's front stage, of the last snapshot
        self._timeline = Timeline()
        self._collector = Collector()
        # group -> the version pushed that its data plane has not answered yet (ACK or NACK);
        # `_answered` is set while there is none (the collector waits for it, and a mode's
        # status writer may: `answered`, Kubernetes mode's KubernetesStatusWriter.hold)
        self._in_flight: dict[str, int] = {}
        self._answered_version: dict[str, int] = {}  # group -> the newest version it answered
        self._answered = answered or asyncio.Event()
        self._answered.set()
        self.quarantine = Quarantine(store)  # routes Envoy rejects, found and left out

    @property
    def gate(self) -> ProgrammedGate:
        return self.statuses.gate

    # ------------------------------------------------------------ inputs

    def apply(self, event: ProviderEvent) -> None:
        """A provider sync: update the store; translate soon if anything changed."""
        self.notices.ignored(event)
        changed = self.store.apply(event)
        if changed or event.initial:
            self._timeline.received(event.observed)
            self._dirty.set()

    def on_ack(self, group: str, version: int) -> None:
        """Envoy of `group` accepted xDS `version`: publish the Gateways it programs."""
        self.metrics.acks.labels(group).inc()
        self._answer(group, version)
        self._timeline.applied(group, version)
        self.statuses.acked(group, version)
        if self.quarantine.acked(group, version):
            self._dirty.set()

    def on_nack(self, group: str, version: int, message: str) -> None:
        log.error("Envoy of %s rejected configuration version %d: %s", group, version, message)
        self.metrics.nacks.labels(group).inc()
        self._answer(group, version)
        self.statuses.nacked(group, version, message)
        if self.infra.rejected(group, message):
            self._dirty.set()  # e.g. listeners that cannot bind become PortUnavailable
        elif self.quarantine.nacked(group, version, message):
            self._dirty.set()  # a route's fault? a trial version without some changed routes

    def _answer(self, group: str, version: int) -> None:
        """The data plane of `group` answered `version` (ACK or NACK)."""
        self._answered_version[group] = max(self._answered_version.get(group, 0), version)
        if self._in_flight.get(group, version + 1) <= version:
            del self._in_flight[group]
        if not self._in_flight:
            self._answered.set()

    # ------------------------------------------------------------ the loop

    async def run(self, events: AsyncIterator[ProviderEvent], ready: Callable[[], None] | None = None) -> None:
        """Consume `events` and translate until cancelled; `ready` after the first sync.
        A provider that fails ends the loop with a RuntimeError at once: a control plane
        that no longer sees changes must not look healthy. One sync at a time, started as
        soon as there is a change (no timer): changes applied while one is under way all go
        into the next (issue 30). No cyclic garbage collection from the start until the first
        configuration was answered (`Collector.hold`)."""
        self._collector.hold()
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
                        # one turn of the event loop first: the xDS streams send the new
                        # configuration before the infrastructure is reconciled (Kubernetes
                        # mode renders every Gateway's objects: 1.3-8 ms at 3000 routes that
                        # Envoy's update waited for, issue 30)
                        await asyncio.sleep(0)
                        await self._reconcile()
                    if ready is not None:
                        ready()
                        ready = None
                    # one turn of the event loop before the garbage is collected (it blocks): the
                    # xDS streams send the new configuration, the consumer applies queued changes
                    await asyncio.sleep(0)
                last = self.last_translation
                await self._collector.after_sync(last is not None and last.status_changes is not None, self._dirty,
                                                 self._answered)
        finally:
            consumer.cancel()
            self._collector.release()

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
        """Translate off the event loop (large configurations take a while), unless the
        change is a few routes the kept translation can be patched for (`_patched`); push
        and write statuses on it. False when the translation failed."""
        try:
            with gc_paused():
                snapshot, started = self.snapshot(), time.monotonic()
                translation = self._patched(snapshot)
                if translation is None:
                    translation = await asyncio.to_thread(self.translator, snapshot)
                self._publish(started, translation)
        except Exception:
            return self._counted(ok=False)
        return self._counted(ok=True)

    # Changed objects up to which a patch is made on the event loop (a patch costs what
    # changed, not what exists: one route's 0.7-1.0 ms at 3000 routes).
    PATCH_ON_LOOP = 16

    def _patched(self, snapshot: Snapshot) -> Translation | None:
        """A change of a few routes, patched here on the event loop (`translator.patch`).
        Handing a 1 ms patch to a thread cost more than the patch: the thread waits for
        the GIL while the event loop runs what is ready (watch events, status writes and
        their answers, xDS), 1-7 ms at 3000 routes in Kubernetes mode (issue 30)."""
        if self._patch is None or snapshot.changes is None or len(snapshot.changes[1]) > self.PATCH_ON_LOOP:
            return None
        return self._patch(snapshot)

    def sync(self) -> bool:
        """`sync_async` without a thread (tests, tools)."""
        try:
            with gc_paused():
                snapshot, started = self.snapshot(), time.monotonic()
                self._publish(started, self.translator(snapshot))
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
        synthesized = self._ingress_stage()
        resources = {**synthesized, **self.store.resources()} if synthesized else self.store.resources()
        revision, since = self.store.object_revision, self._revision
        self._revision = revision
        # what changed since the last snapshot (the memo's delta path); objects made of
        # Ingresses are new on every snapshot, so with them the memo compares for itself
        keys = self.store.changes_since(since) if since is not None and not synthesized else None
        changes = (since, keys) if since is not None and keys is not None else None
        return Snapshot(resources, self.infra.placements(self.our_gateways(synthesized)), self.controller_name,
                        memo=self._memo, revision=revision, changes=changes, quarantined=self.quarantine.entries(),
                        discovered=self.discovery.documents)

    def _ingress_stage(self) -> dict[ObjectKey, Resource]:
        """Ingress objects of ours, as the Gateway API objects that serve them
        (`portico.translator.ingress`); what of them is not served is said once (`notices`)."""
        if not self.store.of_kind("Ingress"):  # the common case, without a pass over every object
            self._ingress = IngressStage()
            return {}
        raws = [o.raw for k, o in self.store.objects().items() if k.kind in INPUT_KINDS]
        self._ingress = synthesize(raws, self.controller_name)
        self.notices.ingress(self._ingress.notes)
        return self._ingress.objects

    def our_gateways(self, synthesized: dict[ObjectKey, Resource]) -> dict[GatewayName, Gateway]:
        """Gateways of a GatewayClass of ours (accepted or not: the translator judges),
        the stored ones and those serving Ingresses (`synthesized`; stored objects win)."""
        objects = {**{k: r for k, r in synthesized.items() if k.kind in ("GatewayClass", "Gateway")},
                   **self.store.of_kind("GatewayClass"), **self.store.of_kind("Gateway")}
        ours = {k.name for k, r in objects.items() if k.kind == "GatewayClass"
                and isinstance(r, GatewayClass) and r.spec.controller_name == self.controller_name}
        return {(k.namespace, k.name): r for k, r in objects.items()
                if k.kind == "Gateway" and isinstance(r, Gateway) and r.spec.gateway_class_name in ours}

    def _publish(self, started: float, translation: Translation) -> None:
        now = time.monotonic()
        if translation.status_changes is not None:
            self.metrics.patched.inc()
        self.metrics.translation_seconds.observe(now - started)
        self._timeline.translated(started, now)
        self.publish(translation)

    def publish(self, translation: Translation) -> None:
        owners = self._push(self.infra.groups(translation.gateways))
        self.last_translation = translation
        self.discovery.want(translation.issuers)
        synthesized = self._ingress.objects
        if not synthesized:
            self.statuses.publish(translation.statuses, owners, translation.status_changes)
            return
        # the objects serving Ingresses exist only here: their statuses are not written
        statuses = {**{k: v for k, v in translation.statuses.items() if k not in synthesized},
                    **ingress_statuses(self._ingress, translation.statuses)}
        self.statuses.publish(statuses, owners)

    def _push(self, groups: dict[str, IR]) -> Owners:
        """Send each group's IR if it changed; (group, listeners) of every Gateway/ListenerSet."""
        for gone in set(self.last_irs) - set(groups):
            self.xds.remove(gone)
            self.gate.forget_group(gone)
            self.quarantine.forget_group(gone)
            del self.last_irs[gone]
            self._in_flight.pop(gone, None)
            self._answered_version.pop(gone, None)
            if not self._in_flight:
                self._answered.set()
        owners: Owners = {}
        for group, model in sorted(groups.items()):
            if model != self.last_irs.get(group):
                self._send(group, model)
            for (kind, namespace, name), listeners in model.gateway_listeners:
                owners[ObjectKey(GATEWAY_GROUP, kind, namespace, name)] = (group, frozenset(listeners))
        trial = self.quarantine.unpushed()
        if trial in self.last_irs:  # a trial that left its group's IR as it was: Envoy's answer is wanted anew
            self._send(trial, self.last_irs[trial])
        return owners

    def _send(self, group: str, model: IR) -> None:
        version = self.xds.update(group, model)
        if version > self._answered_version.get(group, 0):
            self._in_flight[group] = version
            self._answered.clear()
        self.metrics.pushes.labels(group).inc()
        self._timeline.pushed(group, version)
        self.gate.pushed(group, version)
        self.quarantine.pushed(group, version, self._revision)
        self.last_irs[group] = model
        log.info("%s: configuration version %d: %d listeners, %d clusters", group, version,
                 len(model.listeners), len(model.clusters))
