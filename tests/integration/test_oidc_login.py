"""SecurityPolicy oidc by a real login: headless Chromium (Debian's, driven by
Playwright) through real Envoy (`portico run`) to an OpenID provider built here with
authlib (`oidc_provider`): an unauthenticated request is sent to the provider, the
callback exchanges the code (PKCE checked) through the cluster made from the token
endpoint, the session cookie is set, the backend sees the request with the access token,
an expired token is refreshed, the logout path clears the session. The endpoints come
from the provider's discovery document, fetched by the control loop. The client secret
is in none of the admin API's objects and dumps, the statuses and the log."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from oidc_provider import Provider, ProviderServer
from support import free_port, gateway_address, start, stop, wait_for, write_atomically

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")]
NS = "portal"
# a name under .localhost: a secure context for Chromium over plain HTTP (Envoy's session
# cookies are Secure), mapped to the Gateway's address by --host-resolver-rules
HOST = "app.localhost"
CLIENT_ID = "portal"
CLIENT_SECRET = "portal-client-s3cret-9f2c1e"
TOKEN_TTL_S = 3
POLICY_API = "gateway.portico.dev/v1alpha1"


@dataclass
class Env:
    dir: Path
    ip: str
    port: int
    admin: int
    provider: Provider
    log: Path

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}{path}", timeout=10) as r:
            return json.load(r) if r.headers.get("Content-Type", "").startswith("application/json") else r.read()


def manifests(echo_port: int) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller",
                  "parametersRef": {"group": "gateway.portico.dev", "kind": "PorticoProxy", "name": "proxy",
                                    "namespace": NS}}},
        # the platform owner lets this namespace reach loopback: the provider runs there
        {"apiVersion": POLICY_API, "kind": "PorticoProxy", "metadata": {"name": "proxy", "namespace": NS},
         "spec": {"localBackends": [{"namespaces": {"from": "Selector", "selector": {"matchLabels": {
             "kubernetes.io/metadata.name": NS}}}, "cidrs": ["127.0.0.0/8"]}]}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
         "spec": {"gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
         "spec": {"ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web", "namespace": NS, "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}],
         "ports": [{"name": "http", "port": echo_port, "protocol": "TCP"}]},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "portal-oidc", "namespace": NS},
         "stringData": {"client-secret": CLIENT_SECRET}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "app", "namespace": NS},
         "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [HOST],
                  "rules": [{"name": "app", "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                             "backendRefs": [{"name": "web", "port": 80}]},
                            {"name": "broken", "matches": [{"path": {"type": "PathPrefix", "value": "/broken"}}],
                             "backendRefs": [{"name": "web", "port": 80}]}]}},
    ]


def policy(name: str, rule: str, issuer: str) -> dict[str, Any]:
    return {"apiVersion": POLICY_API, "kind": "SecurityPolicy", "metadata": {"name": name, "namespace": NS},
            "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "app",
                                     "sectionName": rule}],
                     "oidc": {"provider": {"issuer": issuer}, "clientID": CLIENT_ID,
                              "clientSecret": {"name": "portal-oidc"}, "scopes": ["email"],
                              "forwardAccessToken": True, "logoutPath": "/logout"}}}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("oidc")
    (tmp / "manifests").mkdir()
    provider = Provider(CLIENT_ID, CLIENT_SECRET, TOKEN_TTL_S)
    server = ProviderServer(provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    echo_port = free_port()
    echo = start(["echo", "--port", str(echo_port), "--name", "web"], tmp / "echo.log")
    wait_for("echo", lambda: socket.create_connection(("127.0.0.1", echo_port), 1).close() or True, 15)
    admin, offset = free_port(), free_port() - 80
    write_atomically(tmp / "manifests" / "test.yaml", manifests(echo_port) + [
        policy("login", "app", provider.issuer),
        # an issuer without a discovery document: the policy says why, its rule answers 500
        policy("broken", "broken", provider.issuer + "/nowhere")])
    proc = start(["run", str(tmp / "manifests"), "--admin-address", f"127.0.0.1:{admin}", "--port-offset",
                  str(offset), "--state-dir", str(tmp / "state")], tmp / "portico.log")

    try:
        ip = gateway_address(admin)
        yield Env(tmp / "manifests", ip, 80 + offset, admin, provider, tmp / "portico.log")
    finally:
        stop(proc)
        stop(echo)
        server.shutdown()


def raw(env: Env, path: str, cookies: Any = ()) -> tuple[int, list[tuple[str, str]], bytes]:
    """A request of our own (no redirect followed) with the browser's cookies."""
    conn = http.client.HTTPConnection(env.ip, env.port, timeout=10)
    try:
        jar = "; ".join(f"{c['name']}={c['value']}" for c in cookies)
        conn.request("GET", path, headers={"Host": f"{HOST}:{env.port}", **({"Cookie": jar} if jar else {})})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def accepted(env: Env, name: str) -> dict[str, Any]:
    for item in env.api("/api/objects?kind=SecurityPolicy")["items"]:
        if item["metadata"]["name"] == name:
            for ancestor in (item.get("status") or {}).get("ancestors", []):
                for cond in ancestor["conditions"]:
                    if cond["type"] == "Accepted":
                        return dict(cond)
    return {}


