"""The ADS server: serves `build(ir)` to Envoy over delta xDS (DeltaAggregatedResources,
and DeltaVirtualHosts for the virtual hosts of its route configurations).

One snapshot per Envoy group (Envoy Gateway's snapshot cache keyed by node): an
Envoy's bootstrap names its group as `node.cluster`, and it is only ever served
that group's resources (secrets included). Versions, ACKs and NACKs are per
group, so a NACK from one Gateway's Envoy never holds back another's.

Each connected Envoy (group and node.id) is a `Connection` (`portico.xds.connection`):
its ADS stream, its VHDS streams, the ordering of what it is sent and what it has
applied. A group's version is ACKed once every connected Envoy of it has applied it; a
NACK is logged with Envoy's error detail, reported through `on_nack`, and the previous
config keeps serving. Versions superseded before they were fully applied are never ACKed
on their own: the newest one is (`on_ack` is monotonic).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.route.v3 import rds_pb2_grpc

from portico.ir import IR
from portico.xds.connection import Connection
from portico.xds.resources import SCOPED, VHOST, Builder, Resources, Serialized, packed, resource_version
from portico.xds.stream import CLOSED, Entry, Snapshot, Stream, Versioned, empty, namespace

log = logging.getLogger("portico.xds")

AckCallback = Callable[[str, int], None]  # (group, version)
NackCallback = Callable[[str, int, str], None]  # (group, version, Envoy's message)
# The xDS group a client certificate's URI SAN names (None: none), for mutual TLS
GroupOfIdentity = Callable[[str], "str | None"]


async def _serve(server: XdsServer, requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
                 context: grpc.aio.ServicerContext, vhds: bool) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
    """One Envoy stream, ADS or VHDS: requests in, its connection's responses out."""
    allowed = server._certificate_group(context) if server.mtls else None
    if server.mtls and allowed is None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no Portico gateway identity in the certificate")
    stream = Stream(context.peer(), vhds)
    if server.mtls:
        stream.certificate = _peer_certificate(context)
    reader = asyncio.create_task(_read(requests, stream.queue))
    log.info("xds: Envoy connected from %s (%s)", stream.peer, stream.kind)
    try:
        while (batch := await stream.requests()) is not None:
            for req in batch:
                log.debug(
                    "xds %s: request %s nonce=%r +%d -%d%s",
                    stream.peer,
                    req.type_url.rsplit(".", 1)[-1],
                    req.response_nonce,
                    len(req.resource_names_subscribe),
                    len(req.resource_names_unsubscribe),
                    " NACK" if req.HasField("error_detail") else "",
                )
                connection = server._owners.get(stream)
                if connection is None:
                    refused = _refusal(req.node, allowed)
                    if refused:
                        log.warning("xds %s: refused: %s", stream.peer, refused)
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED, refused)
                    connection = server._attach(stream, req.node.cluster, req.node.id)
                connection.handle(stream, req)
            connection = server._owners.get(stream)  # (a VHDS stream follows its Envoy's newest ADS stream)
            if connection is not None:
                for resp in connection.step(stream):
                    yield resp
    finally:
        reader.cancel()
        server._detach(stream)
        log.info("xds: Envoy %s stream from %s closed", stream.kind, stream.peer)


