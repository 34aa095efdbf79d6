"""SecurityPolicy by real requests through real Envoy (`portico run`): JWT authentication
(tokens signed here with PyJWT, keys served as a JWKS by a local HTTP server that Envoy
fetches through a Service, or from a ConfigMap) and authorization rules (a table of
requests × rules → 200/401/403)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from support import free_port, gateway_address, portico_command, start, stop, wait_for, write_atomically

pytestmark = pytest.mark.timeout(240)
NS = "shop"
ISSUER = "https://idp.example.com"
AUDIENCE = "orders-api"
HOST = "api.example.com"


@dataclass
class Key:
    kid: str
    private: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537,
                                                                                     key_size=2048))

    def jwk(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**out, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        # a jti of its own: Envoy caches verified tokens (a token checked once stays good until it expires)
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600,
                "jti": uuid.uuid4().hex, **claims}
        return jwt.encode({k: v for k, v in body.items() if v is not None}, self.private, algorithm="RS256",
                          headers={"kid": self.kid})


class JWKSServer(ThreadingHTTPServer):
    """Serves `keys` as a JWKS at /jwks.json; counts the fetches."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.fetches = 0
        super().__init__(("127.0.0.1", 0), JWKSHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class JWKSHandler(BaseHTTPRequestHandler):
    server: JWKSServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.fetches += 1
        body = json.dumps({"keys": [k.jwk() for k in self.server.keys]}).encode()
        self.send_response(200 if self.path == "/jwks.json" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Env:
    dir: Path
    ip: str
    port: int
    echo_port: int
    jwks: JWKSServer
    key: Key
    admin: int = 0

    def apply(self, docs: list[dict[str, Any]], public: bool = False) -> None:
        write_atomically(self.dir / "test.yaml", base(self, public) + docs)

    def request(self, path: str, token: str | None = None, method: str = "GET",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection(self.ip, self.port, timeout=10)
        try:
            auth = {"Authorization": f"Bearer {token}"} if token else {}
            conn.request(method, path, headers={"Host": HOST, **auth, **(headers or {})})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, json.loads(data) if data.startswith(b"{") else {}
        finally:
            conn.close()

    def status(self, path: str, token: str | None = None, **kw: Any) -> int:
        return self.request(path, token, **kw)[0]


def base(env: Env, public: bool = False) -> list[dict[str, Any]]:
    annotations = {"annotations": {"gateway.portico.dev/public": "true"}} if public else {}
    docs: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "gw", "namespace": NS, **annotations},
         "spec": {"gatewayClassName": "portico", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
    ]
    return docs + service("web", env.echo_port) + service("idp", env.jwks.port)


def service(name: str, port: int) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
             "spec": {"ports": [{"name": "http", "port": 80}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": name, "namespace": NS, "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}],
             "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}]


def route(name: str, path: str) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [HOST],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                                "backendRefs": [{"name": "web", "port": 80}]}]}}


def security(name: str, route_name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "gateway.portico.dev/v1alpha1", "kind": "SecurityPolicy",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route_name}],
                     **spec}}


def remote_provider(**extra: Any) -> dict[str, Any]:
    return {"name": "idp", "issuer": ISSUER, "audiences": [AUDIENCE],
            "remoteJWKS": {"uri": "http://idp.shop/jwks.json", "backendRefs": [{"name": "idp", "port": 80}],
                           "cacheDuration": "1s"}, **extra}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("security")
    manifests = tmp / "manifests"
    manifests.mkdir()
    jwks = JWKSServer()
    key = Key("k1")
    jwks.keys = [key]
    threading.Thread(target=jwks.serve_forever, daemon=True).start()
    echo_port = free_port()
    echo = start(["echo", "--port", str(echo_port), "--name", "web"], tmp / "echo.log")
    wait_for("echo", lambda: socket.create_connection(("127.0.0.1", echo_port), 1).close() or True, 15)
    admin, offset = free_port(), free_port() - 80
    first = Env(manifests, "", 80 + offset, echo_port, jwks, key, admin)
    first.apply([])
    proc = start(["run", str(manifests), "--admin-address", f"127.0.0.1:{admin}", "--port-offset", str(offset),
                  "--state-dir", str(tmp / "state")], tmp / "portico.log")

    try:
        first.ip = gateway_address(admin)
        yield first
    finally:
        stop(proc)
        stop(echo)
        jwks.shutdown()


