"""The annotations migrating users rely on beyond the basics, served by real Envoy from
the Ingress objects, then converted (`portico convert`) and served again: the same
requests get the same answers.

auth-url + auth-response-headers (an authorization service of our own here: 401 without
the token, the X-User it answers reaches the backend), auth-signin (that 401 a redirect to
the sign-in page with rd=), limit-connections (503 over it),
limit-rpm (over the budget refused), mirror-target (the mirror gets the request too),
upstream-vhost (the backend's Host), proxy-next-upstream(-tries) (a 502 retried on),
service-upstream, server-alias (the alias answers), proxy-buffering /
proxy-request-buffering (the same answers), configuration-snippet (its header
directives, never run, as header modifiers); digest auth, not converted, fails closed (403);
app-root, permanent-redirect, affinity and proxy-read-timeout as well.
"""

from __future__ import annotations

import concurrent.futures
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

pytestmark = pytest.mark.timeout(240)


class Recorder(BaseHTTPRequestHandler):
    """The authorization service (200 with X-User for `Bearer good`, else 401) and the
    mirror (records what it gets)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.seen.append(self.path)  # type: ignore[attr-defined]
        ok = self.server.name == "mirror" or self.headers.get("Authorization") == "Bearer good"  # type: ignore
        self.send_response(200 if ok else 401)
        if ok:
            self.send_header("X-User", "alice")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


def recorder(name: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.name, server.seen = name, []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def manifests(web: int, auth: int, mirror: int) -> list[dict[str, Any]]:
    def one(name: str, annotations: dict[str, str]) -> dict[str, Any]:
        return ingress(name, {NGINX + k: v for k, v in annotations.items()}, [("/", "Prefix", "web")],
                       host=f"{name}.example.com")

    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "portico"},
         "spec": {"controller": "portico.dev/ingress-controller"}},
        *backend("web", web), *backend("auth", auth), *backend("mirror", mirror),
        one("auth", {"auth-url": "http://auth.shop.svc.cluster.local/verify", "auth-response-headers": "X-User"}),
        one("signin", {"auth-url": "http://auth.shop.svc.cluster.local/verify", "auth-response-headers": "X-User",
                       "auth-signin": "https://login.example.com/start?app=shop"}),
        one("signin-uri", {"auth-url": "http://auth.shop.svc.cluster.local/verify",
                           "auth-signin": "https://login.example.com/oauth2/start?rd=$escaped_request_uri"}),
        one("authall", {"auth-url": "http://auth.shop.svc.cluster.local/verify"}),
        one("conns", {"limit-connections": "1"}),
        one("rpm", {"limit-rpm": "1", "limit-burst-multiplier": "2"}),
        one("mirror", {"mirror-target": "http://mirror.shop.svc.cluster.local$request_uri"}),
        one("vhost", {"upstream-vhost": "internal.example"}),
        one("retry", {"proxy-next-upstream": "error timeout http_502", "proxy-next-upstream-tries": "3"}),
        one("svc", {"service-upstream": "true"}),
        one("alias", {"server-alias": "other-name.example.com"}),
        one("buffers", {"proxy-buffering": "on", "proxy-request-buffering": "off"}),
        one("snippet", {"configuration-snippet": "more_set_headers 'X-Shop: 1';\nproxy_set_header X-From ingress;"}),
        one("basic", {"auth-type": "digest", "auth-secret": "htpasswd"}),
        one("approot", {"app-root": "/app"}),
        one("moved", {"permanent-redirect": "https://new.example.com/landing"}),
        one("sticky", {"affinity": "cookie", "session-cookie-name": "route"}),
        one("slow", {"proxy-read-timeout": "1"}),
    ]


def answers(c: Client, mirror: ThreadingHTTPServer, run: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["auth-denied"] = c.http("auth.example.com", "/a")[0]
    status, reply, _ = c.http("auth.example.com", "/a", headers={"Authorization": "Bearer good"})
    out["auth-allowed"] = (status, reply.get("headers", {}).get("X-User"))
    # without auth-response-headers: every answer header copied (this request aborted Envoy once)
    status, reply, _ = c.http("authall.example.com", "/a", headers={"Authorization": "Bearer good"})
    out["auth-all-headers"] = (c.http("authall.example.com", "/a")[0], status, reply.get("headers", {}).get("X-User"))
    status, _, headers = c.http("signin.example.com", "/p/q?x=1")
    out["auth-signin"] = (status, headers.get("location"),
                          c.http("signin.example.com", "/", headers={"Authorization": "Bearer good"})[0])
    out["auth-signin-uri"] = c.http("signin-uri.example.com", "/p/q?x=1")[2].get("location")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        out["limit-connections"] = sorted(pool.map(lambda _: c.http("conns.example.com", "/?delay=1s")[0], range(2)))
    out["limit-rpm"] = sorted({c.http("rpm.example.com", "/")[0] for _ in range(6)})
    out["mirror"] = c.http("mirror.example.com", f"/m/{run}")[0]
    out["mirrored"] = wait_for("the mirror", lambda: f"/m/{run}" in mirror.seen, 10)
    status, reply, _ = c.http("vhost.example.com", "/")
    out["upstream-vhost"] = (status, reply.get("host"))
    out["next-upstream"] = c.http("retry.example.com", f"/retry/x?uuid={run}&succeedAfter=1&responseCode=502")[0]
    out["service-upstream"] = c.http("svc.example.com", "/")[0]
    out["server-alias"] = [c.http(h, "/")[0] for h in ("alias.example.com", "other-name.example.com")]
    status, reply, _ = c.http("buffers.example.com", "/up", "POST", b"x" * 100_000)
    out["buffering"] = (status, reply.get("method"))
    status, reply, headers = c.http("snippet.example.com", "/")
    out["snippet"] = (status, headers.get("x-shop"), reply.get("headers", {}).get("X-From"))
    out["basic-auth-fails-closed"] = c.http("basic.example.com", "/")[0]
    status, _, headers = c.http("approot.example.com", "/")
    out["app-root"] = (status, headers.get("location"))
    status, _, headers = c.http("moved.example.com", "/old")
    out["permanent-redirect"] = (status, headers.get("location"))
    status, _, headers = c.http("sticky.example.com", "/")
    out["affinity"] = (status, headers.get("set-cookie", "").split("=")[0])
    out["proxy-read-timeout"] = c.http("slow.example.com", "/?delay=3s")[0]
    return out


def test_more_annotations_served_and_converted_answer_alike(tmp_path: Path) -> None:
    web_port, admin, offset = free_port(), free_port(), free_port() - 80
    echo = start(["echo", "--port", str(web_port), "--name", "web-1", "--namespace", "shop"], tmp_path / "web.log")
    auth, mirror = recorder("auth"), recorder("mirror")
    docs = manifests(web_port, auth.server_address[1], mirror.server_address[1])
    try:
        proc, ip = serve(tmp_path, "served", docs, admin, offset, "Ingress")
        client = Client(ip, 80 + offset, 443 + offset, trustme.CA())
        wait_for("the Ingresses served", lambda: client.http("snippet.example.com", "/")[0] == 200, 30)
        served = answers(client, mirror, "served")
        stop(proc)
        assert served == {
            "auth-denied": 401, "auth-allowed": (200, ["alice"]), "auth-all-headers": (401, 200, ["alice"]),
            # as ingress-nginx: rd=$pass_access_scheme://$http_host$escaped_request_uri
            "auth-signin": (302, "https://login.example.com/start?app=shop&rd=http://signin.example.com"
                                 "%2Fp%2Fq%3Fx%3D1", 200),
            "auth-signin-uri": "https://login.example.com/oauth2/start?rd=%2Fp%2Fq%3Fx%3D1",  # oauth2-proxy's form
            "limit-connections": [200, 503], "limit-rpm": [200, 503],
            "mirror": 200, "mirrored": True, "upstream-vhost": (200, "internal.example"), "next-upstream": 200,
            "service-upstream": 200, "server-alias": [200, 200], "buffering": (200, "POST"),
            "snippet": (200, "1", ["ingress"]), "basic-auth-fails-closed": 403,
            "app-root": (302, "http://approot.example.com/app"),
            "permanent-redirect": (301, "https://new.example.com/landing"),
            "affinity": (200, "route"), "proxy-read-timeout": 504,
        }
        converted = convert(docs)
        (tmp_path / "converted.yaml").write_text(yaml.safe_dump_all(converted.objects))
        others = [d for d in docs if d["kind"] in ("Service", "EndpointSlice")]
        proc, ip = serve(tmp_path, "converted", converted.objects + others, admin, offset, "Gateway")
        client = Client(ip, 80 + offset, 443 + offset, trustme.CA())
        wait_for("the routes served", lambda: client.http("snippet.example.com", "/")[0] == 200, 30)
        assert answers(client, mirror, "converted") == served
        stop(proc)
    finally:
        stop(echo)
        auth.shutdown()
        mirror.shutdown()
