"""HTTP/2 with prior knowledge (h2c, RFC 9113 section 3.3) for `portico echo`.

The HTTP/1.1 server hands a connection over when its first "request head" is the
HTTP/2 preface's; every stream is then answered by the same handler as HTTP/1.1
requests (the echo reports proto "HTTP/2.0"). Backends with appProtocol
kubernetes.io/h2c use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError

from portico.echo.behavior import Answer

# "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": an HTTP/1.1 head reader stops after the first blank line.
PREFACE_HEAD = b"PRI * HTTP/2.0\r\n\r\n"
PREFACE_TAIL = b"SM\r\n\r\n"
READ_SIZE = 65536
MAX_BODY = 10 * 1024 * 1024

# (method, target, version, headers with "host") -> the answer
Handler = Callable[[str, str, str, list[tuple[str, str]]], Awaitable[Answer]]


def text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("latin-1")


class H2CConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handle: Handler) -> None:
        self.reader, self.writer, self.handle = reader, writer, handle
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.requests: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        self.window_open = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, head: bytes) -> None:
        self.conn.initiate_connection()
        data = head + await self.reader.readexactly(len(PREFACE_TAIL))
        try:
            while data:
                if not self.receive(data):
                    break
                await self.flush()
                data = await self.reader.read(READ_SIZE)
        finally:
            for task in self.tasks:
                task.cancel()

    def receive(self, data: bytes) -> bool:
        """Process received bytes; False once the client ended the connection."""
        for event in self.conn.receive_data(data):
            if isinstance(event, RequestReceived):
                pairs = [(text(k), text(v)) for k, v in event.headers or ()]
                self.requests[event.stream_id] = (pairs, bytearray())
            elif isinstance(event, DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                body = self.requests.get(event.stream_id, ([], bytearray()))[1]
                if len(body) + len(event.data) > MAX_BODY:
                    self.conn.reset_stream(event.stream_id)
                else:
                    body += event.data
            elif isinstance(event, StreamEnded) and event.stream_id in self.requests:
                task = asyncio.ensure_future(self.answer(event.stream_id, *self.requests.pop(event.stream_id)))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif isinstance(event, StreamReset):
                self.requests.pop(event.stream_id, None)
            elif isinstance(event, WindowUpdated):
                self.window_open.set()
            elif isinstance(event, ConnectionTerminated):
                return False
        return True

    async def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()

    async def answer(self, stream_id: int, pairs: list[tuple[str, str]], _body: bytearray) -> None:
        pseudo = {k: v for k, v in pairs if k.startswith(":")}
        headers = [(k, v) for k, v in pairs if not k.startswith(":")]
        headers.insert(0, ("host", pseudo.get(":authority", "")))
        answer = await self.handle(pseudo.get(":method", ""), pseudo.get(":path", ""), "HTTP/2.0", headers)
        try:
            if answer.reset:
                self.conn.reset_stream(stream_id)
            else:
                await self.respond(stream_id, answer)
            await self.flush()
        except (StreamClosedError, ProtocolError, ConnectionError):
            pass  # the client went away or reset the stream first

    async def respond(self, stream_id: int, answer: Answer) -> None:
        headers = [(":status", str(answer.status)), ("content-length", str(len(answer.body)))]
        headers += [(k.lower(), v) for k, v in answer.headers]
        self.conn.send_headers(stream_id, headers, end_stream=not answer.body)
        body = answer.body
        while body:
            size = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size, len(body))
            if size <= 0:
                self.window_open.clear()
                await self.flush()
                await self.window_open.wait()
                continue
            self.conn.send_data(stream_id, body[:size], end_stream=size == len(body))
            body = body[size:]


async def serve_h2c(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                    handle: Handler) -> None:
    """Serve an h2c connection whose preface began with `head` (PREFACE_HEAD)."""
    await H2CConnection(reader, writer, handle).run(head)