def test_login_forwarded_token_refresh_and_logout_in_a_browser(env: Env) -> None:
    from playwright.sync_api import sync_playwright

    provider = env.provider
    # the controller fetched the discovery document; the policy is accepted
    wait_for("the oidc policy accepted", lambda: accepted(env, "login").get("status") == "True", 30)
    assert any(path == "/.well-known/openid-configuration" for path, _ in provider.log)
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--host-resolver-rules=MAP {HOST} {env.ip}"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args, chromium_sandbox=False)
        try:
            context = browser.new_context()
            page = context.new_page()

            # not logged in: a redirect to the provider (no backend request), with a PKCE challenge
            status, headers, body = raw(env, "/hello?x=1")
            assert status == 302, body
            location = dict(headers)["location"]
            assert location.startswith(f"{provider.issuer}/authorize?")
            assert "code_challenge=" in location and "code_challenge_method=S256" in location
            assert f"client_id={CLIENT_ID}" in location and CLIENT_SECRET not in location

            # the login: provider (auto-approves) → callback → cookies → the page asked for
            page.goto(f"{env.origin}/hello?x=1")
            wait_for("the backend's answer", lambda: page.url == f"{env.origin}/hello?x=1", 20)
            seen = json.loads(page.inner_text("body"))
            assert seen["path"] == "/hello?x=1"
            token_requests = [p for path, p in provider.log if path == "/token"]
            assert token_requests[0]["grant_type"] == "authorization_code"
            assert token_requests[0].get("code_verifier")  # PKCE: the verifier sent (and checked by authlib)
            assert provider.grants == ["authorization_code"]
            first_token = provider.issued[0]
            assert seen["headers"]["Authorization"] == [f"Bearer {first_token}"]  # forwardAccessToken
            cookies = {c["name"]: c for c in context.cookies(env.origin)}
            session = [n for n in cookies if n.startswith("AccessToken-")]
            assert session and cookies[session[0]]["httpOnly"]
            assert any(n.startswith("RefreshToken-") for n in cookies)

            # logged in: straight to the backend
            status, _, body = raw(env, "/again", context.cookies(env.origin))
            assert status == 200 and json.loads(body)["headers"]["Authorization"] == [f"Bearer {first_token}"]

            # the access token expires: Envoy refreshes it with the refresh token, the backend sees the new one
            time.sleep(TOKEN_TTL_S + 1.5)
            page.goto(f"{env.origin}/after-expiry")
            seen = json.loads(page.inner_text("body"))
            assert provider.grants == ["authorization_code", "refresh_token"]
            assert seen["path"] == "/after-expiry"
            assert seen["headers"]["Authorization"] == [f"Bearer {provider.issued[1]}"] != [f"Bearer {first_token}"]

            # logout clears the session: the next request is sent to the provider again
            status, headers, _ = raw(env, "/logout", context.cookies(env.origin))
            deleted = {v.split("=", 1)[0] for k, v in headers if k.lower() == "set-cookie" and "=deleted;" in v
                       and "expires=Thu, 01 Jan 1970" in v}
            assert status == 302 and set(session) | {n for n in cookies if n.startswith(
                ("RefreshToken-", "OauthHMAC-", "OauthExpires-", "IdToken-"))} <= deleted, headers
            # in the browser: the session is gone, so "/" (where logout lands) needs a new login
            # (which the test's provider approves at once: a new code, a new token)
            logins = sum(1 for path, _ in provider.log if path == "/authorize")
            page.goto(f"{env.origin}/logout")
            wait_for("the page after logout", lambda: page.url == f"{env.origin}/", 20)
            assert sum(1 for path, _ in provider.log if path == "/authorize") == logins + 1
            assert provider.grants == ["authorization_code", "refresh_token", "authorization_code"]
            assert json.loads(page.inner_text("body"))["headers"]["Authorization"] == [
                f"Bearer {provider.issued[2]}"]
        finally:
            browser.close()


def test_a_provider_without_discovery_is_reported_and_fails_closed(env: Env) -> None:
    wait_for("the broken policy reported", lambda: accepted(env, "broken").get("status") == "False", 30)
    cond = accepted(env, "broken")
    assert cond["message"] == (f"oidc: discovery of {env.provider.issuer}/nowhere: GET {env.provider.issuer}"
                               "/nowhere/.well-known/openid-configuration: HTTP 404")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(urllib.request.Request(f"http://{env.ip}:{env.port}/broken", headers={"Host": HOST}),
                               timeout=10)
    assert answer.value.code == 500


def test_the_client_secret_is_in_no_dump_status_or_log(env: Env) -> None:
    wait_for("the oidc policy accepted", lambda: accepted(env, "login").get("status") == "True", 30)
    seen = {
        "objects": json.dumps(env.api("/api/objects")),
        "ir dump": json.dumps(env.api("/api/config_dump")),
        "xds dump": json.dumps(env.api("/api/config_dump?format=xds")),
        "envoy dump": json.dumps(env.api("/api/config_dump?format=envoy")),
        "log": env.log.read_text(errors="replace"),
    }
    # the dumps hold the login (named secrets), not the secret
    assert "oidc/portal/login/client-secret" in seen["xds dump"] and "client_secret" in seen["ir dump"]
    assert "oidc/portal/login/client-secret" in seen["envoy dump"]
    for where, text in seen.items():
        assert CLIENT_SECRET not in text, where
