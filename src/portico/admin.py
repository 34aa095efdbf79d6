"""The standalone admin API (see ARCHITECTURE, "Admin API"): HTTP/1.1, JSON.

    GET /healthz       200 once the control plane serves, 503 before
    GET /api/objects   {"items": [...], "errors": [...]}; query kind, namespace, name
    GET /api/errors    {"items": [...]}: documents skipped and objects not applied

A deliberately small asyncio server: one request per connection
(`Connection: close`), no request bodies, GET and HEAD only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from portico.store import Store

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
READ_TIMEOUT = 10.0

Response = tuple[int, dict[str, Any]]


class AdminServer:
    def __init__(self, store: Store, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.ready = False  # set by the runtime once the first configuration is served
        self._server: asyncio.Server | None = None
        self._routes: dict[str, Callable[[dict[str, list[str]]], Response]] = {
            "/healthz": self._healthz,
            "/api/objects": self._objects,
            "/api/errors": self._errors,
        }

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_HEAD)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("admin API on http://%s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # ------------------------------------------------------------ handlers

    def _healthz(self, query: dict[str, list[str]]) -> Response:
        if self.ready:
            return 200, {"status": "ok"}
        return 503, {"status": "starting"}

    def _objects(self, query: dict[str, list[str]]) -> Response:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        items = self.store.list_objects(kind=one("kind"), namespace=one("namespace"), name=one("name"))
        return 200, {"items": items, "errors": self._error_items()}

    def _errors(self, query: dict[str, list[str]]) -> Response:
        return 200, {"items": self._error_items()}

    def _error_items(self) -> list[dict[str, Any]]:
        return [e.as_dict() for e in self.store.errors()]

    # ------------------------------------------------------------ HTTP

    def handle(self, method: str, target: str) -> Response:
        """The answer to one request (no I/O: also used by tests)."""
        if method not in ("GET", "HEAD"):
            return 405, {"error": f"method {method} not allowed"}
        url = urlsplit(target)
        route = self._routes.get(url.path.rstrip("/") or "/")
        if route is None:
            return 404, {"error": f"no such path: {url.path}"}
        return route(parse_qs(url.query))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            method, target = _request_line(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        except ValueError:
            method, target = "", ""
        try:
            status, body = self.handle(method, target) if method else (400, {"error": "bad request"})
        except Exception:  # a handler bug must not take the admin API down
            log.exception("admin API: %s %s failed", method, target)
            status, body = 500, {"error": "internal error"}
        try:
            writer.write(_response(status, body, head_only=method == "HEAD"))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def _request_line(head: bytes) -> tuple[str, str]:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"malformed request line {line!r}")
    return parts[0], parts[1]


def _response(status: int, body: dict[str, Any], head_only: bool = False) -> bytes:
    payload = json.dumps(body, default=str).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + payload
