"""Test harness: a real data plane, XdsServer + Envoy (from the wheel) on a background event loop,
plus tiny HTTP/TCP/UDP backends in threads."""

from __future__ import annotations

import asyncio
import http.client
import http.server
import json
import socket
import socketserver
import threading
import time
from typing import Any

from portico import ir
from portico.infra.envoy import EnvoyProcess
from portico.xds.server import XdsServer


class Plane:
    """Owns an event loop thread running the ADS server and one Envoy per group
    (`groups`; the first is the one `update`/`push` use unless told otherwise)."""

    def __init__(self, groups: tuple[str, ...] = ("portico",)) -> None:
        self.group = groups[0]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.acks: list[tuple[str, int]] = []
        self.nacks: list[tuple[str, int, str]] = []
        self.xds = XdsServer(on_ack=lambda g, v: self.acks.append((g, v)),
                             on_nack=lambda g, v, m: self.nacks.append((g, v, m)))
        port = self.run(self.xds.start("127.0.0.1"))
        self.envoys = {g: EnvoyProcess("127.0.0.1", port, node_id=g, node_cluster=g, concurrency=2,
                                       log_level="warning") for g in groups}
        for envoy in self.envoys.values():
            self.run(envoy.start())
            self.run(envoy.wait_ready())
        self.envoy = self.envoys[self.group]

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def update(self, model: ir.IR, group: str | None = None) -> int:
        async def go() -> int:
            return self.xds.update(group or self.group, model)

        version: int = self.run(go())
        return version

    def push(self, model: ir.IR, timeout: float = 20, group: str | None = None) -> int:
        """Push `model` and wait for Envoy's ACK (fails on NACK)."""
        group = group or self.group
        version = self.update(model, group)
        deadline = time.monotonic() + timeout
        while self.xds.acked_version(group) < version:
            nacked = [m for g, v, m in self.nacks if (g, v) == (group, version)]
            assert not nacked, f"version {version} NACKed: {nacked}"
            assert time.monotonic() < deadline, f"version {version} not ACKed within {timeout}s"
            time.sleep(0.01)
        return version

    def push_nacked(self, model: ir.IR, timeout: float = 20, group: str | None = None) -> str:
        """Push `model`, expect a NACK; returns Envoy's message."""
        group = group or self.group
        version = self.update(model, group)
        deadline = time.monotonic() + timeout
        while True:
            nacked = [m for g, v, m in self.nacks if (g, v) == (group, version)]
            if nacked:
                return nacked[0]
            assert self.xds.acked_version(group) < version, f"version {version} was ACKed"
            assert time.monotonic() < deadline, f"version {version} neither ACKed nor NACKed"
            time.sleep(0.01)

    def close(self) -> None:
        for envoy in self.envoys.values():
            self.run(envoy.stop())
        self.run(self.xds.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# ---------------------------------------------------------------- backends


class EchoBackend:
    """HTTP/1.1 backend answering every request with JSON describing it."""

    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        self.name = name
        self.requests: list[dict[str, Any]] = []
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                headers: dict[str, str] = {}
                for key, value in self.headers.items():  # repeated headers joined, as HTTP allows
                    name = key.lower()
                    headers[name] = f"{headers[name]},{value}" if name in headers else value
                seen = {"path": self.path, "method": self.command, "headers": headers}
                backend.requests.append(seen)
                body = json.dumps({**seen, "backend": backend.name}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def endpoint(self) -> ir.Endpoint:
        return ir.Endpoint(str(self.server.server_address[0]), self.port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TCPEcho:
    """TCP server echoing its input, prefixed with its name."""

    def __init__(self, name: str) -> None:
        prefix = name.encode() + b":"

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                while data := self.request.recv(4096):
                    self.request.sendall(prefix + data)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class UDPEcho:
    def __init__(self, name: str) -> None:
        prefix = name.encode() + b":"

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                sock.sendto(prefix + data, self.client_address)

        self.server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def request(
    port: int,
    path: str = "/",
    host: str = "example.com",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    address: str = "127.0.0.1",
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request; returns (status, lower-cased headers, body)."""
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.request(method, path, headers={"host": host, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw_request(address: str, port: int, head: str) -> tuple[int, str, bytes]:
    """(status, Location, body) of one HTTP/1.1 request sent exactly as `head` is written
    (it asks for `Connection: close`): for what an HTTP client library would not send."""
    with socket.create_connection((address, port), timeout=5) as s:
        s.sendall(head.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.decode().split("\r\n")
    location = next((v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
                     if k.lower() == "location"), "")
    return int(lines[0].split()[1]), location, body
