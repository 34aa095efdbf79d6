"""The standalone control loop: provider events → store → translate → xDS, and status back.

Changes are batched: the first change after a quiet period is translated at
once, later ones at most every `min_interval` seconds while they keep coming.
A Gateway is reported `Programmed=True` only once Envoy has ACKed an xDS
version that contains its listeners (ARCHITECTURE, "status"); until then the
translator's Programmed conditions are published as `False`, reason `Pending`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from portico import CONTROLLER_NAME
from portico.addresses import DEFAULT_POOL, AddressPool
from portico.admin import AdminServer
from portico.ir import IR
from portico.models import Gateway, GatewayClass
from portico.objects import GATEWAY_GROUP, ObjectKey
from portico.provider import ProviderEvent
from portico.provider.files import FileProvider
from portico.store import Store
from portico.translator import Snapshot, Translation, translate
from portico.translator.backends import RuleMemo

log = logging.getLogger(__name__)

GatewayKey = tuple[str, str]
# Envoy's NACK of a listener whose socket cannot be bound names the IR listener:
# "Error adding/updating listener(s) 127.10.0.1:80/tcp: cannot bind '127.10.0.1:80': ..."
UNBINDABLE = re.compile(r"(\S+:\d+/(?:tcp|udp)): cannot bind")
# kinds whose Programmed condition waits for Envoy's ACK (ARCHITECTURE, "status")
PROGRAMMABLE = ("Gateway", "ListenerSet")
Translate = Callable[[Snapshot], Translation]
Push = Callable[[IR], int]


@dataclass
class _Pending:
    version: int
    listeners: frozenset[str]


def _is_programmed(status: dict[str, Any]) -> bool:
    return any(c.get("type") == "Programmed" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def _pending_conditions(conditions: list[dict[str, Any]], message: str) -> list[dict[str, Any]]:
    out = []
    for c in conditions:
        if c.get("type") == "Programmed" and c.get("status") == "True":
            c = {**c, "status": "False", "reason": "Pending", "message": message}
        out.append(c)
    return out


def held_back(status: dict[str, Any], message: str) -> dict[str, Any]:
    """A Gateway status whose Programmed conditions (Gateway and listeners) wait for an ACK."""
    out = copy.copy(status)
    out["conditions"] = _pending_conditions(status.get("conditions") or [], message)
    if "listeners" in status:
        out["listeners"] = [{**ls, "conditions": _pending_conditions(ls.get("conditions") or [], message)}
                            for ls in status["listeners"]]
    return out


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


class ControlLoop:
    """Everything between the provider and the xDS server; no sockets of its own."""

    def __init__(self, store: Store, pool: AddressPool, push: Push, *, port_offset: int = 0,
                 translator: Translate = translate, min_interval: float = 0.05) -> None:
        self.store = store
        self.pool = pool
        self.push = push
        self.port_offset = port_offset
        self.translator = translator
        self.min_interval = min_interval
        self.last_ir: IR | None = None
        self.version = 0  # the xDS version holding last_ir
        self.acked_version = 0
        self.nack_message = ""
        self.syncs = 0  # translations attempted (for tests and logs)
        self._desired: dict[ObjectKey, dict[str, Any]] = {}  # translator statuses
        self._memo = RuleMemo()  # incremental translation: unchanged routes' rules are reused
        self._written: dict[ObjectKey, str] = {}  # key -> uid of the object `_desired[key]` was written to
        # Gateways and ListenerSets: the listeners Envoy must hold before they are Programmed
        self._pending: dict[ObjectKey, _Pending] = {}
        self._programmed: dict[ObjectKey, frozenset[str]] = {}  # listeners Envoy has ACKed
        self._dirty = asyncio.Event()
        self.unbindable: set[str] = set()  # sockets Envoy could not bind (NACKed listeners)
        self.rebind_after = 30.0  # seconds before binding them is tried again

    # ------------------------------------------------------------ inputs

    def apply(self, event: ProviderEvent) -> None:
        """A provider sync: update the store; translate soon if anything changed."""
        changed = self.store.apply(event)
        if changed or event.initial:
            self._dirty.set()

    def on_ack(self, version: int) -> None:
        """Envoy accepted xDS `version`: publish the Gateways it programs."""
        self.acked_version = max(self.acked_version, version)
        self.nack_message = ""
        for key, pending in list(self._pending.items()):
            if version >= pending.version:
                del self._pending[key]
                self._programmed[key] = pending.listeners
                if key in self._desired:
                    self.store.set_status(key, self._desired[key])

    def on_nack(self, version: int, message: str) -> None:
        log.error("Envoy rejected configuration version %d: %s", version, message)
        self.nack_message = f"Envoy rejected configuration version {version}: {message}"
        for key, pending in self._pending.items():
            if pending.version <= version:
                self._publish_held(key, self.nack_message)
        sockets = set(UNBINDABLE.findall(message)) - self.unbindable
        if sockets:
            # Translate again without them: their listeners become PortUnavailable and
            # the rest of the configuration can be accepted. Retry binding later.
            self.unbindable |= sockets
            self._dirty.set()
            self._schedule_rebind(sockets)

    def _schedule_rebind(self, sockets: set[str]) -> None:
        def retry() -> None:
            self.unbindable -= sockets
            self._dirty.set()

        try:
            asyncio.get_running_loop().call_later(self.rebind_after, retry)
        except RuntimeError:
            pass  # no event loop (synchronous use): the sockets stay unavailable

    # ------------------------------------------------------------ the loop

    async def run(self, events: AsyncIterator[ProviderEvent], ready: Callable[[], None] | None = None) -> None:
        """Consume `events` and translate until cancelled; `ready` after the first sync."""
        consumer = asyncio.create_task(self._consume(events))
        try:
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                # the garbage of a sync is collected after the interval, once the xDS streams
                # have sent the new configuration: not in between (it blocks the event loop)
                with gc_paused():
                    await self.sync_async()
                    if ready is not None:
                        ready()
                        ready = None
                    # coalesce bursts: at most one translation per interval while changes keep coming
                    await asyncio.sleep(self.min_interval)
                if consumer.done():
                    consumer.result()  # the provider failed: raise its error
        finally:
            consumer.cancel()

    async def _consume(self, events: AsyncIterator[ProviderEvent]) -> None:
        async for event in events:
            self.apply(event)

    async def sync_async(self) -> bool:
        """Translate off the event loop (large configurations take a while); push and
        write statuses on it. False when the translation failed."""
        snapshot = self.snapshot()
        try:
            with gc_paused():
                translation = await asyncio.to_thread(self.translator, snapshot)
                self.publish(translation)
        except Exception:
            log.exception("translation failed; the last good configuration keeps serving")
            return False
        return True

    def sync(self) -> bool:
        """`sync_async` without a thread (tests, tools)."""
        try:
            with gc_paused():
                self.publish(self.translator(self.snapshot()))
        except Exception:
            log.exception("translation failed; the last good configuration keeps serving")
            return False
        return True

    # ------------------------------------------------------------ steps

    def snapshot(self) -> Snapshot:
        self.syncs += 1
        return Snapshot(self.store.resources(), self.assign_addresses(), self.port_offset,
                        frozenset(self.unbindable), memo=self._memo)

    def assign_addresses(self) -> dict[GatewayKey, str]:
        """Addresses of our Gateways; pool addresses of vanished Gateways go back."""
        ours = {k.name for k, obj in self.store.objects().items() if k.kind == "GatewayClass"
                and isinstance(obj.resource, GatewayClass) and obj.resource.spec.controller_name == CONTROLLER_NAME}
        out: dict[GatewayKey, str] = {}
        for key, obj in self.store.objects().items():
            gw = obj.resource
            if key.kind != "Gateway" or not isinstance(gw, Gateway) or gw.spec.gateway_class_name not in ours:
                continue
            requested = [a.value for a in gw.spec.addresses if a.type in ("IPAddress", "")]
            address = self.pool.assign((key.namespace, key.name), requested)
            if address is not None:
                out[(key.namespace, key.name)] = address
        for gone in set(self.pool.assigned()) - set(out):
            self.pool.release(gone)
        return out

    def publish(self, translation: Translation) -> None:
        if translation.ir != self.last_ir:
            self.version = self.push(translation.ir)
            self.last_ir = translation.ir
            log.info("configuration version %d: %d listeners, %d clusters", self.version,
                     len(translation.ir.listeners), len(translation.ir.clusters))
        listeners = {ObjectKey(GATEWAY_GROUP, *owner): frozenset(names)
                     for owner, names in translation.ir.gateway_listeners}
        previous, self._desired = self._desired, translation.statuses
        written, self._written = self._written, {}
        for key in set(self._pending) | set(self._programmed):
            if key not in translation.statuses:
                self._pending.pop(key, None)
                self._programmed.pop(key, None)
        for key, status in translation.statuses.items():
            if key.kind in PROGRAMMABLE and _is_programmed(status):
                self._publish_programmed(key, status, listeners.get(key, frozenset()))
            else:
                self._pending.pop(key, None)
                self._set_status(key, status, previous, written)
        self.store.release_statuses(translation.statuses)

    def _set_status(self, key: ObjectKey, status: dict[str, Any], previous: dict[ObjectKey, dict[str, Any]],
                    written: dict[ObjectKey, str]) -> None:
        """Write a route's (or other object's) status unless this very status was written
        to this very object (same uid) by the previous sync: at 10k routes, re-stamping
        every unchanged status took longer than translating the change."""
        obj = self.store.get(key)
        if obj is None:
            return
        uid = str(obj.raw["metadata"].get("uid", ""))
        if key.kind not in PROGRAMMABLE and written.get(key) == uid and previous.get(key) == status:
            self._written[key] = uid
            return
        self.store.set_status(key, status)
        self._written[key] = uid

    def _publish_programmed(self, key: ObjectKey, status: dict[str, Any], listeners: frozenset[str]) -> None:
        """A Gateway or ListenerSet is Programmed once Envoy has ACKed its listeners."""
        if self._programmed.get(key) == listeners:
            # Envoy already has exactly these listeners (e.g. only a route changed)
            self._pending.pop(key, None)
            self.store.set_status(key, status)
            return
        pending = self._pending.get(key)
        if pending is None or pending.listeners != listeners:
            self._pending[key] = _Pending(self.version, listeners)
        if self.acked_version >= self._pending[key].version:
            self.on_ack(self.acked_version)
            return
        self._publish_held(key, self.nack_message)

    def _publish_held(self, key: ObjectKey, message: str) -> None:
        status = self._desired.get(key)
        if status is not None:
            pending = self._pending.get(key)
            why = message or f"waiting for Envoy to accept configuration version {pending.version if pending else '?'}"
            self.store.set_status(key, held_back(status, why))


# ---------------------------------------------------------------- standalone


@dataclass
class Options:
    paths: list[str]
    admin_host: str = "127.0.0.1"
    admin_port: int = 9911
    port_offset: int = 0
    address_pool: str = DEFAULT_POOL
    envoy_log_level: str = "warning"


async def serve(options: Options, stop: asyncio.Event) -> None:
    """`portico run`: admin API, ADS server, Envoy and the control loop, until `stop` is set.

    Order matters: the admin port is taken first (a clash fails fast), the ADS
    server before Envoy (which connects to it), and on the way out Envoy stops
    before the ADS server so it never runs without its control plane.
    """
    # imported here: grpc and the Envoy protos are heavy, `portico echo` does not need them
    from portico.dataplane.envoy import EnvoyProcess
    from portico.xds.server import XdsServer

    store = Store()
    pool = AddressPool(options.address_pool)
    admin = AdminServer(store, options.admin_host, options.admin_port)
    await admin.start()
    xds = XdsServer()
    control = ControlLoop(store, pool, xds.update, port_offset=options.port_offset)
    xds.on_ack, xds.on_nack = control.on_ack, control.on_nack
    envoy: EnvoyProcess | None = None
    try:
        xds_port = await xds.start("127.0.0.1", 0)
        envoy = EnvoyProcess("127.0.0.1", xds_port, log_level=options.envoy_log_level)
        await envoy.start()
        provider = FileProvider(options.paths)
        loop_task = asyncio.create_task(control.run(provider.events(stop), ready=_set_ready(admin)))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({loop_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if loop_task in done:
            loop_task.result()  # the control loop only ends by failing: raise its error
        for task in (loop_task, stopped):
            task.cancel()
        await asyncio.gather(loop_task, stopped, return_exceptions=True)
        log.info("stopping")
    finally:
        admin.ready = False
        if envoy is not None:
            await envoy.stop()
        await xds.stop()
        await admin.stop()


def _set_ready(admin: AdminServer) -> Callable[[], None]:
    def ready() -> None:
        admin.ready = True
        log.info("serving")

    return ready