def settle(env: Env, path: str, expected: int, token: str | None = None, **kw: Any) -> None:
    wait_for(f"{path} answering {expected}", lambda: env.status(path, token, **kw) == expected, 30)


# ---------------------------------------------------------------- JWT


def test_jwt_required_and_optional(env: Env) -> None:
    env.apply([
        route("required", "/req"), route("optional", "/opt"), route("open", "/open"),
        security("required", "required", jwt={"providers": [remote_provider(
            claimToHeaders=[{"header": "x-user", "claim": "sub"}])]}),
        security("optional", "optional", jwt={"optional": True, "providers": [remote_provider()]}),
    ])
    good = env.key.token()
    settle(env, "/req", 200, good)
    status, body = env.request("/req", good)
    assert body["headers"].get("X-User") == ["alice"]  # claim copied to a request header
    assert "Authorization" not in body["headers"]  # the token itself is not forwarded by default
    assert env.status("/req") == 401  # missing token, required
    assert env.status("/req", "not-a-jwt") == 401
    assert env.status("/req", env.key.token(exp=int(time.time()) - 3600)) == 401  # expired
    assert env.status("/req", env.key.token(iss="https://evil.example.com")) == 401
    # a valid token for another API: Envoy answers 403 (authenticated, but not for this audience)
    assert env.status("/req", env.key.token(aud="another-api")) == 403
    assert env.status("/req", Key("k1").token()) == 401  # same kid, a key the JWKS does not hold
    settle(env, "/opt", 200)  # missing token, optional
    assert env.status("/opt", good) == 200
    assert env.status("/opt", env.key.token(exp=int(time.time()) - 3600)) == 401  # a bad one still refused
    assert env.status("/open") == 200  # a route without the policy


def test_jwt_clock_skew(env: Env) -> None:
    env.apply([route("skew", "/skew"), security("skew", "skew", jwt={"providers": [remote_provider(
        clockSkewSeconds=1)]})])
    just_expired = env.key.token(exp=int(time.time()) - 5)
    settle(env, "/skew", 401, just_expired)
    env.apply([route("skew", "/skew"), security("skew", "skew", jwt={"providers": [remote_provider(
        clockSkewSeconds=120)]})])
    settle(env, "/skew", 200, env.key.token(exp=int(time.time()) - 5))


def test_jwt_key_rotation(env: Env) -> None:
    env.apply([route("rot", "/rot"), security("rot", "rot", jwt={"providers": [remote_provider()]})])
    old = env.key
    settle(env, "/rot", 200, old.token())
    new = Key("k2")
    env.jwks.keys = [new]  # the issuer rotates: Envoy fetches the new set once its cache (1s) expires
    settle(env, "/rot", 200, new.token())
    # each Envoy worker caches the keys on its own: every one has the new set within its cache time
    wait_for("the old key refused", lambda: env.status("/rot", old.token()) == 401, 15)
    time.sleep(1.5)
    assert {env.status("/rot", old.token()) for _ in range(8)} == {401}
    env.jwks.keys = [old]
    settle(env, "/rot", 200, old.token())


def test_jwt_from_cookie_and_query_and_local_jwks(env: Env) -> None:
    jwks = json.dumps({"keys": [env.key.jwk()]})
    local = {"name": "local", "issuer": ISSUER, "audiences": [AUDIENCE],
             "localJWKS": {"type": "ValueRef", "valueRef": {"kind": "ConfigMap", "name": "keys"}},
             "extractFrom": {"cookies": ["session"], "params": ["token"]}}
    env.apply([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keys", "namespace": NS},
         "data": {"jwks": jwks}},
        route("local", "/local"), security("local", "local", jwt={"providers": [local]}),
    ])
    token = env.key.token()
    settle(env, "/local?token=" + urllib.parse.quote(token), 200)
    assert env.status("/local", headers={"Cookie": f"session={token}"}) == 200
    assert env.status("/local", token) == 401  # the Authorization header is not where this provider looks
    assert env.status("/local", headers={"Cookie": f"session={Key('x').token()}"}) == 401


