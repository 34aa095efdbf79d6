"""XdsServer ordering, driven by scripted delta ADS and VHDS clients (no Envoy): clusters
and endpoints before the listeners, routes and virtual hosts using them, cluster
removals after; the jwt_authn config (ECDS) a route names held before the route (or the
scope) is sent, and kept until no route Envoy holds names it; a version is ACKed once its
virtual hosts (or scopes) are."""

from __future__ import annotations

import asyncio

import grpc
from envoy.config.core.v3 import extension_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.route.v3 import rds_pb2_grpc
from google.rpc import status_pb2

from portico import ir
from portico.xds.jwt import JWT_FILTER
from portico.xds.resources import CLUSTER, ENDPOINT, EXTENSION, LISTENER, ROUTE, SCOPED, VHOST
from portico.xds.server import XdsServer


def model(cluster_name: str, route_config: str = "rc", jwt: ir.JWTAuthentication | None = None,
          domain: str = "*") -> ir.IR:
    """One listener, one route; with an exact `domain` its routes are scoped by Host."""
    c = ir.Cluster(cluster_name, (ir.Endpoint("127.20.0.1", 80),))
    r = ir.Route("r", ir.RouteMatch(), ir.RouteAction(backends=(ir.WeightedBackend(cluster_name, 1),), jwt=jwt))
    http = ir.HTTPConfig(route_config, (ir.VirtualHost("vh", (domain,), (r,)),))
    listener = ir.Listener("l", "127.30.1.1", 18081, filter_chains=(ir.FilterChain("fc", http=http),))
    return ir.IR(listeners=(listener,), clusters=(c,))


class FakeEnvoy:
    def __init__(self, call: grpc.aio.StreamStreamCall) -> None:
        self.call = call
        self.inbox: asyncio.Queue[discovery_pb2.DeltaDiscoveryResponse] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for resp in self.call:
            await self.inbox.put(resp)

    async def send(self, type_url: str, nonce: str = "", subscribe: tuple[str, ...] = (), error: str = "",
                   unsubscribe: tuple[str, ...] = ()) -> None:
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url, response_nonce=nonce, resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe)
        )
        if error:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.call.write(req)

    async def next(self) -> discovery_pb2.DeltaDiscoveryResponse:
        return await asyncio.wait_for(self.inbox.get(), 5)

    async def nothing(self) -> None:
        await asyncio.sleep(0.2)
        assert self.inbox.empty(), f"unexpected: {self.inbox.get_nowait()}"


def names(resp: discovery_pb2.DeltaDiscoveryResponse) -> list[str]:
    return sorted(r.name for r in resp.resources)


