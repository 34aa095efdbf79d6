"""xDS over mutual TLS (Kubernetes mode): a real Envoy with the client certificate
the CA issued for its Gateway is served that Gateway's group; an Envoy asking for
another Gateway's group with it gets nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_xds_envoy import cluster, http_ir, route, to
from xds_harness import EchoBackend, free_port, request

from portico.infra.envoy import EnvoyProcess, XdsTLS
from portico.infra.pki import CertificateAuthority, group_of_identity
from portico.xds.server import XdsServer

pytestmark = pytest.mark.timeout(90)
SERVER_NAME = "portico-xds.portico-system.svc"


def files(tmp: Path, name: str, cert: bytes, key: bytes, ca: bytes) -> XdsTLS:
    paths = {}
    for suffix, data in (("crt", cert), ("key", key), ("ca", ca)):
        path = tmp / f"{name}.{suffix}"
        path.write_bytes(data)
        paths[suffix] = str(path)
    return XdsTLS(paths["crt"], paths["key"], paths["ca"], SERVER_NAME)


def test_each_envoy_gets_only_the_group_its_certificate_names(tmp_path: Path, echo: EchoBackend) -> None:
    async def main() -> None:
        ca = CertificateAuthority.create()
        server_pair = ca.issue_server([SERVER_NAME])
        xds = XdsServer(group_of_identity=group_of_identity)
        port = await xds.start_mtls("127.0.0.1", 0, server_pair.cert_pem, server_pair.key_pem, ca.cert_pem)
        listen_a, listen_b = free_port(), free_port()
        svc = cluster("httproute/apps/svc/80", echo)
        xds.update("apps/a", http_ir(listen_a, [route("a", "/", to(svc.name))], [svc]))
        xds.update("apps/b", http_ir(listen_b, [route("b", "/", to(svc.name))], [svc]))
        cert_a = ca.issue_client("apps/a")
        tls_a = files(tmp_path, "a", cert_a.cert_pem, cert_a.key_pem, ca.cert_pem)
        own = EnvoyProcess("127.0.0.1", port, node_id="a-0", node_cluster="apps/a", xds_tls=tls_a,
                           log_level="warning")
        # the same certificate, asking for the other Gateway's group
        thief = EnvoyProcess("127.0.0.1", port, node_id="b-0", node_cluster="apps/b", xds_tls=tls_a,
                             log_level="warning")
        try:
            await own.start()
            await thief.start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while xds.acked_version("apps/a") < xds.version("apps/a"):
                assert loop.time() < deadline, "group apps/a never ACKed over mTLS"
                await asyncio.sleep(0.05)
            assert (await asyncio.to_thread(request, listen_a, "/"))[0] == 200
            await asyncio.sleep(1.0)
            assert xds.acked_version("apps/b") == 0  # refused: nothing was served
            status, body = await asyncio.to_thread(thief.admin_get, "/config_dump")
            assert status == 200 and b"httproute/apps/svc" not in body and f":{listen_b}".encode() not in body
        finally:
            await own.stop()
            await thief.stop()
            await xds.stop()

    asyncio.run(main())