def _peer_certificate(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The serial number (hex) and expiry (ISO 8601) of the client certificate a stream
    was opened with: proxy-status shows them, so a rotation can be followed per Envoy."""
    from cryptography import x509  # (here: standalone's xDS over a Unix socket never loads it)

    pem = next(iter(context.auth_context().get("x509_pem_cert", ())), b"")
    try:
        cert = x509.load_pem_x509_certificate(pem if isinstance(pem, bytes) else str(pem).encode())
    except ValueError:
        return {}
    return {"serial": f"{cert.serial_number:x}", "expires": cert.not_valid_after_utc.isoformat()}


def _refusal(node: Any, allowed: str | None) -> str:
    """Why an Envoy naming `node` may not be served ("": it may); `allowed` is the only group
    its certificate lets it ask for (None: a local channel)."""
    if allowed is not None and node.cluster != allowed:
        # an Envoy serves only its own Gateway: a certificate names exactly one
        return f"node {node.id!r} asks for group {node.cluster!r}, its certificate names {allowed!r}"
    return ""


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer,  # type: ignore[misc]
               rds_pb2_grpc.VirtualHostDiscoveryServiceServicer):  # type: ignore[misc]
    """Both delta services Envoy streams from: ADS and VHDS (`_serve`)."""

    def __init__(self, server: XdsServer) -> None:
        self.server = server

    async def DeltaAggregatedResources(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        async for response in _serve(self.server, request_iterator, context, vhds=False):
            yield response

    async def DeltaVirtualHosts(  # noqa: N802 (gRPC method name)
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        async for response in _serve(self.server, request_iterator, context, vhds=True):
            yield response


async def _read(requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], queue: asyncio.Queue[object]) -> None:
    try:
        async for req in requests:
            queue.put_nowait(req)
    except (asyncio.CancelledError, grpc.aio.AioRpcError):
        pass
    finally:
        queue.put_nowait(CLOSED)


@dataclass
class _Built:
    """One type of one update: the builder's resources, their entries, and the entries by
    id(resource) (the next update reuses those of resources the builder reused)."""

    resources: dict[str, Any]
    entries: dict[str, Versioned]
    cache: dict[int, tuple[Any, Entry]]


@dataclass
class _Group:
    """One Envoy group's newest snapshot, the builder memo behind it and its ACK state."""

    snapshot: Snapshot = field(default_factory=empty)
    builder: Builder = field(default_factory=Builder)
    # type URL -> what the last update built of it
    inputs: dict[str, _Built] = field(default_factory=dict)
    acked: int = 0
    scoped: frozenset[str] = frozenset()  # the route configurations scoped by Host in the newest version
    # route configuration -> the scopes it had before it went to VHDS (`XdsServer._scopes`)
    retained: dict[str, dict[str, Versioned]] = field(default_factory=dict)


class XdsServer:
    """Delta ADS server with one configuration per Envoy group (node.cluster).

    `group_of_identity` maps a client certificate's URI SAN to the group it names (None:
    none); `start_mtls` needs it: each Envoy is then served only its certificate's group."""

    def __init__(self, on_ack: AckCallback | None = None, on_nack: NackCallback | None = None,
                 group_of_identity: GroupOfIdentity | None = None) -> None:
        self.on_ack = on_ack
        self.on_nack = on_nack
        self._group_of_identity = group_of_identity
        self._groups: dict[str, _Group] = {}
        # every Envoy with a stream open; the newest per (group, node) is the one new streams join
        self._connections: list[Connection] = []
        self._owners: dict[Stream, Connection] = {}  # stream -> the connection serving it
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.mtls = False  # serving Envoys over mutual TLS: each gets only the group its certificate names
        self._tls: grpc.ServerCertificateConfiguration | None = None  # the newest server certificate (mTLS)
        self._tls_changed = False  # not yet handed to grpc

    def version(self, group: str) -> int:
        """The newest version of `group` passed to Envoy (0 before its first `update`)."""
        return self._group(group).snapshot.version

    def acked_version(self, group: str) -> int:
        """The newest version of `group` every connected Envoy of it has fully applied (0: none)."""
        return self._group(group).acked

    def envoys(self) -> list[tuple[str, str]]:
        """(group, node id) of each connected Envoy (with its ADS stream open)."""
        return [(c.group, c.node) for c in self._connections if c.ads is not None]

    def connections(self) -> list[dict[str, Any]]:
        """Each connected Envoy (ADS stream open): its group, node id, peer address, the
        newest version it applied, the group's newest version, its last NACK (the
        version and Envoy's message; 0 and "" if none), and over mutual TLS the serial and
        expiry of the client certificate its ADS stream was opened with ("" otherwise). A
        read-only view for operators."""
        return [{"group": c.group, "node": c.node, "peer": c.ads.peer, "applied": c.applied,
                 "latest": self._group(c.group).snapshot.version,
                 "nack_version": c.nack_reported if c.last_error else 0, "nack": c.last_error,
                 "cert_serial": c.ads.certificate.get("serial", ""),
                 "cert_expires": c.ads.certificate.get("expires", "")}
                for c in self._connections if c.ads is not None]

    def _group(self, name: str) -> _Group:
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = _Group()
        return group

    async def start(self, host: str, port: int = 0) -> int:
        """Listen on host:port (0: ephemeral); returns the bound port."""
        return await self._start(f"{host}:{port}")

    async def start_unix(self, path: str) -> None:
        """Listen on the Unix socket `path`, readable and writable by this user only
        (put it in a private directory too: the mode is set once the socket exists)."""
        await self._start(f"unix:{path}")
        os.chmod(path, 0o600)

    async def start_mtls(self, host: str, port: int, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> int:
        """Listen on host:port over TLS, requiring a client certificate the CA issued
        (Kubernetes mode: Envoy pods connect from the network). `renew` replaces the
        server's certificate for the handshakes after it."""
        if self._group_of_identity is None:
            raise ValueError("xds: mutual TLS needs group_of_identity (which group a certificate names)")
        self._tls = grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)], root_certificates=ca_pem)
        self._tls_changed = False
        # grpc asks before each handshake (from its own thread): the new configuration once, then None (keep it)
        credentials = grpc.dynamic_ssl_server_credentials(self._tls, self._next_tls, require_client_authentication=True)
        self.mtls = True
        return await self._start(f"{host}:{port}", credentials)

    def renew(self, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> None:
        """Serve new TLS handshakes with this certificate (and trust this CA for clients);
        connections already open keep theirs: no Envoy is disconnected."""
        self._tls = grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)], root_certificates=ca_pem)
        self._tls_changed = True

    def _next_tls(self) -> grpc.ServerCertificateConfiguration | None:
        if not self._tls_changed:
            return None
        self._tls_changed = False
        return self._tls

    async def _start(self, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
        self._loop = asyncio.get_running_loop()
        server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", 256 * 1024 * 1024),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ]
        )
        servicer = _Servicer(self)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
        rds_pb2_grpc.add_VirtualHostDiscoveryServiceServicer_to_server(servicer, server)
        bound: int = (server.add_secure_port(address, credentials) if credentials is not None
                      else server.add_insecure_port(address))
        if bound == 0:
            raise OSError(f"xds: cannot listen on {address}")
        await server.start()
        self._server = server
        log.info("xds: ADS server listening on %s", address if address.startswith("unix:") else
                 f"{address.rpartition(':')[0]}:{bound}")
        return bound

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    def update(self, group: str, ir: IR) -> int:
        """Build `ir` as the newest version of `group` and push what changed; returns its version."""
        state = self._group(group)
        entries: dict[str, Mapping[str, Versioned]] = {}
        built = state.builder.build(ir)
        for type_url, by_name in built.wire().items():
            if type_url in (VHOST, SCOPED):  # made with their versions (thousands of them)
                entries[type_url] = built.virtual_hosts if type_url == VHOST else self._scopes(state, built)
                continue
            before = state.inputs.get(type_url)
            if before is None or before.resources is not by_name:  # else the builder reused the whole dict
                cache = before.cache if before is not None else {}
                before = state.inputs[type_url] = _Built(by_name, {}, {})
                for name, msg in by_name.items():
                    before.entries[name] = self._entry(msg, cache, before.cache)
            entries[type_url] = before.entries
        state.snapshot = Snapshot(state.snapshot.version + 1, entries)
        self._notify(group)
        return state.snapshot.version

    @staticmethod
    def _scopes(state: _Group, built: Resources) -> Mapping[str, Versioned]:
        """The scopes to serve: the builder's, and those of each route configuration that
        went from scoped routes to VHDS while it still is served by VHDS: the connection
        manager it replaced drains with them (its kept-alive connections would get 404),
        and nothing tells the server when it is gone (scoped RDS is a wildcard
        subscription). They go when the configuration is scoped again or not served."""
        switched = state.scoped - state.builder.scoped
        if switched:
            previous = state.snapshot.resources[SCOPED]
            for name in previous.keys():
                config = namespace(name)  # (`scopes.scope_name`: "<configuration>/<hostname>", as VHDS names)
                if config in switched:
                    state.retained.setdefault(config, {})[name] = previous[name]
        state.scoped = state.builder.scoped
        if state.retained:
            state.retained = {c: kept for c, kept in state.retained.items() if c in built.routes}
        if not state.retained:
            return built.scopes
        return {**{n: e for kept in state.retained.values() for n, e in kept.items()}, **built.scopes}

    def remove(self, group: str) -> None:
        """Forget `group`: its Envoys (if any still connect) are served nothing."""
        state = self._groups.pop(group, None)
        if state is not None and any(c.group == group for c in self._connections):
            self._groups[group] = _Group(snapshot=empty(state.snapshot.version + 1))
            self._notify(group)

    @staticmethod
    def _entry(msg: Any, previous: dict[int, tuple[Any, Entry]], cache: dict[int, tuple[Any, Entry]]) -> Versioned:
        """Hash and pack `msg`, unless the builder reused it from the previous update."""
        if isinstance(msg, Serialized):
            return msg  # versioned already, its Any made when sent (no copy kept beside its bytes)
        cached = previous.get(id(msg))
        entry = cached[1] if cached is not None and cached[0] is msg else Entry(resource_version(msg), packed(msg))
        cache[id(msg)] = (msg, entry)  # holding msg keeps its id() unique
        return entry

    def _notify(self, group: str) -> None:
        loop = self._loop
        for connection in [c for c in self._connections if c.group == group]:
            if loop is None or _running_loop() is loop:
                connection.wake()
            else:
                loop.call_soon_threadsafe(connection.wake)

    # ------------------------------------------------------------ connections

    def _certificate_group(self, context: grpc.aio.ServicerContext) -> str | None:
        """The xDS group the peer's client certificate names (its URI SAN)."""
        assert self._group_of_identity is not None  # (start_mtls checked)
        auth = context.auth_context()
        for key in ("peer_spiffe_id", "x509_uri_san", "peer_uri"):
            for value in auth.get(key, ()):
                group = self._group_of_identity(value.decode() if isinstance(value, bytes) else str(value))
                if group:
                    return group
        return None

    def _attach(self, stream: Stream, group: str, node: str) -> Connection:
        """Join `stream` to its Envoy's (group and node) connection. A VHDS stream joins
        the newest one; an ADS stream starts a new one, which takes over the VHDS streams
        of the one it replaces (an Envoy reconnecting: the old ADS stream, if not closed
        yet, is served from the old connection until it closes)."""
        log.info("xds %s: node %r of group %r%s", stream.peer, node, group, " (VHDS)" if stream.vhds else "")
        current = next((c for c in reversed(self._connections) if (c.group, c.node) == (group, node)), None)
        if stream.vhds and current is not None:
            connection = current
        else:
            connection = Connection(group, node, lambda: self._group(group).snapshot, self._applied, self._nacked)
            self._connections.append(connection)
            if current is not None:
                connection.vhds, current.vhds = current.vhds, []
                for moved in connection.vhds:
                    self._owners[moved] = connection
                if not current.streams:
                    self._connections.remove(current)
        if stream.vhds:
            connection.vhds.append(stream)
            if connection.ads is not None:
                connection.ads.wake()
        else:
            connection.ads = stream
        self._owners[stream] = connection
        return connection

    def _detach(self, stream: Stream) -> None:
        connection = self._owners.pop(stream, None)
        if connection is None:
            return
        if stream is connection.ads:
            connection.ads = None
        else:
            connection.vhds.remove(stream)
            if connection.ads is not None:
                connection.ads.wake()
        if not connection.streams:
            self._connections.remove(connection)
        if connection.ads is None:
            self._applied(connection)  # the group's other Envoys may have applied a newer version

    def _applied(self, connection: Connection) -> None:
        """`connection` applied a newer version (or left): ACK the newest version every
        connected Envoy of its group has applied."""
        state = self._group(connection.group)
        versions = [c.applied for c in self._connections if c.group == connection.group and c.ads is not None]
        if not versions or min(versions) <= state.acked:
            return
        state.acked = min(versions)
        log.info("xds: group %s version %d ACKed", connection.group, state.acked)
        if self.on_ack is not None:
            self.on_ack(connection.group, state.acked)

    def _nacked(self, group: str, version: int, type_url: str, message: str) -> None:
        kind = type_url.rsplit(".", 1)[-1] or "config"
        log.warning("xds: Envoy of group %s rejected %s of version %d: %s", group, kind, version, message)
        if self.on_nack is not None:
            self.on_nack(group, version, message)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        return loop
    except RuntimeError:
        return None