def test_order_of_pushes_and_acks() -> None:
    async def scenario() -> None:
        acks: list[int] = []
        nacks: list[tuple[int, str]] = []
        # the fake Envoy names no node: it is served group ""
        server = XdsServer(on_ack=lambda g, v: acks.append(v), on_nack=lambda g, v, m: nacks.append((v, m)))
        port = await server.start("127.0.0.1")
        server.update("", model("a"))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            envoy = FakeEnvoy(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources())
            await envoy.send(CLUSTER)
            cds = await envoy.next()
            assert (cds.type_url, names(cds)) == (CLUSTER, ["a", "portico/invalid-backend"])
            await envoy.send(LISTENER)
            await envoy.send(CLUSTER, nonce=cds.nonce)
            await envoy.nothing()  # cluster "a" has no endpoints yet: no listener
            await envoy.send(ENDPOINT, subscribe=("a",))
            eds = await envoy.next()
            assert (eds.type_url, names(eds)) == (ENDPOINT, ["a"])
            await envoy.send(ENDPOINT, nonce=eds.nonce)
            lds = await envoy.next()
            assert (lds.type_url, names(lds)) == (LISTENER, ["l"])
            await envoy.send(LISTENER, nonce=lds.nonce)
            await envoy.send(ROUTE, subscribe=("rc",))
            await envoy.nothing()  # the routes wait for the jwt_authn config the listener asks for too
            await envoy.send(EXTENSION, subscribe=(JWT_FILTER,))
            ecds = await envoy.next()
            assert (ecds.type_url, names(ecds)) == (EXTENSION, [JWT_FILTER])
            await envoy.nothing()  # ... and holds
            await envoy.send(EXTENSION, nonce=ecds.nonce)
            rds = await envoy.next()
            assert (rds.type_url, names(rds)) == (ROUTE, ["rc"])
            await envoy.send(ROUTE, nonce=rds.nonce)
            await envoy.nothing()
            assert acks == []  # the route configuration's virtual hosts are not there yet
            # Envoy opens a VHDS stream for the route configuration, naming nothing
            vhds = FakeEnvoy(rds_pb2_grpc.VirtualHostDiscoveryServiceStub(channel).DeltaVirtualHosts())
            await vhds.send(VHOST)
            hosts = await vhds.next()
            assert (hosts.type_url, names(hosts)) == (VHOST, ["rc/vh"])  # (its "*" answers every Host)
            await vhds.send(VHOST, nonce=hosts.nonce)
            await asyncio.sleep(0.1)
            assert acks == [1] and server.acked_version("") == 1

            # v2 switches the route to cluster "b": b first, the virtual host, and only then a's removal.
            server.update("", model("b"))
            cds = await envoy.next()
            assert (names(cds), list(cds.removed_resources)) == (["b"], [])
            await envoy.send(ENDPOINT, subscribe=("b",))
            eds = await envoy.next()
            assert names(eds) == ["b"]
            await vhds.nothing()  # "b" is not warm yet: the virtual host waits
            await envoy.send(CLUSTER, nonce=cds.nonce)
            await envoy.send(ENDPOINT, nonce=eds.nonce)
            host = await vhds.next()
            assert names(host) == ["rc/vh"]
            await envoy.nothing()  # the route configuration is the same; "a" stays while the host is not ACKed
            await vhds.send(VHOST, nonce=host.nonce)
            removal = await envoy.next()
            assert (removal.type_url, list(removal.removed_resources)) == (CLUSTER, ["a"])
            assert acks == [1]
            await envoy.send(CLUSTER, nonce=removal.nonce)
            await asyncio.sleep(0.1)
            assert acks == [1, 2]

            # v3's virtual host is rejected: NACK reported, "b" kept for the old routes.
            server.update("", model("c"))
            cds = await envoy.next()
            await envoy.send(ENDPOINT, subscribe=("c",))
            eds = await envoy.next()
            await envoy.send(CLUSTER, nonce=cds.nonce)
            await envoy.send(ENDPOINT, nonce=eds.nonce)
            host = await vhds.next()
            await vhds.send(VHOST, nonce=host.nonce, error="bad route")
            await envoy.nothing()
            assert nacks[0] == (3, "bad route") and server.acked_version("") == 2
            vhds.reader.cancel()
            vhds.call.cancel()
            envoy.reader.cancel()
            envoy.call.cancel()
        await server.stop()

    asyncio.run(scenario())


async def to_listeners(envoy: FakeEnvoy) -> None:
    """As Envoy starts with cluster "a": CDS, EDS and LDS subscribed and ACKed in Envoy's
    order, then the JWT filter's ECDS subscribed (not yet answered)."""
    await envoy.send(CLUSTER)
    cds = await envoy.next()
    await envoy.send(LISTENER)
    await envoy.send(CLUSTER, nonce=cds.nonce)
    await envoy.send(ENDPOINT, subscribe=("a",))
    eds = await envoy.next()
    await envoy.send(ENDPOINT, nonce=eds.nonce)
    lds = await envoy.next()
    await envoy.send(LISTENER, nonce=lds.nonce)
    await envoy.send(EXTENSION, subscribe=(JWT_FILTER,))


async def handshake(channel: grpc.aio.Channel) -> tuple[FakeEnvoy, FakeEnvoy]:
    """As Envoy starts on route configuration "rc" with cluster "a" and the JWT filter's
    ECDS: every type subscribed and ACKed in Envoy's order, then the VHDS stream's hosts."""
    envoy = FakeEnvoy(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources())
    await to_listeners(envoy)
    ecds = await envoy.next()
    await envoy.send(EXTENSION, nonce=ecds.nonce)
    await envoy.send(ROUTE, subscribe=("rc",))
    rds = await envoy.next()
    await envoy.send(ROUTE, nonce=rds.nonce)
    vhds = FakeEnvoy(rds_pb2_grpc.VirtualHostDiscoveryServiceStub(channel).DeltaVirtualHosts())
    await vhds.send(VHOST)
    hosts = await vhds.next()
    await vhds.send(VHOST, nonce=hosts.nonce)
    return envoy, vhds


