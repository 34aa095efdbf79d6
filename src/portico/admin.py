"""The standalone admin API (ARCHITECTURE, "Admin API"), on aiohttp.web: JSON over HTTP.

    GET /livez              200 while the process serves (a liveness probe: independent of the sync)
    GET /healthz            200 once the control plane serves, 503 before
    GET /readyz             200 once every Envoy group has ACKed its newest configuration
    GET /api/objects        {"items": [...], "errors": [...]}; query kind, namespace, name
    GET /api/errors         {"items": [...]}: documents skipped and objects not applied
    GET /api/openapi.json   an OpenAPI 3 description of these endpoints
    GET /api/proxies        every connected Envoy and its xDS sync state (portico.proxystatus)

Secret `data` and `stringData` values never leave the process: they are
redacted in every answer (keys are kept, so a reader sees which entries exist).
Requests whose Host is a DNS name other than localhost (or the name the API was
told to listen on) are refused (403): a web page cannot reach the API through DNS
rebinding, which needs a name; IP literals are fine. With a token (`--admin-token-file`,
PORTICO_ADMIN_TOKEN or `--admin-token`) every /api/ and /metrics/envoy request needs
`Authorization: Bearer <token>` (401 otherwise); /livez, /healthz, /readyz and /metrics stay
open for probes and scrapers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import importlib.resources
import ipaddress
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from portico import CONTROLLER_NAME
from portico.contracts import DocumentError
from portico.exposure import Exposure
from portico.metrics import CONTENT_TYPE, Metrics
from portico.models import Secret, model_for
from portico.store import Store

log = logging.getLogger(__name__)

REDACTED = "<redacted>"
SECRET_FIELDS = ("data", "stringData")
# what a token guards: the API, and Envoy's stats (cluster, route and host names of every
# tenant); the probes and Portico's own counters stay open for kubelets and scrapers
GUARDED = ("/api/", "/metrics/envoy")
# (ready, details): readiness as the control loop sees it
Readiness = Callable[[], tuple[bool, dict[str, Any]]]


def is_secret(obj: dict[str, Any]) -> bool:
    """Whether `obj` is a Secret: what Portico reads it as (its group and kind), or any
    kind spelled Secret in any group or version (whatever a provider let through)."""
    kind = str(obj.get("kind", ""))
    return model_for(str(obj.get("apiVersion", "")), kind) is Secret or kind.strip().lower() == "secret"


class DiagnosticsView(Protocol):
    """What the admin API shows of the control loop (`portico.diagnostics.Diagnostics`)."""

    def config_dump(self, gateway: str | None = None, fmt: str = "ir") -> dict[str, Any]: ...

    def explain(self, port: int, host: str, path: str = "/", method: str = "GET",
                headers: tuple[tuple[str, str], ...] = (), sni: str | None = None,
                gateway: str | None = None, listener: str | None = None) -> dict[str, Any]: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def exposures(self, objects: list[dict[str, Any]], controller: str) -> list[Exposure]: ...


class EnvoyAdmin(Protocol):
    """The Envoys running on this machine, by xDS group (`portico.infra.host.HostInfrastructure`)."""

    def envoy_stats(self, group: str) -> bytes | None: ...

    def envoy_admin(self, group: str, path: str) -> bytes | None: ...


def redact(obj: dict[str, Any]) -> dict[str, Any]:
    """An object fit to leave the process: a Secret's values replaced by REDACTED."""
    if not is_secret(obj):
        return obj
    out = dict(obj)
    for name in SECRET_FIELDS:
        values = out.get(name)
        if isinstance(values, dict):
            out[name] = {k: REDACTED for k in values}
        elif values is not None:
            out[name] = REDACTED
    return out


def _error_items(errors: list[DocumentError]) -> list[dict[str, Any]]:
    return [e.as_dict() for e in errors]


