"""xDS over mutual TLS (Kubernetes mode): a real Envoy with the client certificate
the CA issued for its Gateway is served that Gateway's group; an Envoy asking for
another Gateway's group with it gets nothing. Certificates are renewed without a
restart: Envoy's client certificate through file-based SDS on a kubelet-style
volume, the server's for new handshakes."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from kube.volume import Volume
from test_xds_envoy import cluster, http_ir, route, to
from xds_harness import EchoBackend, free_port, request

from portico.infra.envoy import EnvoyProcess, XdsTLS, sds_files
from portico.infra.pki import CertificateAuthority, KeyPair, group_of_identity
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


def serial(pem: bytes) -> str:
    return f"{x509.load_pem_x509_certificate(pem).serial_number:x}"


async def until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.05)


def test_a_renewed_client_certificate_is_used_on_reconnect_without_restarting_envoy(
        tmp_path: Path, echo: EchoBackend) -> None:
    """The pod's layout: the Secret volume (certificate, key, CA) and the SDS files in the
    ConfigMap volume. The kubelet swaps the Secret volume's ..data symlink; the xDS server
    goes away and comes back (a controller restart); the same Envoy process reconnects
    with the new certificate."""
    async def main() -> None:
        ca = CertificateAuthority.create()
        server_pair = ca.issue_server([SERVER_NAME])
        first, second = ca.issue_client("apps/a"), ca.issue_client("apps/a")
        secret = Volume(tmp_path / "xds", {"tls.crt": first.cert_pem, "tls.key": first.key_pem,
                                           "ca.crt": ca.cert_pem})
        tls = XdsTLS(str(secret.path / "tls.crt"), str(secret.path / "tls.key"), str(secret.path / "ca.crt"),
                     SERVER_NAME, sds_dir=str(tmp_path / "config"), watched_directory=str(secret.path))
        Volume(tmp_path / "config", {name: text.encode() for name, text in sds_files(tls).items()})
        listen = free_port()
        svc = cluster("httproute/apps/svc/80", echo)
        model = http_ir(listen, [route("a", "/", to(svc.name))], [svc])
        xds = XdsServer(group_of_identity=group_of_identity)
        port = await xds.start_mtls("127.0.0.1", 0, server_pair.cert_pem, server_pair.key_pem, ca.cert_pem)
        xds.update("apps/a", model)
        envoy = EnvoyProcess("127.0.0.1", port, node_id="a-0", node_cluster="apps/a", xds_tls=tls,
                             log_level="warning")
        again: XdsServer | None = None
        try:
            await envoy.start()
            await until(lambda: [c["cert_serial"] for c in xds.connections()] == [serial(first.cert_pem)],
                        "Envoy connected with the first certificate")
            await until(lambda: xds.acked_version("apps/a") == xds.version("apps/a"), "never ACKed over mTLS")
            pid = envoy.pid
            assert pid is not None and (await asyncio.to_thread(request, listen, "/"))[0] == 200

            secret.update({"tls.crt": second.cert_pem, "tls.key": second.key_pem, "ca.crt": ca.cert_pem})
            # Envoy reads the files again on the move (its /certs lists the certificates it holds)
            await until(lambda: serial(second.cert_pem) in envoy.admin_get("/certs")[1].decode(),
                        "Envoy loaded the new certificate")
            await xds.stop(grace=0)  # the controller goes away: the connection drops
            again = XdsServer(group_of_identity=group_of_identity)
            await again.start_mtls("127.0.0.1", port, server_pair.cert_pem, server_pair.key_pem, ca.cert_pem)
            again.update("apps/a", model)
            await until(lambda: bool(again and again.connections()), "Envoy reconnected")
            assert [c["cert_serial"] for c in again.connections()] == [serial(second.cert_pem)]
            assert envoy.pid == pid and envoy.restarts == 0  # the same process: no restart
            await until(lambda: bool(again and again.acked_version("apps/a") == again.version("apps/a")),
                        "the reconnected Envoy ACKed")
            assert (await asyncio.to_thread(request, listen, "/"))[0] == 200
        finally:
            await envoy.stop()
            await xds.stop()
            if again is not None:
                await again.stop()

    asyncio.run(main())


def server_serial(port: int, client: KeyPair, ca_pem: bytes, tmp: Path) -> str:
    """The serial of the certificate the xDS server presents to a new TLS handshake."""
    (tmp / "c.crt").write_bytes(client.cert_pem)
    (tmp / "c.key").write_bytes(client.key_pem)
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.load_cert_chain(tmp / "c.crt", tmp / "c.key")
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return f"{x509.load_der_x509_certificate(der).serial_number:x}"


def test_a_renewed_server_certificate_serves_new_handshakes_and_keeps_connected_envoys(
        tmp_path: Path, echo: EchoBackend) -> None:
    async def main() -> None:
        ca = CertificateAuthority.create()
        old, new = ca.issue_server([SERVER_NAME]), ca.issue_server([SERVER_NAME])
        xds = XdsServer(group_of_identity=group_of_identity)
        port = await xds.start_mtls("127.0.0.1", 0, old.cert_pem, old.key_pem, ca.cert_pem)
        listen = free_port()
        svc = cluster("httproute/apps/svc/80", echo)
        xds.update("apps/a", http_ir(listen, [route("a", "/", to(svc.name))], [svc]))
        pair = ca.issue_client("apps/a")
        envoy = EnvoyProcess("127.0.0.1", port, node_id="a-0", node_cluster="apps/a", log_level="warning",
                             xds_tls=files(tmp_path, "a", pair.cert_pem, pair.key_pem, ca.cert_pem))
        try:
            await envoy.start()
            await until(lambda: xds.acked_version("apps/a") == xds.version("apps/a") > 0, "never ACKed")
            assert await asyncio.to_thread(server_serial, port, pair, ca.cert_pem, tmp_path) == serial(old.cert_pem)
            xds.renew(new.cert_pem, new.key_pem, ca.cert_pem)
            assert await asyncio.to_thread(server_serial, port, pair, ca.cert_pem, tmp_path) == serial(new.cert_pem)
            # the Envoy connected before the renewal is still served on its connection
            [before] = xds.connections()
            xds.update("apps/a", http_ir(listen, [route("a", "/", to(svc.name)), route("b", "/b", to(svc.name))],
                                         [svc]))
            await until(lambda: xds.acked_version("apps/a") == xds.version("apps/a"), "the update after renewal")
            assert [c["peer"] for c in xds.connections()] == [before["peer"]]
        finally:
            await envoy.stop()
            await xds.stop()

    asyncio.run(main())