# ---------------------------------------------------------------- authorization

AUTHZ_RULES = [
    {"name": "blocked", "action": "Deny", "principal": {"headers": [{"name": "x-blocked"}]}},
    {"name": "writers", "action": "Allow", "operation": {"methods": ["POST"], "paths": ["/authz/orders/*"]},
     "principal": {"jwt": {"provider": "idp", "scopes": ["orders:write"]}}},
    {"name": "no-interns", "action": "Deny",
     "principal": {"jwt": {"provider": "idp", "claims": [{"name": "org.role", "values": ["intern"]}]}}},
    {"name": "admins", "action": "Allow",
     "principal": {"jwt": {"provider": "idp", "claims": [{"name": "groups", "valueType": "StringArray",
                                                          "values": ["admins"]}]}}},
    {"name": "public-json", "action": "Allow", "operation": {"methods": ["GET"], "paths": ["*.json"]}},
    {"name": "team-a-here", "action": "Allow",
     "principal": {"clientCIDRs": ["127.0.0.0/8"], "headers": [{"name": "x-team", "values": ["a"]}]}},
]
EXPIRED = {"exp": -3600}
# (method, path, claims of the token or None, headers) -> status: the first matching rule decides
AUTHZ_TABLE: list[tuple[str, str, dict[str, Any] | None, dict[str, str], int]] = [
    ("GET", "/authz/x", None, {}, 403),  # no rule: defaultAction Deny
    ("GET", "/authz/data.json", None, {}, 200),  # public-json
    ("HEAD", "/authz/data.json", None, {}, 403),  # not GET
    ("GET", "/authz/data.json", None, {"x-blocked": "1"}, 403),  # blocked comes first
    ("POST", "/authz/orders/1", {"scope": "orders:read orders:write"}, {}, 200),  # writers
    ("POST", "/authz/orders/1", {"scope": ["orders:write"]}, {}, 200),  # scopes as a list
    ("POST", "/authz/orders/1", {"scope": "orders:read"}, {}, 403),
    ("POST", "/authz/orders/1", {"scope": "orders:writer"}, {}, 403),  # a whole scope, not a prefix
    ("POST", "/authz/other", {"scope": "orders:write"}, {}, 403),  # path
    ("POST", "/authz/orders/1", None, {}, 403),  # no token (optional): no JWT rule matches
    ("GET", "/authz/x", {"groups": ["staff", "admins"]}, {}, 200),  # admins
    ("GET", "/authz/x", {"groups": ["admins"], "org": {"role": "intern"}}, {}, 403),  # no-interns first
    ("GET", "/authz/x", {"groups": ["admins"], "org": {"role": "staff"}}, {}, 200),
    ("POST", "/authz/orders/1", {"scope": "orders:write", "org": {"role": "intern"}}, {}, 200),  # writers first
    ("GET", "/authz/data.json", EXPIRED, {}, 401),  # a bad token is refused before any rule
    ("GET", "/authz/x", None, {"x-team": "a"}, 200),  # team-a-here
    ("GET", "/authz/x", None, {"x-team": "b"}, 403),
]


def test_authorization_rules_table(env: Env) -> None:
    env.apply([route("authz", "/authz"), security("authz", "authz", jwt={"optional": True, "providers": [
        remote_provider()]}, authorization={"defaultAction": "Deny", "rules": AUTHZ_RULES})])
    settle(env, "/authz/data.json", 200)
    got = []
    for method, path, claims, headers, _ in AUTHZ_TABLE:
        token = None
        if claims is not None:
            claims = {**claims, "exp": int(time.time()) + claims["exp"]} if "exp" in claims else claims
            token = env.key.token(**claims)
        got.append(env.status(path, token, method=method, headers=headers))
    assert got == [expected for *_, expected in AUTHZ_TABLE]


