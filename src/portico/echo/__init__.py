"""`portico echo`: a small HTTP backend answering with a JSON echo of the request.

The reply uses the field names of the conformance kit's echo backend (upstream's
echo-basic), so tests written against one work against the other:
`path` (request target), `host`, `method`, `proto`, `headers` (Go-canonical
names -> list of values, Host excluded), `httpPort`, `namespace`, `ingress`,
`service`, `pod`. One port serves HTTP/1.1, HTTP/2 with prior knowledge (h2c,
`echo_h2c`) and WebSocket upgrades (`echo_ws`); echo-basic's conventions for
delays, status codes, failing retries and answer headers are in `echo_behavior`.
Every request is recorded in `EchoServer.seen` (what a mirror received, say).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import struct
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol

from portico.echo.behavior import Answer, Behavior
from portico.echo.h2c import PREFACE_HEAD, serve_h2c
from portico.echo.ws import ProtocolError, is_upgrade, serve_websocket

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
MAX_BODY = 10 * 1024 * 1024
IDLE_TIMEOUT = 120.0


@dataclass(frozen=True)
class Identity:
    """Who answers: the fields a Kubernetes pod would report."""

    pod: str = "echo"
    namespace: str = ""
    service: str = ""
    port: int = 0


def canonical_header(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey: 'x-foo-bar' -> 'X-Foo-Bar'."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def go_headers(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        if name.lower() != "host":
            out.setdefault(canonical_header(name), []).append(value)
    return out


def echo_reply(identity: Identity, method: str, target: str, version: str,
               headers: list[tuple[str, str]]) -> dict[str, Any]:
    host = next((v for k, v in headers if k.lower() == "host"), "")
    return {
        "path": target,
        "host": host,
        "method": method,
        "proto": version,
        "headers": go_headers(headers),
        "httpPort": str(identity.port),
        "namespace": identity.namespace,
        "ingress": "",
        "service": identity.service,
        "pod": identity.pod,
    }


class BadRequest(Exception):
    pass


def parse_head(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"malformed request line {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"malformed header line {line!r}")
        headers.append((name, value.strip()))
    return parts[0], parts[1], parts[2], headers


def _header(headers: list[tuple[str, str]], name: str) -> str:
    return ",".join(v for k, v in headers if k.lower() == name)


async def read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    if "chunked" in _header(headers, "transfer-encoding").lower():
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise BadRequest("body too large")
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length = _header(headers, "content-length").split(",")[0].strip()
    if not length:
        return b""
    if not length.isdigit() or int(length) > MAX_BODY:
        raise BadRequest("bad content-length")
    return await reader.readexactly(int(length))


def render(status: int, body: bytes, content_type: str, keep_alive: bool, head_only: bool,
           extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        *(f"{k}: {v}" for k, v in extra if k.lower() != "content-type"),
        f"Content-Type: {next((v for k, v in extra if k.lower() == 'content-type'), content_type)}",
        f"Content-Length: {len(body)}",
        f"Date: {formatdate(usegmt=True)}",
    ]
    if not keep_alive:
        lines.append("Connection: close")
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return out if head_only else out + body


class EchoServer:
    def __init__(self, identity: Identity, host: str = "127.0.0.1", port: int = 0) -> None:
        self.identity = identity
        self.host = host
        self.port = port
        self.behavior = Behavior()
        self.seen: deque[dict[str, Any]] = deque(maxlen=10_000)  # echo replies, oldest first
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_HEAD)
        self.port = int(self._server.sockets[0].getsockname()[1])
        if not self.identity.port:
            self.identity = dataclasses.replace(self.identity, port=self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def answer(self, method: str, target: str, version: str, headers: list[tuple[str, str]]) -> Answer:
        """Record the request and answer it (HTTP/1.1 and h2c alike)."""
        reply = echo_reply(self.identity, method, target, version, headers)
        self.seen.append(reply)
        return await self.behavior.answer(reply)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ProtocolError):
            pass
        finally:
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True to keep the connection open."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
        except asyncio.IncompleteReadError:
            return False  # the client closed between requests
        if head == PREFACE_HEAD:
            await serve_h2c(reader, writer, head, self.answer)
            return False
        try:
            method, target, version, headers = parse_head(head)
            if is_upgrade(headers):
                self.seen.append(echo_reply(self.identity, method, target, version, headers))
                await serve_websocket(reader, writer, headers)
                return False
            if _header(headers, "expect").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await read_body(reader, headers)
        except (BadRequest, ValueError) as e:
            writer.write(render(400, f"{e}\n".encode(), "text/plain", False, False))
            await writer.drain()
            return False
        answer = await self.answer(method, target, version, headers)
        if answer.reset:
            reset(writer)
            return False
        keep_alive = version == "HTTP/1.1" and "close" not in _header(headers, "connection").lower()
        writer.write(render(answer.status, answer.body, "text/plain", keep_alive, method == "HEAD", answer.headers))
        await writer.drain()
        return keep_alive


def reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP reset (SO_LINGER 0), as a crashing backend would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Serving(Protocol):
    """An echo server (HTTP or gRPC): bound by start(), closed by stop()."""

    async def start(self) -> int: ...

    async def stop(self) -> None: ...


async def serve_until(server: Serving, what: str, stop: asyncio.Event) -> None:
    """Run `server` until `stop` is set."""
    bound = await server.start()
    log.info("%s listening on port %d", what, bound)
    try:
        await stop.wait()
    finally:
        await server.stop()
