"""The composition root: the one place Portico is built, from a mode's declaration.

    Mode (provider, infrastructure, status writer, faces)
      │ serve()
      ▼
    admin port taken ─► store, metrics, XdsServer ─► infrastructure (the mode's factory:
    xDS listening, data planes) ─► ControlLoop ─► Diagnostics ─► admin API ─► the loop

`portico run` (`portico.standalone`) and `portico controller` (`portico.controller`)
are declarations; the CLI's offline paths (`config-dump -f`, `explain -f`,
`describe -f`) translate once through `translate_once`. Every dependency is a
constructor argument: where two parts need each other (the xDS server reports ACKs to
the loop that pushes to it), the root hands one a function that calls the other.

Order matters: the admin port is taken first (a clash fails fast, and it makes the
state directory of that admin address ours), the xDS server listens before Envoy
starts (it connects to it), and on the way out the data planes stop before the xDS
server so that Envoy never runs without its control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from portico import CONTROLLER_NAME
from portico.admin import AdminServer, redact
from portico.control import ControlLoop
from portico.diagnostics import Diagnostics
from portico.ir import IR
from portico.metrics import Metrics
from portico.proxystatus import proxy_status
from portico.seams import EventRecorder, Infrastructure, Provider, StatusWriter
from portico.store import Store

if TYPE_CHECKING:
    from portico.xds.server import XdsServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdminFace:
    """The admin API (health, readiness, objects, diagnostics, topology, metrics)."""

    host: str = "127.0.0.1"
    port: int = 9911
    token: str | None = None  # bearer token of /api/ (probes stay open)


@dataclass(frozen=True)
class Plane:
    """What a mode's infrastructure factory is given."""

    xds: XdsServer  # to start listening (Unix socket, mutual TLS) before data planes connect
    store: Store  # objects the infrastructure looks up (a Gateway's Service, parametersRef)
    on_change: Callable[[], None]  # placements changed on their own: translate again
    exit: contextlib.AsyncExitStack  # its clean-up, run after the data planes stopped


@dataclass
class Mode:
    """A mode's declaration: what differs between `portico run` and `portico controller`."""

    provider: Provider
    # builds the Infrastructure once the admin port is ours (it may touch the state directory)
    infrastructure: Callable[[Plane], Awaitable[Infrastructure]]
    controller_name: str = CONTROLLER_NAME
    store: Store = field(default_factory=Store)
    writer: StatusWriter | None = None  # None: statuses live in the store (`portico.status.store`)
    events: EventRecorder | None = None  # Warning Events (Kubernetes mode)
    admin: AdminFace | None = None
    # wakes the control loop for what changed outside the store (placements, leadership)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # set by the control loop while no configuration it pushed awaits its data plane's answer
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    # other tasks that run until `stop` (leader election)
    services: tuple[Callable[[asyncio.Event], Coroutine[Any, Any, None]], ...] = ()
    # data planes started before the first translation (e.g. the one Envoy of standalone mode)
    start_data_planes: bool = True
    # awaited once the loop stopped, before anything else does (statuses in flight written)
    drain: Callable[[], Awaitable[None]] | None = None
    # how long the drain and the services may take to finish once `stop` is set: then they
    # are cancelled, so that a controller always stops, whatever its leadership state
    stop_grace: float = 30.0
    # xDS over mutual TLS: the group an Envoy's client certificate names (None: Unix socket only)
    xds_group_of_identity: Callable[[str], str | None] | None = None


@runtime_checkable
class Problems(Protocol):
    """An infrastructure that reports what keeps it from working as it should (/healthz)."""

    def problems(self) -> list[str]: ...


@runtime_checkable
class LocalEnvoys(Protocol):
    """An infrastructure whose Envoys run on this machine (stats and admin through the admin API)."""

    def envoy_stats(self, group: str) -> bytes | None: ...

    def envoy_admin(self, group: str, path: str) -> bytes | None: ...


