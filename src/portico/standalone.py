"""`portico run`: standalone mode, declared for the composition root (`portico.runtime`).

    FileProvider → APIServerEmulation → ControlLoop ⇄ XdsServer ⇄ Envoy process(es)
                                            │               (HostInfrastructure)
                                            └→ store → admin API

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
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from portico import CONTROLLER_NAME
from portico.contracts import Reserved
from portico.infra.addresses import DEFAULT_POOL, AddressPool
from portico.infra.host import HostInfrastructure, local_envoys
from portico.provider.apiserver import APIServerEmulation, parse_and_check
from portico.provider.bulk import BulkPool
from portico.provider.files import FileProvider
from portico.runtime import AdminFace, Mode, Offline, Plane, private_dir, runtime_base, translate_once
from portico.runtime import serve as serve_mode
from portico.store import Store
from portico.validation import compile_all


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


def state_dir_for(options: Options) -> Path:
    if options.state_dir:
        return Path(options.state_dir)
    return runtime_base() / f"{options.admin_host}-{options.admin_port}"


async def serve(options: Options, stop: asyncio.Event, bulk: BulkPool | None = None) -> None:
    """Admin API, xDS server, Envoy and the control loop, until `stop` is set. `bulk`: the
    worker processes bursts of manifests are parsed and checked in (`start`ed already by
    `portico run`, before it imported this; made and started here otherwise)."""
    bulk = bulk or BulkPool()
    try:
        threading.Thread(target=compile_all, name="schemas", daemon=True).start()  # single changes: checked here
        await serve_mode(Mode(
            # (a burst's documents are parsed and checked in one pass of the bulk workers)
            provider=APIServerEmulation(FileProvider(options.paths, pool=bulk, loader=parse_and_check), pool=bulk),
            infrastructure=lambda plane: host_infrastructure(options, plane, bulk),
            controller_name=options.controller_name,
            admin=AdminFace(options.admin_host, options.admin_port, options.admin_token),
            start_data_planes=not options.envoy_per_gateway,  # the one Envoy starts at once
        ), stop)
    finally:
        bulk.close()


async def host_infrastructure(options: Options, plane: Plane, bulk: BulkPool) -> HostInfrastructure:
    """Envoy processes on this machine, fed over a Unix socket in the state directory
    (made ours once the admin port is); the bulk workers recorded there too."""
    state = private_dir(state_dir_for(options), with_parent=not options.state_dir)
    plane.exit.callback(remove_state, state, named=bool(options.state_dir))  # after the Envoys stopped
    plane.exit.callback(bulk.close)  # (before the state goes)
    bulk.start(state / "helpers.json")  # (in the background if not yet, while Envoy starts; pids recorded)
    return await local_envoys(state, plane.xds, plane.on_change, plane.exit, AddressPool(options.address_pool),
                              port_offset=options.port_offset, log_level=options.envoy_log_level,
                              per_gateway=options.envoy_per_gateway, replicas=options.envoy_replicas,
                              reserved=Reserved((str(state),), ((options.admin_host, options.admin_port),)))


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


def offline(paths: list[str], controller_name: str = CONTROLLER_NAME) -> Offline:
    """The manifests translated here as `portico run` would (no Envoy is started): the
    CLI's `config-dump -f`, `explain -f`, `describe -f`."""
    store = Store()
    store.apply(APIServerEmulation().admit(FileProvider(paths).scan()))
    return translate_once(store, HostInfrastructure(AddressPool(in_use=set)), controller_name)