def _safe_host(host: str) -> bool:
    """A Host no DNS rebinding can produce: an IP literal, or localhost."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class AdminServer:
    """`diagnostics`: the control loop's config dump, explain and readiness (without it
    those answer 404, and readiness is `ready` alone); `envoys`: local Envoys' stats and
    admin (`/metrics/envoy`, `config_dump?format=envoy`); `problems`: what keeps the
    control plane from working as it should (named by /healthz and /readyz); `sock`: a socket listening
    already (the composition root takes the admin port first), else `host`:`port`; `proxies`:
    the connected Envoys' xDS state (`portico.proxystatus`, GET /api/proxies)."""

    def __init__(self, store: Store, host: str = "127.0.0.1", port: int = 0,
                 readiness: Readiness | None = None, token: str | None = None,
                 metrics: Metrics | None = None, *, diagnostics: DiagnosticsView | None = None,
                 envoys: EnvoyAdmin | None = None, controller_name: str = CONTROLLER_NAME,
                 problems: Callable[[], list[str]] | None = None, sock: socket.socket | None = None,
                 proxies: Callable[[], dict[str, Any]] | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.config_dump = diagnostics.config_dump if diagnostics is not None else None
        self.explain = diagnostics.explain if diagnostics is not None else None
        self.exposures = diagnostics.exposures if diagnostics is not None else None
        self.envoy_stats = envoys.envoy_stats if envoys is not None else None
        self.envoy_admin = envoys.envoy_admin if envoys is not None else None
        self.controller_name = controller_name
        self.proxies = proxies  # portico.proxystatus: the connected Envoys (GET /api/proxies)
        self.token = token or None
        self.host = host
        self.port = port
        self.ready = False  # set by the runtime once the first configuration is served
        self.readiness = readiness or (diagnostics.readiness if diagnostics is not None else None)
        # what keeps the control plane from working as it should while it serves on (e.g. a
        # state directory it cannot write): named by /healthz and /readyz
        self.problems = problems
        self._sock = sock
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._guard])
        self.app.add_routes([
            web.get("/livez", self._livez),
            web.get("/healthz", self._healthz),
            web.get("/readyz", self._readyz),
            web.get("/api/objects", self._objects),
            web.get("/api/errors", self._errors),
            web.get("/api/openapi.json", self._openapi),
            web.get("/metrics", self._metrics),
            web.get("/metrics/envoy", self._envoy_metrics),
            web.get("/api/config_dump", self._config_dump),
            web.get("/api/explain", self._explain),
            web.get("/api/describe", self._describe),
            web.get("/api/proxies", self._proxies),
            web.get("/api/topology", self._topology),
            web.get("/api/exposure", self._exposure),
            web.get("/api/topology/events", self._topology_events),
            web.get("/topology", self._topology_page),
            web.get("/topology/cytoscape.min.js", self._cytoscape),
        ])

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site: web.BaseSite = web.SockSite(self._runner, self._sock) if self._sock is not None else \
            web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the bound port (port 0 picks one)
        log.info("admin API on http://%s:%d", self.host, self.port)
        if not _loopback(self.host):
            log.warning("the admin API listens on %s, beyond this machine: it lists every object and its "
                        "status%s", self.host, "" if self.token else " to anyone who can reach it; set a token "
                        "(--admin-token-file or PORTICO_ADMIN_TOKEN)")
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ middleware

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Host check, and every error answered as JSON."""
        host = request.url.host or ""
        if not (_safe_host(host) or host.strip("[]") == self.host):
            return web.json_response({"error": f"host {request.host!r} not allowed"}, status=403)
        if self.token and request.path.startswith(GUARDED) and not self._authorized(request):
            return web.json_response({"error": "a bearer token is required"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        try:
            return await handler(request)
        except web.HTTPException as e:
            return web.json_response({"error": e.reason}, status=e.status,
                                     headers={k: v for k, v in e.headers.items() if k == "Allow"})
        except Exception:  # a handler bug must not take the admin API down
            log.exception("admin API: %s %s failed", request.method, request.path)
            return web.json_response({"error": "internal error"}, status=500)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        assert self.token is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())

    # ------------------------------------------------------------ handlers

    async def _livez(self, request: web.Request) -> web.Response:
        """Alive: the event loop answers. Never tied to the sync: a slow first LIST or a kind
        that keeps failing is readiness's business, not a reason to restart."""
        return web.json_response({"status": "alive"})

    async def _healthz(self, request: web.Request) -> web.Response:
        if not self.ready:
            return web.json_response({"status": "starting"}, status=503)
        problems = self.problems() if self.problems is not None else []
        # still 200: changes are applied and traffic served; the body says what is wrong
        return web.json_response({"status": "degraded", "problems": problems} if problems else {"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, details = self.readiness() if self.readiness is not None else (self.ready, {})
        ready = ready and self.ready
        problems = self.problems() if self.problems is not None else []
        return web.json_response({"status": "ready" if ready else "not ready", **details,
                                  **({"problems": problems} if problems else {})},
                                 status=200 if ready else 503)

    async def _objects(self, request: web.Request) -> web.Response:
        q = request.query
        items = self.store.list_objects(kind=q.get("kind"), namespace=q.get("namespace"), name=q.get("name"))
        return web.json_response({"items": [redact(o) for o in items],
                                  "errors": _error_items(self.store.errors())}, dumps=_dumps)

    async def _errors(self, request: web.Request) -> web.Response:
        return web.json_response({"items": _error_items(self.store.errors())})

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    async def _topology_page(self, request: web.Request) -> web.Response:
        """The live topology page (its data comes from /api/topology, token and all)."""
        return web.Response(body=_web_file("topology.html"), content_type="text/html")

    async def _cytoscape(self, request: web.Request) -> web.Response:
        return web.Response(body=_web_file("vendor/cytoscape.min.js"), content_type="application/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    async def _topology(self, request: web.Request) -> web.Response:
        from portico.topology import topology

        objects = self.store.list_objects()
        return web.json_response(topology(objects, self.controller_name, self._exposed(objects)), dumps=_dumps)

    def _exposed(self, objects: list[dict[str, Any]]) -> list[Exposure]:
        return self.exposures(objects, self.controller_name) if self.exposures is not None else []

    async def _exposure(self, request: web.Request) -> web.Response:
        """The routes public Gateways expose without authentication (`portico analyze`), read
        from the last translation."""
        if self.exposures is None:
            raise web.HTTPNotFound(reason="no configuration here")
        items = self._exposed(self.store.list_objects())
        return web.json_response({"items": [dataclasses.asdict(e) for e in items]}, dumps=_dumps)

    async def _topology_events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `data: <revision>` whenever an object or a status changed."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        seen, idle = -1, 0.0
        while True:
            if self.store.revision != seen:
                seen = self.store.revision
                await response.write(f"data: {seen}\n\n".encode())
                idle = 0.0
            elif idle >= 10:
                await response.write(b": keep-alive\n\n")
                idle = 0.0
            await asyncio.sleep(0.1)
            idle += 0.1

    async def _describe(self, request: web.Request) -> web.Response:
        """?kind=&name=&namespace= (see `portico describe`)."""
        from portico.describe import describe, find, not_found

        q = request.query
        objects = [redact(o) for o in self.store.list_objects()]
        obj = find(objects, q.get("kind", ""), q.get("name", ""), q.get("namespace") or None)
        if obj is None:
            return web.json_response({"error": not_found(objects, q.get("kind", ""), q.get("name", ""),
                                                         q.get("namespace") or None)}, status=404)
        return web.json_response({"lines": describe(obj, objects, self.controller_name)})

    async def _explain(self, request: web.Request) -> web.Response:
        """?port=&host=&path=&method=&header=name:value&sni=&gateway= (see `portico explain`)."""
        q = request.query
        if self.explain is None:
            raise web.HTTPNotFound(reason="no configuration here")
        if not (q.get("port", "").isdigit() or q.get("listener")) or not q.get("host"):
            raise web.HTTPBadRequest(reason="host and port (or listener) are required")
        headers = tuple((n.strip(), v.strip()) for n, _, v in (h.partition(":") for h in q.getall("header", [])))
        port = int(q["port"]) if q.get("port", "").isdigit() else 0
        return web.json_response(self.explain(port, q["host"], q.get("path", "/"), q.get("method", "GET"),
                                              headers, q.get("sni"), q.get("gateway"), q.get("listener")))

    async def _proxies(self, request: web.Request) -> web.Response:
        if self.proxies is None:
            raise web.HTTPNotFound(reason="no xDS server here")
        return web.json_response(self.proxies())

    async def _envoy_metrics(self, request: web.Request) -> web.Response:
        """?group=G: the Prometheus stats of the Envoy serving xDS group G (default: the one Envoy)."""
        stats = self.envoy_stats(request.query.get("group", "portico")) if self.envoy_stats else None
        if stats is None:
            raise web.HTTPNotFound(reason="no Envoy of that group runs here")
        return web.Response(body=stats, headers={"Content-Type": CONTENT_TYPE})

    async def _config_dump(self, request: web.Request) -> web.Response:
        """?gateway=namespace/name&format=ir|xds (private keys redacted)."""
        fmt = request.query.get("format", "ir")
        if fmt not in ("ir", "xds", "envoy"):
            raise web.HTTPBadRequest(reason="format must be ir, xds or envoy")
        if fmt == "envoy":  # Envoy's own config_dump, of one group's Envoy
            raw = self.envoy_admin(request.query.get("group", "portico"), "/config_dump") \
                if self.envoy_admin else None
            if raw is None:
                raise web.HTTPNotFound(reason="no Envoy of that group runs here")
            from portico.dump import redacted

            return web.json_response(redacted(json.loads(raw)), dumps=_dumps)
        if self.config_dump is None:
            raise web.HTTPNotFound(reason="no configuration here")
        return web.json_response(self.config_dump(request.query.get("gateway"), fmt), dumps=_dumps)

    async def _metrics(self, request: web.Request) -> web.Response:
        """Prometheus exposition (counts and durations only: nothing secret, so no token)."""
        if self.metrics is None:
            raise web.HTTPNotFound(reason="no metrics here")
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})


def read_token_file(path: str) -> str:
    """The admin token in a file (its first line, without surrounding blanks): unlike a
    command-line flag it is not readable by every local user in /proc/PID/cmdline."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the admin token file {path}: {e}") from None
    if not token:
        raise ValueError(f"the admin token file {path} is empty")
    return token


def _web_file(name: str) -> bytes:
    return (importlib.resources.files("portico") / "web" / name).read_bytes()


def _dumps(data: Any) -> str:
    return json.dumps(data, default=str)


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_STATUS = {"type": "object", "properties": {"status": {"type": "string"}}}
_ERROR = {"type": "object", "properties": {k: {"type": "string"} for k in ("file", "path", "message", "object", "rule")}
          | {"line": {"type": "integer"}}}
_ERRORS = {"type": "array", "items": _ERROR}
_QUERY = [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}, "description": d}
          for n, d in (("kind", "only objects of this kind"), ("namespace", "only objects in this namespace"),
                       ("name", "only objects of this name"))]
OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Portico admin API", "version": "1",
             "description": "Standalone mode: stored objects with status, load errors, health. "
                            "Secret data is redacted."},
    "paths": {
        "/livez": {"get": {"summary": "The process serves (liveness)", "responses": {
            "200": _json("alive", _STATUS)}}},
        "/healthz": {"get": {"summary": "The control plane serves", "responses": {
            "200": _json("serving: status ok, or degraded with the problems it serves on with",
                         _STATUS | {"properties": {"status": {"type": "string"},
                                                   "problems": {"type": "array", "items": {"type": "string"}}}}),
            "503": _json("starting", _STATUS)}}},
        "/readyz": {"get": {"summary": "Every Envoy group has ACKed its newest configuration", "responses": {
            "200": _json("ready", _STATUS), "503": _json("not ready", _STATUS)}}},
        "/api/objects": {"get": {"summary": "Every stored object in Kubernetes shape", "parameters": _QUERY,
                                 "responses": {"200": _json("objects", {"type": "object", "properties": {
                                     "items": {"type": "array", "items": {"type": "object"}},
                                     "errors": _ERRORS}})}}},
        "/api/errors": {"get": {"summary": "Documents skipped and objects not applied", "responses": {
            "200": _json("errors", {"type": "object", "properties": {"items": _ERRORS}})}}},
        "/api/openapi.json": {"get": {"summary": "This description", "responses": {
            "200": _json("OpenAPI 3", {"type": "object"})}}},
        "/api/config_dump": {"get": {
            "summary": "The last translation per Gateway (IR), the Envoy resources per xDS group, or an "
                       "Envoy's own config_dump; private keys redacted",
            "parameters": [{"name": "gateway", "in": "query", "required": False, "schema": {"type": "string"},
                            "description": "namespace/name"},
                           {"name": "format", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["ir", "xds", "envoy"]}},
                           {"name": "group", "in": "query", "required": False, "schema": {"type": "string"},
                            "description": "format envoy: the xDS group whose Envoy to ask"}],
            "responses": {"200": _json("dump", {"type": "object"}), "400": _json("bad format", _STATUS)}}},
        "/api/explain": {"get": {"summary": "Which listener, virtual host and route a request would take",
                                 "parameters": [{"name": n, "in": "query", "required": n in ("port", "host"),
                                                 "schema": {"type": "string"}}
                                                for n in ("port", "host", "path", "method", "header", "sni",
                                                          "gateway", "listener")],
                                 "responses": {"200": _json("answer", {"type": "object"}),
                                               "400": _json("port or host missing", _STATUS)}}},
        "/metrics/envoy": {"get": {"summary": "Envoy's own Prometheus stats, per xDS group",
                                   "parameters": [{"name": "group", "in": "query", "required": False,
                                                   "schema": {"type": "string"}}],
                                   "responses": {"200": {"description": "text exposition"},
                                                 "404": _json("no such Envoy", _STATUS)}}},
        "/api/describe": {"get": {"summary": "An object's conditions in words, what is attached to it, and "
                                             "what to do about each problem (`portico describe`)",
                                  "parameters": [{"name": n, "in": "query", "required": n != "namespace",
                                                  "schema": {"type": "string"}} for n in ("kind", "name",
                                                                                          "namespace")],
                                  "responses": {"200": _json("lines", {"type": "object", "properties": {
                                      "lines": {"type": "array", "items": {"type": "string"}}}}),
                                                "404": _json("no such object", _STATUS)}}},
        "/api/proxies": {"get": {"summary": "Every connected Envoy: Gateway (xDS group), node, address, the "
                                           "version applied and the newest, the last NACK (`portico "
                                           "proxy-status`)",
                                 "responses": {"200": _json("proxies", {"type": "object"})}}},
        "/api/topology": {"get": {"summary": "Gateways, routes, backends and policies as a graph "
                                            "(nodes and edges with their conditions)",
                                  "responses": {"200": _json("graph", {"type": "object"})}}},
        "/api/exposure": {"get": {"summary": "Routes public Gateways (annotation gateway.portico.dev/public) "
                                            "expose without authentication, as the last translation programs "
                                            "them (`portico analyze`: UnauthenticatedPublicRoute)",
                                 "responses": {"200": _json("exposures", {"type": "object"}),
                                               "404": _json("no configuration here", _STATUS)}}},
        "/api/topology/events": {"get": {"summary": "The graph again each time it changes (server-sent events)",
                                         "responses": {"200": {"description": "text/event-stream", "content": {
                                             "text/event-stream": {"schema": {"type": "string"}}}}}}},
        "/topology": {"get": {"summary": "The topology page (HTML)", "responses": {
            "200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    },
}