def test_a_new_route_configuration_waits_for_its_own_vhds_stream() -> None:
    """Envoy opens a VHDS stream per route configuration once it has it; the stream of the
    one it replaced may stay open while its listener drains. A version with a new route
    configuration is ACKed only once a stream opened after it holds the virtual hosts."""
    async def scenario() -> None:
        acks: list[int] = []
        server = XdsServer(on_ack=lambda g, v: acks.append(v))
        port = await server.start("127.0.0.1")
        server.update("", model("a"))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            envoy, old = await handshake(channel)
            await asyncio.sleep(0.1)
            assert acks == [1]

            server.update("", model("a", "rc2"))  # the listener now uses route configuration rc2
            lds = await envoy.next()
            assert names(lds) == ["l"]
            await envoy.send(LISTENER, nonce=lds.nonce)
            await envoy.send(ROUTE, subscribe=("rc2",))
            rds = await envoy.next()
            assert names(rds) == ["rc2"]
            await envoy.send(ROUTE, nonce=rds.nonce)
            hosts = await old.next()  # every stream is sent every virtual host
            # (rc's stay while Envoy subscribes to rc: the replaced listener drains with them)
            assert (names(hosts), list(hosts.removed_resources)) == (["rc2/vh"], [])
            await old.send(VHOST, nonce=hosts.nonce)
            await asyncio.sleep(0.2)
            assert acks == [1]  # rc2's own VHDS stream has not even opened
            new = FakeEnvoy(rds_pb2_grpc.VirtualHostDiscoveryServiceStub(channel).DeltaVirtualHosts())
            await new.send(VHOST)
            hosts = await new.next()
            assert names(hosts) == ["rc/vh", "rc2/vh"]
            await new.send(VHOST, nonce=hosts.nonce)
            await asyncio.sleep(0.1)
            assert acks == [1, 2]
            await envoy.send(ROUTE, unsubscribe=("rc",))  # the drained listener is destroyed
            for stream in (old, new):
                removal = await stream.next()
                assert (names(removal), list(removal.removed_resources)) == ([], ["rc/vh"])
            for stream in (envoy, old, new):
                stream.reader.cancel()
                stream.call.cancel()
        await server.stop()

    asyncio.run(scenario())


def jwt_config(resp: discovery_pb2.DeltaDiscoveryResponse) -> jwt_pb2.JwtAuthentication:
    typed = extension_pb2.TypedExtensionConfig()
    resp.resources[0].resource.Unpack(typed)
    out = jwt_pb2.JwtAuthentication()
    typed.typed_config.Unpack(out)
    return out


def test_a_jwt_requirement_is_held_before_a_route_names_it_and_after() -> None:
    """A route gaining JWT: its requirement (ECDS) is sent and ACKed before its virtual host
    (VHDS, a stream of its own that Envoy may apply first). Losing it: the virtual host
    first, the requirement dropped only once Envoy holds the route without it."""
    async def scenario() -> None:
        acks: list[int] = []
        server = XdsServer(on_ack=lambda g, v: acks.append(v))
        port = await server.start("127.0.0.1")
        server.update("", model("a"))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            envoy, vhds = await handshake(channel)
            await asyncio.sleep(0.1)
            assert acks == [1]

            provider = ir.JWTProvider("shop/api/idp", issuer="https://idp.example", local_jwks='{"keys": []}')
            server.update("", model("a", jwt=ir.JWTAuthentication((provider,))))
            ecds = await envoy.next()
            assert set(jwt_config(ecds).providers) == {provider.name}
            await vhds.nothing()  # the route naming it waits for Envoy to hold it
            await envoy.send(EXTENSION, nonce=ecds.nonce)
            host = await vhds.next()
            assert names(host) == ["rc/vh"]
            await vhds.send(VHOST, nonce=host.nonce)
            await asyncio.sleep(0.1)
            assert acks == [1, 2]

            server.update("", model("a"))  # the policy goes
            host = await vhds.next()  # the route first: the config keeps the requirement meanwhile
            assert names(host) == ["rc/vh"]
            await envoy.nothing()
            await vhds.send(VHOST, nonce=host.nonce)
            ecds = await envoy.next()
            assert ecds.type_url == EXTENSION and not jwt_config(ecds).providers
            await envoy.send(EXTENSION, nonce=ecds.nonce)
            await asyncio.sleep(0.1)
            assert acks == [1, 2, 3]
            for stream in (envoy, vhds):
                stream.reader.cancel()
                stream.call.cancel()
        await server.stop()

    asyncio.run(scenario())


