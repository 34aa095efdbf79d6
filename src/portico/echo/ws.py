"""WebSocket echo for `portico echo` (RFC 6455): the HTTP/1.1 Upgrade handshake,
then every text or binary message is sent back as it came; pings are answered
and a close is returned. Backends with appProtocol kubernetes.io/ws use it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 16 * 1024 * 1024
IDLE_TIMEOUT = 120.0
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class ProtocolError(Exception):
    pass


def header(headers: list[tuple[str, str]], name: str) -> str:
    return ",".join(v for k, v in headers if k.lower() == name)


def is_upgrade(headers: list[tuple[str, str]]) -> bool:
    """An `Upgrade: websocket` request (RFC 6455 section 4.1)."""
    connection = {t.strip().lower() for t in header(headers, "connection").split(",")}
    return header(headers, "upgrade").strip().lower() == "websocket" and "upgrade" in connection


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1((key.strip() + GUID).encode()).digest()).decode()


def handshake(headers: list[tuple[str, str]]) -> bytes:
    key = header(headers, "sec-websocket-key")
    if not key:
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode()


def frame(opcode: int, payload: bytes) -> bytes:
    """A server frame: final, unmasked."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bytes]:
    """(final, opcode, unmasked payload) of the next client frame."""
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), IDLE_TIMEOUT)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    if length > MAX_MESSAGE:
        raise ProtocolError("frame too large")
    if not b1 & 0x80:
        raise ProtocolError("client frames must be masked")
    mask = await reader.readexactly(4)
    data = await reader.readexactly(length)
    return bool(b0 & 0x80), b0 & 0x0F, bytes(c ^ mask[i % 4] for i, c in enumerate(data))


async def serve_websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          headers: list[tuple[str, str]]) -> None:
    """Complete the handshake and echo messages until the client closes."""
    writer.write(handshake(headers))
    await writer.drain()
    if not header(headers, "sec-websocket-key"):
        return
    message, kind = bytearray(), OP_TEXT
    while True:
        final, opcode, payload = await read_frame(reader)
        if opcode == OP_CLOSE:
            writer.write(frame(OP_CLOSE, payload[:2]))
            await writer.drain()
            return
        if opcode == OP_PING:
            writer.write(frame(OP_PONG, payload))
        elif opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
            if opcode != OP_CONTINUATION:
                message, kind = bytearray(), opcode
            message += payload
            if len(message) > MAX_MESSAGE:
                raise ProtocolError("message too large")
            if final:
                writer.write(frame(kind, bytes(message)))
        await writer.drain()