def test_authorization_default_allow_and_a_gateway_policy_a_route_overrides(env: Env) -> None:
    gateway = {"apiVersion": "gateway.portico.dev/v1alpha1", "kind": "SecurityPolicy",
               "metadata": {"name": "gateway", "namespace": NS},
               "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
                        "authorization": {"defaultAction": "Allow", "rules": [
                            {"action": "Deny", "operation": {"paths": ["*.php"]}}]}}}
    env.apply([route("site", "/site"), route("own", "/own"), gateway,
               security("own", "own", authorization={"defaultAction": "Deny", "rules": [
                   {"action": "Allow", "operation": {"methods": ["GET"]}}]})])
    settle(env, "/site/index.php", 403)
    assert env.status("/site/index.html") == 200
    assert env.status("/own/index.php") == 200  # the route's own policy wins over its Gateway's
    assert env.status("/own/x", method="DELETE") == 403


# ---------------------------------------------------------------- rate limits per caller


def test_rate_limit_per_jwt_caller(env: Env) -> None:
    """The README's "Securing an API": JWT + an authorization rule + a budget per caller
    (the token's sub), on one route."""
    limit = {"apiVersion": "gateway.portico.dev/v1alpha1", "kind": "RateLimitPolicy",
             "metadata": {"name": "per-caller", "namespace": NS},
             "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "orders"}],
                      "local": {"rules": [{"clientSelectors": [{"jwtClaim": {"name": "sub"}}],
                                           "limit": {"requests": 3, "unit": "Hour"}}]}}}
    env.apply([route("orders", "/orders"), limit, security("orders", "orders", jwt={"providers": [remote_provider()]},
                                                           authorization={"rules": [
                                                               {"action": "Allow", "principal": {"jwt": {
                                                                   "provider": "idp", "scopes": ["orders:read"]}}}]})])
    alice, bob = (env.key.token(sub=s, scope="orders:read") for s in ("alice", "bob"))
    settle(env, "/orders", 200, alice)
    assert [env.status("/orders", alice) for _ in range(3)] == [200, 200, 429]  # alice's budget: 3 an hour
    assert env.status("/orders", bob) == 200  # bob has his own
    assert env.status("/orders", env.key.token(sub="carol")) == 403  # no orders:read scope
    assert env.status("/orders") == 401


# ---------------------------------------------------------------- basic auth and API keys


def sha_htpasswd(users: dict[str, str]) -> str:
    """htpasswd -s: "{SHA}" and the base64 of the password's SHA-1."""
    return "".join(f"{u}:{{SHA}}{base64.b64encode(hashlib.sha1(p.encode()).digest()).decode()}\n"
                   for u, p in users.items())


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "stringData": data}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_and_api_keys(env: Env) -> None:
    env.apply([
        secret("users", {".htpasswd": sha_htpasswd({"alice": "wonderland", "bob": "builder"})}),
        secret("keys", {"billing": "k-billing-0001", "reports": "k-reports-0002"}),
        route("basic", "/basic"), security("basic", "basic", basicAuth={"users": {"name": "users"}}),
        route("keys", "/keys"), security("keys", "keys", apiKeyAuth={
            "credentialRefs": [{"name": "keys"}], "forwardClientIDHeader": "x-client", "sanitize": True,
            "extractFrom": [{"headers": ["x-api-key"], "params": ["api_key"]}]}),
    ])
    settle(env, "/basic", 200, headers=basic("alice", "wonderland"))
    assert env.status("/basic", headers=basic("bob", "builder")) == 200
    assert env.status("/basic", headers=basic("alice", "builder")) == 401  # wrong password
    assert env.status("/basic", headers=basic("carol", "wonderland")) == 401  # no such user
    assert env.status("/basic") == 401  # missing
    settle(env, "/keys", 200, headers={"x-api-key": "k-billing-0001"})
    status, body = env.request("/keys", headers={"x-api-key": "k-reports-0002"})
    assert status == 200 and body["headers"].get("X-Client") == ["reports"]  # the client's name forwarded
    assert "X-Api-Key" not in body["headers"]  # sanitize: the key is not
    assert env.status("/keys?api_key=k-billing-0001") == 200
    assert env.status("/keys", headers={"x-api-key": "k-nobody"}) == 401  # wrong
    assert env.status("/keys") == 401  # missing


