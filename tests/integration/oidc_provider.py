"""An OpenID provider for tests, built with authlib's framework-agnostic server on
http.server: discovery, authorize (auto-approves one test user), token (authorization
code with PKCE required and checked; refresh_token), JWKS. It records what it was
asked and what it issued, for the tests to check."""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from authlib.oauth2 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, JsonRequest
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey

USER = "alice"


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str] = field(default_factory=list)  # empty: any (the test's callback is on a random port)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0] if self.redirect_uris else ""

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in ("openid", "email", "profile"))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return not self.redirect_uris or redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None = None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class Token:
    client_id: str
    user: str
    scope: str
    access_token: str
    refresh_token: str | None
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def is_revoked(self) -> bool:
        return self.revoked

    def is_expired(self) -> bool:
        return False  # refresh tokens do not expire here


class Provider:
    """The provider's state (clients, codes, tokens) and its authlib server."""

    def __init__(self, client_id: str, client_secret: str, token_ttl_s: int) -> None:
        self.client = Client(client_id, client_secret)
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, Token] = {}  # by refresh token
        self.issued: list[str] = []  # access tokens, in order
        self.log: list[tuple[str, dict[str, str]]] = []  # (path, parameters) of every request
        self.grants: list[str] = []  # grant types answered with a token
        self.issuer = ""
        self.lock = threading.Lock()
        provider = self

        class AuthCode(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
                data = request.payload.data
                provider.codes[code] = Code(code, request.client.client_id, data.get("redirect_uri", ""),
                                            request.payload.scope or "", USER, data.get("code_challenge"),
                                            data.get("code_challenge_method"), data.get("nonce"))

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                found = provider.codes.get(code)
                return found if found is not None and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> str:
                return authorization_code.user

        class Refresh(grants.RefreshTokenGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
            INCLUDE_NEW_REFRESH_TOKEN = True

            def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
                found = provider.tokens.get(refresh_token)
                return found if found is not None and not found.revoked else None

            def authenticate_user(self, credential: Token) -> str:
                return credential.user

            def revoke_old_credential(self, refresh_token: Token) -> None:
                refresh_token.revoked = True

        class IDToken(OpenIDCode):
            def resolve_client_private_key(self, client: Client) -> RSAKey:
                return provider.key

            def get_client_claims(self, client: Client) -> dict[str, Any]:
                return {"iss": provider.issuer, "aud": [client.client_id]}

            def get_encode_header(self, client: Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": "k1"}

            def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
                return False

            def generate_user_info(self, user: str, scope: str) -> UserInfo:
                return UserInfo(sub=user, name="Alice", email="alice@example.com")

        class Server(AuthorizationServer):
            def query_client(self, client_id: str) -> Client | None:
                return provider.client if client_id == provider.client.client_id else None

            def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
                provider.issued.append(token["access_token"])
                provider.grants.append(request.payload.grant_type)
                if token.get("refresh_token"):
                    provider.tokens[token["refresh_token"]] = Token(
                        request.client.client_id, request.user, token.get("scope", ""), token["access_token"],
                        token["refresh_token"])

            def create_oauth2_request(self, request: Any) -> OAuth2Request:
                return request  # type: ignore[no-any-return]  # built by the handler

            def create_json_request(self, request: Any) -> JsonRequest:
                raise NotImplementedError

            def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, Any]:
                return status, body, headers

            def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
                pass

        self.server = Server()
        self.server.register_token_generator("default", BearerTokenGenerator(
            lambda **kw: secrets.token_urlsafe(24), lambda **kw: secrets.token_urlsafe(24),
            lambda client, grant_type: token_ttl_s))
        self.server.register_grant(AuthCode, [CodeChallenge(required=True), IDToken()])
        self.server.register_grant(Refresh)

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks.json",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]}


class Request(OAuth2Request):
    """An OAuth2Request of http.server's: the query (GET) or form (POST) parameters."""

    def __init__(self, method: str, uri: str, params: dict[str, str], headers: dict[str, str]) -> None:
        super().__init__(method, uri, headers=headers)
        self.params = params
        self.payload = BasicOAuth2Payload(params)

    @property
    def args(self) -> dict[str, str]:
        return self.params if self.method == "GET" else {}

    @property
    def form(self) -> dict[str, str]:
        return self.params if self.method == "POST" else {}


class ProviderServer(ThreadingHTTPServer):
    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        super().__init__(("127.0.0.1", 0), Handler)
        provider.issuer = f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(BaseHTTPRequestHandler):
    server: ProviderServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        provider = self.server.provider
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query))
        with provider.lock:
            provider.log.append((url.path, params))
            if url.path == "/.well-known/openid-configuration":
                return self.json(200, provider.discovery())
            if url.path == "/jwks.json":
                return self.json(200, {"keys": [provider.key.as_dict(private=False)]})
            if url.path == "/authorize":
                return self.authlib(lambda req: provider.server.create_authorization_response(req, grant_user=USER),
                                    params)
        self.json(404, {"error": "not_found"})

    def do_POST(self) -> None:  # noqa: N802
        provider = self.server.provider
        url = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        params = dict(urllib.parse.parse_qsl(body))
        with provider.lock:
            provider.log.append((url.path, params))
            if url.path == "/token":
                return self.authlib(provider.server.create_token_response, params)
        self.json(404, {"error": "not_found"})

    def authlib(self, call: Callable[[OAuth2Request], tuple[int, Any, Any]], params: dict[str, str]) -> None:
        request = Request(self.command, f"{self.server.provider.issuer}{self.path}", params,
                          dict(self.headers.items()))
        status, body, headers = call(request)
        self.send_response(status)
        for name, value in headers or []:
            self.send_header(name, value)
        data = (json.dumps(body) if isinstance(body, dict) else (body or "")).encode()
        if isinstance(body, dict) and not any(n.lower() == "content-type" for n, _ in headers or []):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def json(self, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass
