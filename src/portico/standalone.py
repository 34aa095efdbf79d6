"""`portico run`: standalone mode, composed from the shared core and its own seams.

    FileProvider → APIServerEmulation → ControlLoop ⇄ XdsServer ⇄ Envoy process(es)
                                            │               (HostInfrastructure)
                                            └→ store → admin API

Order matters: the admin port is taken first (a clash fails fast, and it makes
the state directory of that admin address ours), the ADS server before Envoy
(which connects to it), and on the way out Envoy stops before the ADS server so
it never runs without its control plane.

The state directory (`--state-dir`, default `$XDG_RUNTIME_DIR` or the temp dir,
`portico-<uid>/<admin host>-<admin port>`, mode 0700) holds the xDS socket, each
Envoy's work directory and the Gateways' pool addresses. If the control plane dies
(`kill -9`), its Envoys keep serving; the next `portico run` with the same admin
address adopts them (they reconnect to the same xDS socket) and gives every Gateway
the address it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from portico import CONTROLLER_NAME
from portico.admin import AdminServer
from portico.control import ControlLoop
from portico.infra.addresses import DEFAULT_POOL, AddressPool
from portico.infra.host import HostInfrastructure
from portico.metrics import Metrics
from portico.provider.apiserver import APIServerEmulation
from portico.provider.bulk import BulkPool
from portico.provider.files import FileProvider
from portico.store import Store
from portico.translator.snapshot import Reserved
from portico.validation import compile_all

log = logging.getLogger(__name__)


@dataclass
class Options:
    paths: list[str]
    admin_host: str = "127.0.0.1"
    admin_port: int = 9911
    port_offset: int = 0
    address_pool: str = DEFAULT_POOL
    envoy_log_level: str = "warning"
    controller_name: str = CONTROLLER_NAME
    envoy_per_gateway: bool = False  # one Envoy process (and xDS group) per Gateway
    state_dir: str | None = None  # default: state_dir_for(admin address)
    envoy_replicas: int = 1  # Envoys per group sharing its sockets
    admin_token: str | None = None  # bearer token the admin API's /api/ endpoints require


def runtime_base() -> Path:
    """Where this user's control planes keep their state: `portico-<uid>` in the runtime dir."""
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"portico-{os.getuid()}"


def state_dir_for(options: Options) -> Path:
    if options.state_dir:
        return Path(options.state_dir)
    return runtime_base() / f"{options.admin_host}-{options.admin_port}"


def private_dir(path: Path, with_parent: bool) -> Path:
    """`path` (and its parent) created 0700, refusing one another user owns or a symlink."""
    for d in (path.parent, path) if with_parent else (path,):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = d.lstat()
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise OSError(f"state directory {d} must be a directory of this user only (mode 0700)")
    return path


def remove_state(state: Path, named: bool) -> None:
    """After a clean stop (its Envoys stopped: nothing left to adopt), what the state
    directory held goes. A directory the user named (`--state-dir`) stays, with the
    Gateways' addresses, for the next run; the default one is removed."""
    if not named:
        shutil.rmtree(state, ignore_errors=True)
        with contextlib.suppress(OSError):
            state.parent.rmdir()  # portico-<uid>, when no other instance uses it
        return
    (state / "xds.sock").unlink(missing_ok=True)
    (state / "helpers.json").unlink(missing_ok=True)
    shutil.rmtree(state / "envoy", ignore_errors=True)


async def serve(options: Options, stop: asyncio.Event) -> None:
    """Admin API, ADS server, Envoy and the control loop, until `stop` is set."""
    # imported here: grpc and the Envoy protos are heavy, `portico echo` does not need them
    from portico.infra.envoy import EnvoyProcess
    from portico.xds.server import XdsServer

    store = Store()
    metrics = Metrics()
    metrics.watch_store(store)
    admin = AdminServer(store, options.admin_host, options.admin_port, token=options.admin_token, metrics=metrics)
    await admin.start()
    xds = XdsServer()
    infra: HostInfrastructure | None = None
    bulk = BulkPool()  # bursts of manifests parsed and checked across processes
    threading.Thread(target=compile_all, name="schemas", daemon=True).start()  # ours: single changes are checked here
    # xDS carries private keys: a Unix socket (0600) in a directory only we can enter,
    # never a TCP port another local user could connect to
    state = private_dir(state_dir_for(options), with_parent=not options.state_dir)
    bulk.start(state / "helpers.json")  # (in the background, while Envoy starts)
    xds_socket = state / "xds.sock"
    try:
        xds_socket.unlink(missing_ok=True)  # a control plane that died left it
        await xds.start_unix(str(xds_socket))

        def envoy(group: str, replica: int) -> EnvoyProcess:
            return EnvoyProcess("", 0, xds_socket=str(xds_socket), node_id=f"{group}/{replica}", node_cluster=group,
                                log_level=options.envoy_log_level,
                                work_dir=infra.work_dir(group, replica) if infra else None)

        infra = HostInfrastructure(AddressPool(options.address_pool), envoy, port_offset=options.port_offset,
                                   per_gateway=options.envoy_per_gateway, addresses_file=state / "addresses.json",
                                   envoy_dirs=state / "envoy", replicas=options.envoy_replicas,
                                   reserved=Reserved((str(state),), ((options.admin_host, options.admin_port),)))
        control = ControlLoop(store, infra, xds, controller_name=options.controller_name, metrics=metrics)
        xds.on_ack, xds.on_nack = control.on_ack, control.on_nack
        admin.readiness = control.readiness
        admin.config_dump = control.config_dump
        admin.explain = control.explain
        admin.controller_name = options.controller_name
        admin.envoy_stats = infra.envoy_stats
        admin.envoy_admin = infra.envoy_admin
        admin.problems = infra.problems
        if not options.envoy_per_gateway:
            await infra.reconcile({})  # the one Envoy starts at once
        events = APIServerEmulation(FileProvider(options.paths, pool=bulk), pool=bulk).events(stop)
        loop_task = asyncio.create_task(control.run(events, ready=_set_ready(admin)))
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
        if infra is not None:
            await infra.stop()
        await xds.stop()
        await admin.stop()
        bulk.close()
        remove_state(state, named=bool(options.state_dir))


def _set_ready(admin: AdminServer) -> Callable[[], None]:
    def ready() -> None:
        admin.ready = True
        log.info("serving")

    return ready
