"""custom-http-errors with default-backend, served by real Envoy from the Ingress objects,
then converted (`portico convert`) and served again: the same requests, the same answers.

As ingress-nginx: an answer of a listed code (the backend's) is replaced by the default
backend's answer to a GET of `/`
(the query kept) carrying X-Code, X-Format, X-Original-URI, X-Namespace, X-Ingress-Name,
X-Service-Name, X-Service-Port and X-Request-ID; its status is the error page's own (here,
as ingress-nginx's custom-error-pages image does, the X-Code). Codes not listed pass as they
are; without default-backend a listed code is ingress-nginx's built-in `404`. A client
cannot reach the error page by sending the marker header itself. A rule whose Service has
no endpoints sends its requests, as they are, to the default backend (test_ingress_default_backend).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from support import free_port, start, stop, wait_for
from test_ingress_annotations import NGINX, Client, backend, ingress, serve

from portico.ingress import convert
from portico.ingress import serve as serve_ingress

pytestmark = pytest.mark.timeout(240)


class ErrorPage(BaseHTTPRequestHandler):
    """ingress-nginx's custom-error-pages, in short: the status of X-Code, a JSON body of
    what it got."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps({"method": self.command, "path": self.path, "headers": dict(self.headers),
                           "body": self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()}).encode()
        self.send_response(int(self.headers.get("X-Code") or 200))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


def manifests(web: int, pages: int) -> list[dict[str, Any]]:
    errors = {NGINX + "custom-http-errors": "404,503", NGINX + "default-backend": "error-pages"}
    empty = backend("empty", 1)
    empty[1]["endpoints"] = []  # a Service without endpoints: the proxy's own 503
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "portico"},
         "spec": {"controller": "portico.dev/ingress-controller"}},
        *backend("web", web), *backend("error-pages", pages), *empty,
        ingress("errors", errors, [("/", "Prefix", "web")], host="errors.example.com"),
        ingress("no-endpoints", errors, [("/", "Prefix", "empty")], host="empty.example.com"),
        ingress("builtin", {NGINX + "custom-http-errors": "503"}, [("/", "Prefix", "web")],
                host="builtin.example.com"),
        ingress("plain", {}, [("/", "Prefix", "web")], host="plain.example.com"),
    ]


def page(reply: bytes) -> dict[str, Any]:
    """What the error page got: method, path, its headers of interest, body."""
    got = json.loads(reply)
    wanted = ("Host", "X-Code", "X-Format", "X-Original-URI", "X-Namespace", "X-Ingress-Name", "X-Service-Name",
              "X-Service-Port", "X-Request-ID", "x-portico-error-page")
    headers = {k.lower(): v for k, v in got["headers"].items()}
    return {"method": got["method"], "path": got["path"], "body": got["body"],
            **{h: headers.get(h.lower()) for h in wanted}}


def raw(c: Client, host: str, path: str, method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    import http.client
    conn = http.client.HTTPConnection(c.ip, c.http_port, timeout=5)
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def answers(c: Client, marker: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    status, reply = raw(c, "errors.example.com", "/status/503?x=1",
                        headers={"Accept": "application/json", "X-Request-ID": "req-1"})
    out["503"] = (status, page(reply))
    status, reply = raw(c, "errors.example.com", "/status/404")
    got = page(reply)
    out["404"] = (status, got.pop("X-Code"), got.pop("X-Original-URI"), bool(got.pop("X-Request-ID")))
    out["not-listed"] = raw(c, "errors.example.com", "/status/500")
    status, reply = raw(c, "errors.example.com", "/status/503", "POST", b"payload")
    out["post"] = (status, page(reply)["method"], page(reply)["body"])
    status, reply = raw(c, "errors.example.com", "/")
    out["ok"] = (status, json.loads(reply).get("pod"))
    # the marker of the error page route, sent by a client: the route's own answer
    status, reply = raw(c, "errors.example.com", "/", headers={"x-portico-error-page": marker})
    out["forged-marker"] = (status, json.loads(reply).get("pod"))
    status, reply = raw(c, "empty.example.com", "/a")
    got = page(reply)
    out["no-endpoints"] = (status, got["method"], got["path"], got["X-Code"])
    out["builtin"] = raw(c, "builtin.example.com", "/status/503")
    out["plain"] = raw(c, "plain.example.com", "/status/503")
    return out


def marker_of(objects: list[dict[str, Any]]) -> str:
    """The error page key of Ingress errors (the namespace and name of its filter)."""
    return next(f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objects
                if o["kind"] == "HTTPRouteFilter" and "errorPages" in o["spec"]
                and o["spec"]["errorPages"].get("backendRef") and "-errors-example-com-" in o["metadata"]["name"])


def test_custom_http_errors_served_and_converted_answer_alike(tmp_path: Path) -> None:
    web_port, admin, offset = free_port(), free_port(), free_port() - 80
    echo = start(["echo", "--port", str(web_port), "--name", "web-1", "--namespace", "shop"], tmp_path / "web.log")
    pages = ThreadingHTTPServer(("127.0.0.1", 0), ErrorPage)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    docs = manifests(web_port, pages.server_address[1])
    try:
        proc, ip = serve(tmp_path, "served", docs, admin, offset, "Ingress")
        client = Client(ip, 80 + offset, 443 + offset, trustme.CA())
        wait_for("the Ingresses served", lambda: raw(client, "plain.example.com", "/")[0] == 200, 30)
        served = answers(client, marker_of(serve_ingress(docs, "portico.dev/gateway-controller").objects))
        stop(proc)
        assert served == {
            "503": (503, {"method": "GET", "path": "/?x=1", "body": "", "Host": "errors.example.com",
                          "X-Code": "503", "X-Format": "application/json", "X-Original-URI": "/status/503?x=1",
                          "X-Namespace": "shop", "X-Ingress-Name": "errors", "X-Service-Name": "web",
                          "X-Service-Port": "80", "X-Request-ID": "req-1", "x-portico-error-page": None}),
            "404": (404, "404", "/status/404", True),
            "not-listed": (500, b""),
            "post": (503, "GET", ""),
            "ok": (200, "web-1"),
            "forged-marker": (200, "web-1"),
            # a Service without endpoints: the request goes, as it is, to the default backend
            "no-endpoints": (200, "GET", "/a", None),
            "builtin": (404, b"default backend - 404"),
            "plain": (503, b""),
        }
        converted = convert(docs)
        (tmp_path / "converted.yaml").write_text(yaml.safe_dump_all(converted.objects))
        others = [d for d in docs if d["kind"] in ("Service", "EndpointSlice")]
        proc, ip = serve(tmp_path, "converted", converted.objects + others, admin, offset, "Gateway")
        client = Client(ip, 80 + offset, 443 + offset, trustme.CA())
        wait_for("the routes served", lambda: raw(client, "plain.example.com", "/")[0] == 200, 30)
        assert answers(client, marker_of(converted.objects)) == served
        stop(proc)
    finally:
        stop(echo)
        pages.shutdown()
