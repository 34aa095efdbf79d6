"""Standalone mode's infrastructure: Gateways on loopback addresses of this machine,
served by Envoy processes started here (ARCHITECTURE, "Addresses").

It owns everything the translator must not know: the address pool, the port
offset (`--port-offset`), which Envoy process serves which Gateways, and how
Envoy's bind failures become `PortUnavailable` (a NACK naming the socket marks
that port of that Gateway unavailable; binding is tried again later).

Groups: by default one Envoy serves every Gateway (group `portico`): one process,
one set of workers, the least memory. With `per_gateway`, each Gateway gets its
own Envoy process and xDS group (`<namespace>/<name>`), as in Kubernetes mode:
an Envoy then only ever holds its own Gateway's resources and a NACK of one
never affects another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from portico.contracts import GatewayName, GatewayOutput, Placement, Reserved
from portico.infra.addresses import AddressPool, is_ip, usable_address
from portico.ir import IR, merge
from portico.models import Gateway
from portico.objects import ObjectKey

log = logging.getLogger(__name__)

MERGED_GROUP = "portico"
# Envoy's NACK of a listener whose socket cannot be bound names the IR listener:
# "Error adding/updating listener(s) 127.10.0.1:80/tcp: cannot bind '127.10.0.1:80': ..."
UNBINDABLE = re.compile(r"(\S+):(\d+)/(tcp|udp): cannot bind")

class DataPlane(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

# (xDS group, replica) -> a data plane serving it
DataPlaneFactory = Callable[[str, int], DataPlane]

class HostInfrastructure:
    """`addresses_file`: pool assignments persisted across restarts; `envoy_dirs`: the
    directory holding one work directory per group (an Envoy left running there by a
    control plane that died is adopted, one of a group that no longer exists stopped)."""

    def __init__(self, pool: AddressPool, start_envoy: DataPlaneFactory | None = None, *, port_offset: int = 0,
                 per_gateway: bool = False, rebind_after: float = 30.0, addresses_file: Path | None = None,
                 envoy_dirs: Path | None = None, replicas: int = 1, reserved: Reserved | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.pool = pool
        # the control endpoints on this machine no backend may name (the state directory,
        # the admin API's address): every Placement carries them to the translator
        self.reserved = reserved or Reserved()
        # Envoys per group, all binding the same sockets (SO_REUSEPORT): when one crashes the
        # kernel hands new connections to the others at once (README, "Envoy replicas")
        self.replicas = max(1, replicas)
        self.addresses_file = addresses_file
        self.envoy_dirs = envoy_dirs
        self._saved: dict[str, str] = self._load_addresses()
        self._save_problem = ""  # why the addresses could not be saved ("": they were)
        self.port_offset = port_offset
        self.per_gateway = per_gateway
        self.rebind_after = rebind_after  # seconds before an unbindable socket is tried again
        self.on_change = on_change  # placements changed on their own (a port to bind again): translate again
        self._start_envoy = start_envoy
        self._planes: dict[str, list[DataPlane]] = {}
        self._unbindable: set[tuple[str, int, str]] = set()  # (address, bind port, transport)

    # ------------------------------------------------------------ placement

    def placements(self, gateways: Mapping[GatewayName, Gateway]) -> dict[GatewayName, Placement]:
        """Addresses of our Gateways; pool addresses of vanished Gateways go back."""
        out: dict[GatewayName, Placement] = {}
        for name, gw in gateways.items():
            # an IPAddress without a value asks for one: the pool assigns it
            requested = [a.value for a in gw.spec.addresses if a.type in ("IPAddress", "") and a.value]
            address = self.pool.assign(name, requested)
            problem = address_problem(gw)
            unavailable = frozenset((port, transport) for host, port, transport in self._unbindable
                                    if host == address)
            out[name] = Placement(address, (), self.port_offset, unavailable, problem, reserved=self.reserved)
        for gone in set(self.pool.assigned()) - set(out):
            self.pool.release(gone)
        self._save_addresses()
        return out

    def _load_addresses(self) -> dict[str, str]:
        if self.addresses_file is None:
            return {}
        try:
            saved = json.loads(self.addresses_file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(saved, dict):
            return {}
        for key, address in saved.items():
            namespace, _, name = str(key).partition("/")
            if isinstance(address, str) and name:
                self.pool.reserve((namespace, name), address)
        return {str(k): str(v) for k, v in saved.items()}

    def _save_addresses(self) -> None:
        """Persist the assignments for the next run. A state directory that cannot be
        written (disk full, read-only) must not stop changes: the addresses are kept in
        memory, and the failure is logged once and reported (`problems`, /healthz)."""
        current = {f"{ns}/{name}": a for (ns, name), a in sorted(self.pool.assigned().items())}
        if self.addresses_file is None or current == self._saved:
            return
        tmp = self.addresses_file.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(current, indent=1))
            tmp.replace(self.addresses_file)
        except OSError as e:
            problem = (f"cannot save the Gateways' addresses to {self.addresses_file} ({e.strerror or e}): "
                       "they are kept in memory, a restart may change them")
            if problem != self._save_problem:
                log.error("%s", problem)
            self._save_problem = problem
            return
        if self._save_problem:
            log.info("the Gateways' addresses are saved to %s again", self.addresses_file)
        self._save_problem = ""
        self._saved = current

    def problems(self) -> list[str]:
        """What keeps this infrastructure from working as it should while it serves on
        (reported by the health endpoints)."""
        return [self._save_problem] if self._save_problem else []

    # ------------------------------------------------------------ data planes

    def group_of(self, gateway: ObjectKey) -> str:
        return f"{gateway.namespace}/{gateway.name}" if self.per_gateway else MERGED_GROUP

    def groups(self, outputs: Mapping[ObjectKey, GatewayOutput]) -> dict[str, IR]:
        if not self.per_gateway:
            return {MERGED_GROUP: merge(out.xds for _, out in sorted(outputs.items()))}
        return {self.group_of(key): out.xds for key, out in outputs.items()}

    async def reconcile(self, outputs: Mapping[ObjectKey, GatewayOutput]) -> None:
        """One Envoy process per group: started for new groups, stopped for gone ones."""
        wanted = {self.group_of(key) for key in outputs} if self.per_gateway else {MERGED_GROUP}
        await self._reconcile_planes(wanted)

    async def _reconcile_planes(self, wanted: set[str]) -> None:
        if self._start_envoy is None:
            return
        for group in sorted(set(self._planes) - wanted):
            log.info("stopping the Envoy of %s", group)
            await asyncio.gather(*(p.stop() for p in self._planes.pop(group)))
        for group in sorted(wanted - set(self._planes)):
            planes = [self._start_envoy(group, i) for i in range(self.replicas)]
            started = await asyncio.gather(*(p.start() for p in planes), return_exceptions=True)
            failed = [e for e in started if isinstance(e, BaseException)]
            if failed:  # no group half started: stop the replicas that did start
                await asyncio.gather(*(p.stop() for p in planes), return_exceptions=True)
                raise failed[0]
            self._planes[group] = planes
        self._stop_orphans()

    def work_dir(self, group: str, replica: int) -> Path | None:
        """Where replica `replica` of the Envoy of `group` keeps its bootstrap, sockets, pid and log."""
        if self.envoy_dirs is None:
            return None
        return self.envoy_dirs / f"{group.replace('/', '_')}-{replica}"

    def _stop_orphans(self) -> None:
        """Envoys a previous control plane left for groups (or replicas) that no longer exist."""
        if self.envoy_dirs is None or not self.envoy_dirs.is_dir():
            return
        mine = {self.work_dir(g, i) for g, planes in self._planes.items() for i in range(len(planes))}
        for path in self.envoy_dirs.iterdir():
            if path in mine:
                continue
            with contextlib.suppress(OSError, ValueError, ProcessLookupError, PermissionError):
                shim, envoy = (int(x) for x in (path / "envoy.pid").read_text().split())
                # only that Envoy (its command names this bootstrap), not a process that reuses the pid
                if str(path / "bootstrap.json").encode() in Path(f"/proc/{envoy}/cmdline").read_bytes():
                    log.info("stopping an Envoy left by a previous control plane (%s)", path.name)
                    os.killpg(shim, signal.SIGTERM)
            shutil.rmtree(path, ignore_errors=True)

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for planes in self._planes.values() for p in planes))
        self._planes.clear()

    def envoy_stats(self, group: str) -> bytes | None:
        """Envoy's own Prometheus stats (`/stats/prometheus` of its admin API), replica 0 of
        `group`; None when no such Envoy runs."""
        return self.envoy_admin(group, "/stats/prometheus")

    def envoy_admin(self, group: str, path: str) -> bytes | None:
        """GET `path` of the admin API of replica 0 of `group` (on its private Unix socket)."""
        planes = self._planes.get(group) or []
        admin_get = getattr(planes[0], "admin_get", None) if planes else None
        if admin_get is None:
            return None
        status, body = admin_get(path)
        return bytes(body) if status == 200 else None

    # ------------------------------------------------------------ failures

    def rejected(self, group: str, message: str) -> bool:
        """Sockets named in a NACK become unavailable ports of the Gateway bound there;
        True when that is new (translate again without them, retry binding later)."""
        sockets = {(host, int(port), transport) for host, port, transport in UNBINDABLE.findall(message)
                   if is_ip(host)} - self._unbindable
        if not sockets:
            return False
        self._unbindable |= sockets
        self._schedule_rebind(sockets)
        return True

    def _schedule_rebind(self, sockets: set[tuple[str, int, str]]) -> None:
        def retry() -> None:
            self._unbindable -= sockets
            if self.on_change is not None:
                self.on_change()

        try:
            asyncio.get_running_loop().call_later(self.rebind_after, retry)
        except RuntimeError:
            pass  # no event loop (synchronous use): the sockets stay unavailable

def address_problem(gw: Gateway) -> str:
    """Why a requested address cannot be used here (standalone: loopback IPv4 only)."""
    return next((f"address {a.value} is not a loopback IPv4 address" for a in gw.spec.addresses
                 if a.value and usable_address(a.value) is None), "")


class UnixXds(Protocol):
    async def start_unix(self, path: str) -> None: ...


async def local_envoys(state: Path, xds: UnixXds, on_change: Callable[[], None], exit: contextlib.AsyncExitStack,
                       pool: AddressPool, *, port_offset: int = 0, log_level: str = "warning",
                       per_gateway: bool = False, replicas: int = 1, start_envoy: bool = True,
                       reserved: Reserved | None = None) -> HostInfrastructure:
    """The host infrastructure of the state directory `state`: the xDS server listening on
    its socket, Envoy processes per group (none with `start_envoy` False: tests).

    xDS carries private keys: a Unix socket (0600) in a directory only we can enter,
    never a TCP port another local user could connect to."""
    from portico.infra.envoy import EnvoyProcess

    xds_socket = state / "xds.sock"
    xds_socket.unlink(missing_ok=True)  # a control plane that died left it
    await xds.start_unix(str(xds_socket))
    exit.callback(xds_socket.unlink, missing_ok=True)  # (the addresses stay for the next run)

    def envoy(group: str, replica: int) -> EnvoyProcess:
        return EnvoyProcess("", 0, xds_socket=str(xds_socket), node_id=f"{group}/{replica}", node_cluster=group,
                            log_level=log_level, work_dir=infra.work_dir(group, replica))

    infra = HostInfrastructure(pool, envoy if start_envoy else None, port_offset=port_offset,
                               per_gateway=per_gateway, addresses_file=state / "addresses.json",
                               envoy_dirs=state / "envoy", replicas=replicas, reserved=reserved, on_change=on_change)
    return infra
