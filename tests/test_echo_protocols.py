"""`portico echo` beyond HTTP/1.1: h2c, WebSocket, the gRPC echo service, and
echo-basic's conventions (delays, status codes, failing retries, answer headers)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded

from portico.echo import EchoServer, Identity
from portico.echo.behavior import parse_go_duration
from portico.echo.grpc import SERVICE, EchoRequest, EchoResponse, GRPCEchoServer

pytestmark = pytest.mark.timeout(60)


async def http1(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers["content-length"]))
    writer.close()
    return int(lines[0].split()[1]), headers, body


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: example.com\r\n{extra}Connection: close\r\n\r\n".encode()


def with_server(scenario: Any) -> Any:
    async def run() -> Any:
        server = EchoServer(Identity(pod="echo-1", namespace="ns", service="svc"))
        port = await server.start()
        try:
            return await scenario(server, port)
        finally:
            await server.stop()
    return asyncio.run(run())


def test_go_durations() -> None:
    assert parse_go_duration("1s") == 1.0
    assert parse_go_duration("1m30s") == 90.0
    assert parse_go_duration("250ms") == 0.25
    with pytest.raises(ValueError):
        parse_go_duration("1x")


def test_status_delay_and_answer_headers() -> None:
    async def scenario(server: EchoServer, port: int) -> None:
        status, _, body = await http1(port, get("/status/503"))
        assert (status, body) == (503, b"")
        started = time.monotonic()
        status, headers, body = await http1(port, get("/slow?delay=300ms", "X-Echo-Set-Header: X-A:1,X-B:2\r\n"))
        assert status == 200 and time.monotonic() - started >= 0.3
        assert headers["x-a"] == "1" and headers["x-b"] == "2"
        assert json.loads(body)["path"] == "/slow?delay=300ms"
        assert [r["path"] for r in server.seen] == ["/status/503", "/slow?delay=300ms"]

    with_server(scenario)


def test_retry_fails_first_then_succeeds() -> None:
    async def scenario(server: EchoServer, port: int) -> None:
        path = "/retry/x?uuid=u1&succeedAfter=2&responseCode=500"
        assert [(await http1(port, get(path)))[0] for _ in range(3)] == [500, 500, 200]
        # without responseCode a failing try resets the connection
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/retry/y?uuid=u2&succeedAfter=1"))
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()
        assert (await http1(port, get("/retry/y?uuid=u2&succeedAfter=1")))[0] == 200

    with_server(scenario)


def h2c_get(port: int, path: str) -> tuple[dict[str, str], dict[str, Any]]:
    """One GET over HTTP/2 with prior knowledge (a plain h2 client)."""
    conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                   (":authority", "example.com"), ("x-test", "h2")], end_stream=True)
        sock.sendall(conn.data_to_send())
        headers: dict[str, str] = {}
        body = b""
        while True:
            data = sock.recv(65536)
            assert data, "connection closed before the answer"
            for event in conn.receive_data(data):
                if isinstance(event, ResponseReceived):
                    headers = {str(k): str(v) for k, v in event.headers or ()}
                elif isinstance(event, DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, StreamEnded):
                    return headers, json.loads(body)
            sock.sendall(conn.data_to_send())


def test_h2c_prior_knowledge() -> None:
    async def scenario(server: EchoServer, port: int) -> tuple[dict[str, str], dict[str, Any]]:
        return await asyncio.to_thread(h2c_get, port, "/h2?x=1")

    headers, reply = with_server(scenario)
    assert headers[":status"] == "200"
    assert reply["proto"] == "HTTP/2.0" and reply["path"] == "/h2?x=1" and reply["host"] == "example.com"
    assert reply["headers"]["X-Test"] == ["h2"] and reply["pod"] == "echo-1"


def test_websocket_round_trip() -> None:
    websockets = pytest.importorskip("websockets.asyncio.client")

    async def scenario(server: EchoServer, port: int) -> tuple[object, object]:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("hello")
            text = await ws.recv()
            await ws.send(b"\x00\x01binary" * 1000)
            binary = await ws.recv()
            await ws.ping()
        return text, binary

    text, binary = with_server(scenario)
    assert text == "hello" and binary == b"\x00\x01binary" * 1000


def test_grpc_echo_service() -> None:
    async def scenario() -> tuple[Any, grpc.StatusCode]:
        server = GRPCEchoServer(Identity(pod="grpc-1", namespace="ns", service="svc"))
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                echo = channel.unary_unary(f"/{SERVICE}/EchoTwo", request_serializer=EchoRequest.SerializeToString,
                                           response_deserializer=EchoResponse.FromString)
                reply = await echo(EchoRequest(), metadata=(("x-version", "two"),))
                three = channel.unary_unary(f"/{SERVICE}/EchoThree", request_serializer=EchoRequest.SerializeToString,
                                            response_deserializer=EchoResponse.FromString)
                with pytest.raises(grpc.aio.AioRpcError) as failure:
                    await three(EchoRequest())
            assert server.calls[-1].method == f"/{SERVICE}/EchoTwo"
            return reply, failure.value.code()
        finally:
            await server.stop()

    reply, code = asyncio.run(scenario())
    a = reply.assertions
    assert a.fully_qualified_method == f"/{SERVICE}/EchoTwo"
    assert ("x-version", "two") in [(h.key, h.value) for h in a.headers]
    assert (a.context.pod, a.context.namespace, a.context.service_name) == ("grpc-1", "ns", "svc")
    assert code == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_echo_offers_server_reflection() -> None:
    """Issue 31 item 9: the gRPC recipe's `grpcurl -plaintext ... list` needs reflection.
    A reflection client (grpcurl's way) lists the service and resolves its methods."""
    from google.protobuf import descriptor_pool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    async def scenario() -> tuple[list[str], list[str]]:
        server = GRPCEchoServer(Identity(pod="grpc-1"))
        port = await server.start()
        try:
            def ask() -> tuple[list[str], list[str]]:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    database = ProtoReflectionDescriptorDatabase(channel)
                    services = list(database.get_services())
                    service = descriptor_pool.DescriptorPool(database).FindServiceByName(SERVICE)
                    return services, [m.name for m in service.methods]

            return await asyncio.to_thread(ask)
        finally:
            await server.stop()

    services, methods = asyncio.run(scenario())
    assert SERVICE in services
    assert {"Echo", "EchoTwo"} <= set(methods)


def test_tls_echo_answers_over_tls() -> None:
    """Issue 31 item 9: the TLS passthrough recipe needs a TLS server behind it
    (`portico echo --tls-port`)."""
    import ssl

    from portico.echo import self_signed_tls

    async def scenario() -> tuple[int, dict[str, Any], str]:
        server = EchoServer(Identity(pod="tls-1"), tls=self_signed_tls(["*.example.local"]))
        port = await server.start()
        try:
            client = ssl.create_default_context()
            client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client,
                                                          server_hostname="secure.example.local")
            cert = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            writer.write(get("/tls"))
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            body = await reader.read()
            writer.close()
            from cryptography import x509

            names = x509.load_der_x509_certificate(cert).extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
            return int(head.split()[1]), json.loads(body), names[0]
        finally:
            await server.stop()

    status, reply, name = asyncio.run(scenario())
    assert status == 200 and reply["path"] == "/tls" and reply["pod"] == "tls-1"
    assert name == "*.example.local"
