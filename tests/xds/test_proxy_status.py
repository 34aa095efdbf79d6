"""`portico proxy-status`'s source: the xDS server's view of each connected Envoy, driven
by a scripted delta ADS client (no Envoy): the version it applied against the newest,
and a NACK with Envoy's message while it keeps what it applied."""

from __future__ import annotations

import asyncio

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from test_xds_server_order import FakeEnvoy, model

from portico.proxystatus import proxy_status, table
from portico.xds.resources import CLUSTER
from portico.xds.server import XdsServer


def test_a_nacked_update_is_shown_with_envoys_message() -> None:
    async def scenario() -> None:
        server = XdsServer()
        view = proxy_status(server)
        port = await server.start("127.0.0.1")
        server.update("", model("a"))
        try:
            assert view() == {"items": []}  # nothing connected
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                envoy = FakeEnvoy(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources())
                await envoy.send(CLUSTER)
                cds = await envoy.next()
                await envoy.send(CLUSTER, nonce=cds.nonce, error="cluster 'a': invalid lb policy")
                await asyncio.sleep(0.2)
                [proxy] = view()["items"]
                assert (proxy["group"], proxy["applied"], proxy["latest"]) == ("", 0, 1)
                assert proxy["state"] == "NACKED" and proxy["nack_version"] == 1
                assert proxy["nack"] == "cluster 'a': invalid lb policy" and proxy["peer"].startswith("ipv4:127.")
                lines = table(view()["items"])
                assert lines[0].split()[:4] == ["GATEWAY", "NODE", "ADDRESS", "STATE"]
                assert "NACKED" in lines[1] and lines[1].endswith("v1: cluster 'a': invalid lb policy")
                envoy.call.cancel()
            await asyncio.sleep(0.2)
            assert view() == {"items": []}  # gone when its stream is
        finally:
            await server.stop()

    asyncio.run(scenario())
