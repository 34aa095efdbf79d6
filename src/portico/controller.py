"""`portico controller`: Kubernetes mode, composed from the shared core and its seams.

    KubernetesProvider (list+watch) → store → ControlLoop ⇄ XdsServer ⇄ Envoy
                                                 │
                      LeaderElector ─leading─► KubernetesStatusWriter → status subresources

Every replica watches and translates; only the leader writes status. The data
plane is, for now, the host infrastructure of standalone mode (`--data-plane
local`: Envoy processes on the controller's machine serving the cluster's
Gateways on loopback addresses), which is what runs the end-to-end tests
without a cluster; per-Gateway Envoy Deployments are the Kubernetes
infrastructure still to come (README, "Kubernetes mode").
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from portico import CONTROLLER_NAME
from portico.admin import AdminServer
from portico.control import ControlLoop
from portico.infra.addresses import DEFAULT_POOL, AddressPool
from portico.infra.host import HostInfrastructure
from portico.leader import LeaderElector
from portico.objects import ObjectKey
from portico.provider.kubernetes import KINDS, KubernetesProvider
from portico.standalone import private_dir
from portico.status.kubernetes import KubernetesStatusWriter
from portico.store import Store

log = logging.getLogger(__name__)


@dataclass
class ControllerOptions:
    kubeconfig: str | None = None  # default: in-cluster, then $KUBECONFIG / ~/.kube/config
    context: str | None = None
    namespace: str = "portico-system"  # where the controller runs (its Lease)
    controller_name: str = CONTROLLER_NAME
    leader_elect: bool = True
    lease_name: str = "portico-controller"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    identity: str = ""  # default: hostname and pid
    health_host: str = "127.0.0.1"
    health_port: int = 9912
    data_plane: str = "local"
    state_dir: str | None = None
    port_offset: int = 0
    address_pool: str = DEFAULT_POOL
    envoy_log_level: str = "warning"
    retry_missing: float = 30.0  # seconds between looks for CRDs not installed (or forbidden)


def client_for(options: ControllerOptions) -> AsyncClient:
    if options.kubeconfig:
        config = KubeConfig.from_file(options.kubeconfig)
    else:
        config = KubeConfig.from_env()  # the service account in a pod, else $KUBECONFIG or ~/.kube/config
    single = config.get(options.context) if options.context else None
    return AsyncClient(config=single or config)


def identity_of(options: ControllerOptions) -> str:
    return options.identity or f"{socket.gethostname()}-{os.getpid()}"


async def serve_controller(options: ControllerOptions, stop: asyncio.Event, client: AsyncClient | None = None,
                           start_envoy: bool = True) -> None:
    """Watch, translate, serve xDS and (as leader) write status until `stop` is set."""
    from portico.infra.envoy import EnvoyProcess
    from portico.xds.server import XdsServer

    if options.data_plane != "local":
        raise ValueError(f"data plane {options.data_plane!r} is not available (only 'local' for now)")
    client = client or client_for(options)
    store = Store()
    admin = AdminServer(store, options.health_host, options.health_port)
    await admin.start()
    xds = XdsServer()
    elector = LeaderElector(client, options.namespace, options.lease_name, identity_of(options),
                            lease_duration=options.lease_duration, renew_deadline=options.renew_deadline,
                            retry_period=options.retry_period) if options.leader_elect else None
    writer = KubernetesStatusWriter(client, KINDS, options.controller_name,
                                    is_leader=elector.is_leader if elector else (lambda: True),
                                    lookup=_lookup(store))
    if elector is not None:
        elector.on_change = lambda leading: writer.resume() if leading else None
    state = private_dir(Path(options.state_dir) if options.state_dir else _default_state(options),
                        with_parent=not options.state_dir)
    xds_socket = state / "xds.sock"
    infra: HostInfrastructure | None = None
    tasks: list[asyncio.Task[Any]] = []
    try:
        xds_socket.unlink(missing_ok=True)
        await xds.start_unix(str(xds_socket))

        def envoy(group: str, replica: int) -> EnvoyProcess:
            return EnvoyProcess("", 0, xds_socket=str(xds_socket), node_id=f"{group}/{replica}", node_cluster=group,
                                log_level=options.envoy_log_level,
                                work_dir=infra.work_dir(group, replica) if infra else None)

        infra = HostInfrastructure(AddressPool(options.address_pool), envoy if start_envoy else None,
                                   port_offset=options.port_offset, addresses_file=state / "addresses.json",
                                   envoy_dirs=state / "envoy")
        control = ControlLoop(store, infra, xds, writer, controller_name=options.controller_name)
        xds.on_ack, xds.on_nack = control.on_ack, control.on_nack
        admin.readiness = control.readiness
        await infra.reconcile({})
        provider = KubernetesProvider(client, KINDS, retry_missing=options.retry_missing)
        tasks.append(asyncio.create_task(control.run(provider.events(stop), ready=_ready(admin)), name="control"))
        if elector is not None:
            tasks.append(asyncio.create_task(elector.run(stop), name="leader election"))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({*tasks, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopped:
                task.result()  # the control loop only ends by failing: raise its error
        stop.set()
        tasks[0].cancel()  # the control loop runs until cancelled
        await writer.idle()  # statuses in flight are written before the lease is given up
        await asyncio.gather(*tasks, return_exceptions=True)
        stopped.cancel()
        log.info("stopping")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        admin.ready = False
        if infra is not None:
            await infra.stop()
        await xds.stop()
        await admin.stop()
        xds_socket.unlink(missing_ok=True)


def _lookup(store: Store) -> Callable[[ObjectKey], tuple[dict[str, Any], str] | None]:
    """The status and resourceVersion of an object as the watch last delivered it."""
    def lookup(key: ObjectKey) -> tuple[dict[str, Any], str] | None:
        obj = store.get(key)
        if obj is None:
            return None
        return dict(obj.document_status), str(obj.raw.get("metadata", {}).get("resourceVersion", ""))

    return lookup


def _default_state(options: ControllerOptions) -> Path:
    import tempfile

    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"portico-{os.getuid()}"
    return base / f"controller-{options.health_host}-{options.health_port}"


def _ready(admin: AdminServer) -> Callable[[], None]:
    def ready() -> None:
        admin.ready = True
        log.info("serving")

    return ready
