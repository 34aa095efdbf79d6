"""`portico echo`: the JSON echo of the conformance kit's format, over real HTTP."""

from __future__ import annotations

import asyncio
import json

from portico.echo import EchoServer, Identity, canonical_header


def test_canonical_header_names() -> None:
    assert canonical_header("x-forwarded-for") == "X-Forwarded-For"
    assert canonical_header("HOST") == "Host"


def test_echo_over_keep_alive_connection() -> None:
    async def scenario() -> list[dict[str, object]]:
        server = EchoServer(Identity(pod="echo-1", namespace="ns", service="svc"))
        port = await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        replies = []
        requests = [
            b"GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nx-test: one\r\nX-Test: two\r\n\r\n",
            b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
            b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ]
        for request in requests:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            replies.append(json.loads(await reader.readexactly(length)))
        writer.close()
        await server.stop()
        return replies

    first, second, third = asyncio.run(scenario())
    assert first["path"] == "/a?x=1" and first["host"] == "example.com" and first["method"] == "GET"
    assert first["headers"] == {"X-Test": ["one", "two"]}
    identity = (first["pod"], first["namespace"], first["service"], first["proto"])
    assert identity == ("echo-1", "ns", "svc", "HTTP/1.1")
    assert first["httpPort"] != "0"
    assert second["method"] == "POST" and third["path"] == "/c"


def test_bad_request() -> None:
    async def scenario() -> bytes:
        server = EchoServer(Identity())
        port = await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"nonsense\r\n\r\n")
        data = await reader.read()
        writer.close()
        await server.stop()
        return data

    assert asyncio.run(scenario()).split(b" ")[1] == b"400"