async def serve(mode: Mode, stop: asyncio.Event) -> None:
    """Build the system `mode` declares and run it until `stop` is set (or the loop fails)."""
    # imported here: grpc and the Envoy protos are heavy, `portico echo` does not need them
    from portico.xds.server import XdsServer

    sock = listening_socket(mode.admin.host, mode.admin.port) if mode.admin is not None else None
    async with contextlib.AsyncExitStack() as exit:
        if sock is not None:
            exit.callback(sock.close)
        metrics = Metrics()
        metrics.watch_store(mode.store)
        # the xDS server reports to the loop that pushes to it: each is the other's argument
        xds = XdsServer(on_ack=lambda group, version: loop.on_ack(group, version),
                        on_nack=lambda group, version, message: loop.on_nack(group, version, message),
                        group_of_identity=mode.xds_group_of_identity)
        exit.push_async_callback(xds.stop)
        infra = await mode.infrastructure(Plane(xds, mode.store, mode.changed.set, exit))
        exit.push_async_callback(infra.stop)
        loop = ControlLoop(mode.store, infra, xds, mode.writer, controller_name=mode.controller_name,
                           metrics=metrics, events=mode.events, changed=mode.changed, answered=mode.answered)
        admin = None
        if mode.admin is not None:
            admin = AdminServer(mode.store, mode.admin.host, mode.admin.port, token=mode.admin.token,
                                metrics=metrics, diagnostics=Diagnostics(loop, infra.groups),
                                envoys=infra if isinstance(infra, LocalEnvoys) else None,
                                problems=infra.problems if isinstance(infra, Problems) else None,
                                controller_name=mode.controller_name, sock=sock, proxies=proxy_status(xds))
            await admin.start()
            exit.push_async_callback(admin.stop)
        if mode.start_data_planes:
            await infra.reconcile({})
        try:
            await _run(mode, loop, stop, _ready(admin))
        finally:
            if admin is not None:
                admin.ready = False


async def _run(mode: Mode, loop: ControlLoop, stop: asyncio.Event, ready: Callable[[], None]) -> None:
    tasks = [asyncio.create_task(loop.run(mode.provider.events(stop), ready=ready), name="control"),
             *(asyncio.create_task(service(stop)) for service in mode.services)]
    stopped = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({*tasks, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped:
                task.result()  # the control loop only ends by failing: raise its error
        stop.set()
        tasks[0].cancel()  # the control loop runs until cancelled
        try:
            async with asyncio.timeout(mode.stop_grace):
                if mode.drain is not None:
                    await mode.drain()
                await asyncio.gather(*tasks, return_exceptions=True)
        except TimeoutError:
            log.warning("still stopping after %.0f s: cancelling what is left", mode.stop_grace)
        log.info("stopping")
    finally:
        for task in (*tasks, stopped):
            task.cancel()
        await asyncio.gather(*tasks, stopped, return_exceptions=True)


def _ready(admin: AdminServer | None) -> Callable[[], None]:
    def ready() -> None:
        if admin is not None:
            admin.ready = True
        log.info("serving")

    return ready


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port: taken before anything else, so that a clash fails fast."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


# ------------------------------------------------------------ offline

class _NoXds:
    """No xDS server: every version is ACKed at once (`translate_once`)."""

    def update(self, group: str, ir: IR) -> int:
        return 1

    def remove(self, group: str) -> None:
        pass


@dataclass(frozen=True)
class Offline:
    """One translation of the stored objects, as a running control plane would make it
    once its Envoys accepted it (none runs): the CLI's `-f` paths read it."""

    store: Store
    loop: ControlLoop
    diagnostics: Diagnostics

    def objects(self) -> list[dict[str, Any]]:
        """Every object with its status, Secret data redacted."""
        return [redact(o) for o in self.store.list_objects()]


def translate_once(store: Store, infra: Infrastructure, controller_name: str = CONTROLLER_NAME) -> Offline:
    loop = ControlLoop(store, infra, _NoXds(), controller_name=controller_name)
    loop.sync()
    for group in list(loop.last_irs):
        loop.on_ack(group, 1)  # as if Envoy accepted it
    return Offline(store, loop, Diagnostics(loop, infra.groups))


# ------------------------------------------------------------ state directory

def runtime_base() -> Path:
    """Where this user's control planes keep their state: `portico-<uid>` in the runtime dir."""
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"portico-{os.getuid()}"


def private_dir(path: Path, with_parent: bool) -> Path:
    """`path` (and its parent) created 0700, refusing one another user owns or a symlink."""
    for d in (path.parent, path) if with_parent else (path,):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = d.lstat()
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise OSError(f"state directory {d} must be a directory of this user only (mode 0700)")
    return path