def test_basic_auth_with_an_unsupported_hash_fails_closed_with_a_clear_status(env: Env) -> None:
    bcrypt = "alice:$2y$05$abcdefghijklmnopqrstuuS4Y4D5iTx2Nw8w6g.9yYg4QH0y/3C6a\n"
    env.apply([secret("users", {".htpasswd": bcrypt}), route("basic", "/basic"),
               security("basic", "basic", basicAuth={"users": {"name": "users"}})])
    settle(env, "/basic", 500, headers=basic("alice", "wonderland"))
    with urllib.request.urlopen(f"http://127.0.0.1:{env.admin}/api/objects?kind=SecurityPolicy", timeout=5) as r:
        policy = next(i for i in json.load(r)["items"] if i["metadata"]["name"] == "basic")
    conds = {c["type"]: c for c in policy["status"]["ancestors"][0]["conditions"]}
    assert conds["ResolvedRefs"]["status"] == "False" and conds["ResolvedRefs"]["reason"] == "UnsupportedValue"
    assert "bcrypt" in conds["ResolvedRefs"]["message"] and "SHA-1" in conds["ResolvedRefs"]["message"]


# ---------------------------------------------------------------- ECDS before the routes


def test_a_new_jwt_route_is_never_refused_a_valid_token(env: Env) -> None:
    """The jwt_authn providers travel by ECDS, the routes naming them by RDS/VHDS: a route
    must not reach Envoy before the config it names (else a valid token is refused while it
    is missing), nor keep naming one the config no longer has once its policy is removed.
    Requests are sent the instant the route answers, over several rounds."""
    docs: list[dict[str, Any]] = []
    token = env.key.token()
    seen: list[tuple[str, int]] = []
    for i in range(6):
        name = f"fresh{i}"
        docs += [route(name, f"/{name}"), security(name, name, jwt={"providers": [remote_provider()]})]
        env.apply(docs)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status = env.status(f"/{name}", token)
            except ConnectionRefusedError:  # (the first route: no listener yet)
                continue
            if status != 404:
                seen.append((name, status))
                break
        for _ in range(20):  # and after
            seen.append((name, env.status(f"/{name}", token)))
    # the policies go, the routes stay: open at once, never refused on the way
    env.apply([d for d in docs if d["kind"] == "HTTPRoute"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and env.status("/fresh0") == 401:
        seen.extend((f"fresh{i}", env.status(f"/fresh{i}", token)) for i in range(6))
    assert env.status("/fresh0") == 200
    assert [s for s in seen if s[1] != 200] == []


# ---------------------------------------------------------------- external authorization


class AuthServer(ThreadingHTTPServer):
    """An HTTP authorization service: allows a request whose x-token is "good" (2xx, naming
    the caller in x-auth-user), refuses others (403); records the paths and headers it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        super().__init__(("127.0.0.1", 0), AuthHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class AuthHandler(BaseHTTPRequestHandler):
    server: AuthServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        good = self.headers.get("x-token") == "good"
        self.send_response(200 if good else 403)
        if good:
            self.send_header("x-auth-user", "alice")
            self.send_header("x-auth-internal", "secret-detail")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


def test_ext_auth_http_service_and_fail_open(env: Env) -> None:
    auth = AuthServer()
    threading.Thread(target=auth.serve_forever, daemon=True).start()
    closed = free_port()  # nothing listens there: the service is unreachable
    ext = {"http": {"backendRefs": [{"name": "authz", "port": 80}], "path": "/check",
                    "headersToBackend": ["x-auth-user"]}, "headersToExtAuth": ["x-token"]}
    down = {"http": {"backendRefs": [{"name": "down", "port": 80}]}}
    try:
        env.apply([*service("authz", auth.port), *service("down", closed),
                   route("ext", "/ext"), security("ext", "ext", extAuth=ext),
                   route("closed", "/closed"), security("closed", "closed", extAuth=down),
                   route("open", "/fail-open"), security("open", "open", extAuth={**down, "failOpen": True})])
        settle(env, "/ext/a", 200, headers={"x-token": "good"})
        status, body = env.request("/ext/a?q=1", headers={"x-token": "good", "x-other": "1"})
        assert status == 200
        assert body["headers"].get("X-Auth-User") == ["alice"], (body, auth.seen)  # headersToBackend
        assert "X-Auth-Internal" not in body["headers"]  # only those
        path, headers = auth.seen[-1]
        assert path == "/check/ext/a?q=1"  # the path prefix, then the request's own
        assert headers.get("x-token") == "good" and "x-other" not in headers  # headersToExtAuth only
        assert env.status("/ext/a", headers={"x-token": "bad"}) == 403  # the service's refusal
        assert env.status("/ext/a") == 403
        settle(env, "/closed", 403)  # unreachable: fail closed
        settle(env, "/fail-open", 200)  # unreachable, failOpen: let through
    finally:
        auth.shutdown()


# ---------------------------------------------------------------- analyze agrees with Envoy


def analyzed(env: Env) -> dict[str, str]:
    """`portico analyze` against the running instance: UnauthenticatedPublicRoute findings."""
    result = subprocess.run([*portico_command(), "analyze", "--admin-address", f"127.0.0.1:{env.admin}",
                             "-o", "json"], capture_output=True, text=True, timeout=60)
    return {f["object"]: f["message"] for f in json.loads(result.stdout)["findings"]
            if f["code"] == "UnauthenticatedPublicRoute"}


def test_analyze_says_unauthenticated_where_envoy_answers_without_credentials(env: Env) -> None:
    """On a public Gateway, `portico analyze` calls a route unauthenticated exactly where a
    request without credentials gets through (200), and authenticated where it is refused
    (401). The older of two policies on a route applies (GEP-713), though the newer one is
    listed first and comes first by name: analyze must follow the translation, not the list."""
    keys = secret("keys", {"ops": "k-ops-0001"})
    older = security("b-addresses", "contested", authorization={"defaultAction": "Deny", "rules": [
        {"action": "Allow", "principal": {"clientCIDRs": ["127.0.0.0/8"]}}]})
    env.apply([keys, route("contested", "/contested"), older, route("locked", "/locked"),
               security("locked", "locked", apiKeyAuth={"credentialRefs": [{"name": "keys"}]})], public=True)
    settle(env, "/locked", 401)
    time.sleep(1.1)  # creationTimestamp has a resolution of a second: the next policy is newer
    newer = security("a-keys", "contested", apiKeyAuth={"credentialRefs": [{"name": "keys"}]})
    env.apply([keys, route("contested", "/contested"), newer, older, route("locked", "/locked"),
               security("locked", "locked", apiKeyAuth={"credentialRefs": [{"name": "keys"}]})], public=True)
    wait_for("a-keys Conflicted", lambda: "Conflicted" in json.dumps(
        json.loads(urllib.request.urlopen(f"http://127.0.0.1:{env.admin}/api/objects?kind=SecurityPolicy&name=a-keys",
                                          timeout=5).read())["items"][0]["status"]), 30)
    settle(env, "/contested", 200)
    assert env.status("/locked") == 401 and env.status("/locked", headers={"x-api-key": "k-ops-0001"}) == 200
    found = wait_for("analyze's verdict", lambda: analyzed(env) or None, 30)
    assert set(found) == {"HTTPRoute shop/contested"}, found
    assert "SecurityPolicy shop/b-addresses applies there" in found["HTTPRoute shop/contested"]