def test_a_jwt_requirement_is_held_before_a_scope_names_it_and_after() -> None:
    """The same ordering for routes scoped by Host (SRDS over ADS, `xds.scopes`): the
    requirement ACKed before the scope naming it is sent; dropped only after Envoy holds
    the scope without it."""
    async def scenario() -> None:
        acks: list[int] = []
        server = XdsServer(on_ack=lambda g, v: acks.append(v))
        port = await server.start("127.0.0.1")
        server.update("", model("a", domain="a.example"))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            envoy = FakeEnvoy(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources())
            await to_listeners(envoy)
            await envoy.send(SCOPED)  # (a wildcard subscription: every scope)
            ecds = await envoy.next()
            assert ecds.type_url == EXTENSION
            await envoy.send(EXTENSION, nonce=ecds.nonce)
            srds = await envoy.next()
            assert (srds.type_url, names(srds)) == (SCOPED, ["rc/a.example"])
            await envoy.send(SCOPED, nonce=srds.nonce)
            await asyncio.sleep(0.1)
            assert acks == [1]

            provider = ir.JWTProvider("shop/api/idp", issuer="https://idp.example", local_jwks='{"keys": []}')
            server.update("", model("a", jwt=ir.JWTAuthentication((provider,)), domain="a.example"))
            ecds = await envoy.next()
            assert ecds.type_url == EXTENSION and set(jwt_config(ecds).providers) == {provider.name}
            await envoy.nothing()  # the scope naming it waits for Envoy to hold it
            await envoy.send(EXTENSION, nonce=ecds.nonce)
            srds = await envoy.next()
            assert (srds.type_url, names(srds)) == (SCOPED, ["rc/a.example"])
            await envoy.send(SCOPED, nonce=srds.nonce)
            await asyncio.sleep(0.1)
            assert acks == [1, 2]

            server.update("", model("a", domain="a.example"))  # the policy goes
            srds = await envoy.next()  # the scope first: the config keeps the requirement meanwhile
            assert (srds.type_url, names(srds)) == (SCOPED, ["rc/a.example"])
            await envoy.nothing()
            await envoy.send(SCOPED, nonce=srds.nonce)
            ecds = await envoy.next()
            assert ecds.type_url == EXTENSION and not jwt_config(ecds).providers
            await envoy.send(EXTENSION, nonce=ecds.nonce)
            await asyncio.sleep(0.1)
            assert acks == [1, 2, 3]
            envoy.reader.cancel()
            envoy.call.cancel()
        await server.stop()

    asyncio.run(scenario())


def test_a_drained_route_configurations_virtual_hosts_are_held_out_of_the_version() -> None:
    """VHDS -> scoped routes: the replaced listener drains with its route configuration,
    so its virtual hosts stay on its VHDS stream for as long as Envoy subscribes to it.
    They are no part of the new version: it is ACKed without them, and neither they nor
    their stream closing (before or after Envoy unsubscribes) holds anything back."""
    async def scenario() -> None:
        acks: list[int] = []
        server = XdsServer(on_ack=lambda g, v: acks.append(v))
        port = await server.start("127.0.0.1")
        server.update("", model("a"))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            envoy, vhds = await handshake(channel)
            await asyncio.sleep(0.1)
            assert acks == [1]

            server.update("", model("a", domain="a.example"))  # scoped: a new listener, no rc
            lds = await envoy.next()
            assert names(lds) == ["l"]
            await envoy.send(LISTENER, nonce=lds.nonce)
            await envoy.send(SCOPED)
            srds = await envoy.next()
            assert (srds.type_url, names(srds)) == (SCOPED, ["rc/a.example"])
            await envoy.send(SCOPED, nonce=srds.nonce)
            await vhds.nothing()  # rc/vh stays for the draining listener
            await asyncio.sleep(0.1)
            assert acks == [1, 2]
            [connection] = server._connections
            assert connection.draining_virtual_hosts() == ["rc/vh"]

            vhds.reader.cancel()  # the drained listener's VHDS stream closes first
            vhds.call.cancel()
            await asyncio.sleep(0.1)
            server.update("", model("a", domain="b.example"))
            srds = await envoy.next()
            assert (names(srds), list(srds.removed_resources)) == (["rc/b.example"], ["rc/a.example"])
            await envoy.send(SCOPED, nonce=srds.nonce)
            await asyncio.sleep(0.1)
            assert acks == [1, 2, 3]
            await envoy.send(ROUTE, unsubscribe=("rc",))  # then Envoy unsubscribes: nothing held
            await envoy.nothing()
            assert connection.draining_virtual_hosts() == [] and acks == [1, 2, 3]
            envoy.reader.cancel()
            envoy.call.cancel()
        await server.stop()

    asyncio.run(scenario())
