"""`portico echo`: a small HTTP backend answering with a JSON echo of the request.

The reply uses the field names of the conformance kit's echo backend (upstream's
echo-basic), so tests written against one work against the other:
`path` (request target), `host`, `method`, `proto`, `headers` (Go-canonical
names -> list of values, Host excluded), `httpPort`, `namespace`, `ingress`,
`service`, `pod`. One port serves HTTP/1.1 and WebSocket upgrades (aiohttp.web)
and HTTP/2 with prior knowledge (h2c, `portico.echo.h2c` on the h2 library);
echo-basic's conventions for delays, status codes, failing retries and answer
headers are in `portico.echo.behavior`.
Every request is recorded in `EchoServer.seen` (what a mirror received, say).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import ssl
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from portico.echo.behavior import Answer, Behavior
from portico.echo.h2c import PREFACE_HEAD, Handler, serve_h2c

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


class EchoServer:
    """HTTP/1.1 and WebSocket on aiohttp.web; h2c connections (the HTTP/2 preface
    first) go to `portico.echo.h2c` on the same port."""

    def __init__(self, identity: Identity, host: str = "127.0.0.1", port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.identity = identity
        self.host = host
        self.port = port
        self.tls = tls  # HTTPS (HTTP/1.1) instead of cleartext, e.g. behind a TLS passthrough listener
        self.behavior = Behavior()
        self.seen: deque[dict[str, Any]] = deque(maxlen=10_000)  # echo replies, oldest first
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._h2c: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=IDLE_TIMEOUT)
        await self._runner.setup()
        http1 = self._runner.server
        assert http1 is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Sniff(http1, self._serve_h2c), self.host, self.port,
                                                ssl=self.tls)
        self.port = int(self._server.sockets[0].getsockname()[1])
        if not self.identity.port:
            self.identity = dataclasses.replace(self.identity, port=self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._h2c):
                task.cancel()
            await self._server.wait_closed()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def answer(self, method: str, target: str, version: str, headers: list[tuple[str, str]]) -> Answer:
        """Record the request and answer it (HTTP/1.1 and h2c alike)."""
        reply = echo_reply(self.identity, method, target, version, headers)
        self.seen.append(reply)
        return await self.behavior.answer(reply)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        if request.headers.get("Upgrade", "").lower() == "websocket":
            self.seen.append(echo_reply(self.identity, request.method, request.raw_path, version, headers))
            return await _websocket(request)
        await request.read()
        answer = await self.answer(request.method, request.raw_path, version, headers)
        if answer.reset:
            reset(request.transport)
            return web.Response(status=500)  # never sent: the connection is gone
        out = web.Response(status=answer.status, body=answer.body, content_type="text/plain")
        for name, value in answer.headers:
            if name.lower() == "content-type":
                out.headers["Content-Type"] = value
            else:
                out.headers.add(name, value)
        return out

    def _serve_h2c(self, transport: asyncio.Transport, data: bytes) -> asyncio.Protocol:
        """A StreamReader/Writer pair over the connection for the h2 state machine."""
        reader = asyncio.StreamReader(limit=MAX_HEAD)

        def connected(r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(_h2c_session(r, writer, self.answer))
            self._h2c.add(task)
            task.add_done_callback(self._h2c.discard)

        protocol = asyncio.StreamReaderProtocol(reader, connected)
        protocol.connection_made(transport)
        protocol.data_received(data)
        return protocol


async def _h2c_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handle: Handler) -> None:
    try:
        head = await reader.readexactly(len(PREFACE_HEAD))
        await serve_h2c(reader, writer, head, handle)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    """Echo every message until the client closes (aiohttp answers pings and closes)."""
    ws = web.WebSocketResponse(max_msg_size=MAX_BODY)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


class _Sniff(asyncio.Protocol):
    """The first bytes of a connection decide its protocol: the HTTP/2 preface (h2c with
    prior knowledge, RFC 9113 section 3.3) or HTTP/1.1 (aiohttp's request handler)."""

    def __init__(self, http1: Callable[[], asyncio.Protocol],
                 h2c: Callable[[asyncio.Transport, bytes], asyncio.Protocol]) -> None:
        self.http1, self.h2c = http1, h2c
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        if len(self.buffer) < len(PREFACE_HEAD) and PREFACE_HEAD.startswith(self.buffer):
            return  # not enough to tell yet
        if self.buffer.startswith(PREFACE_HEAD):
            self.transport.set_protocol(self.h2c(self.transport, self.buffer))
            return
        protocol = self.http1()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(self.buffer)


def reset(transport: asyncio.Transport | None) -> None:
    """Close the connection with a TCP reset (SO_LINGER 0), as a crashing backend would."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def self_signed_tls(names: list[str]) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for `names` (DNS names, or
    IP addresses), offering HTTP/1.1 by ALPN: the echo behind a TLS passthrough route."""
    import datetime
    import ipaddress
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "echo")])
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False).sign(key, hashes.SHA256()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory() as d:  # (load_cert_chain reads files only)
        path = f"{d}/echo.pem"
        with open(path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        context.load_cert_chain(path)
    return context


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
