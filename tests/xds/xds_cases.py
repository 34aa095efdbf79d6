"""Hand-built IRs covering the Envoy mapping rules (golden files and Envoy acceptance)."""

from __future__ import annotations

from pathlib import Path

from portico import ir

TESTDATA = Path(__file__).parent / "testdata"


def pem(name: str) -> str:
    return (TESTDATA / name).read_text()


SVC = "httproute/default/svc/8080"
SVC2 = "httproute/default/svc2/8080"


def _backend(cluster: str | None, weight: int = 1, **kw: ir.HeaderModifier) -> ir.WeightedBackend:
    return ir.WeightedBackend(cluster, weight, **kw)


def _route(name: str, path: ir.PathMatch, action: ir.RouteAction, **match: object) -> ir.Route:
    return ir.Route(name, ir.RouteMatch(path=path, **match), action)  # type: ignore[arg-type]


def _clusters() -> tuple[ir.Cluster, ...]:
    return (
        ir.Cluster(SVC, (ir.Endpoint("127.20.0.1", 8080), ir.Endpoint("127.20.0.2", 8080))),
        ir.Cluster(SVC2, ()),
    )


def http_basic() -> ir.IR:
    """Matches, weights, invalid backends, header modifiers, direct responses."""
    prefix = ir.PathMatch("Prefix", "/")
    routes = (
        _route("exact", ir.PathMatch("Exact", "/exact"), ir.RouteAction(backends=(_backend(SVC),))),
        _route(
            "headers",
            ir.PathMatch("Prefix", "/v2/"),
            ir.RouteAction(backends=(_backend(SVC, 3), _backend(SVC2, 1), _backend(None, 1), _backend(SVC2, 0))),
            headers=(
                ir.HeaderMatch("version", "two"),
                ir.HeaderMatch("x-re", "^a.*$", "RegularExpression"),
                ir.HeaderMatch("x-not", "no", invert=True),
            ),
            query_params=(ir.QueryParamMatch("q", "1"), ir.QueryParamMatch("r", "[0-9]+", "RegularExpression")),
            method="POST",
        ),
        _route(
            "modifiers",
            ir.PathMatch("RegularExpression", "/re/[a-z]+"),
            ir.RouteAction(
                backends=(
                    _backend(
                        SVC,
                        request_headers=ir.HeaderModifier(set=(ir.HeaderValue("x-b", "1"),), remove=("x-drop",)),
                        response_headers=ir.HeaderModifier(add=(ir.HeaderValue("x-resp", "b"),)),
                    ),
                ),
                request_headers=ir.HeaderModifier(
                    set=(ir.HeaderValue("x-set", "s"),), add=(ir.HeaderValue("x-add", "a"),), remove=("x-rm",)
                ),
                response_headers=ir.HeaderModifier(set=(ir.HeaderValue("x-r", "r"),)),
            ),
        ),
        _route("all-invalid", ir.PathMatch("Prefix", "/invalid"), ir.RouteAction(backends=(_backend(None),))),
        _route("zero", ir.PathMatch("Prefix", "/zero"), ir.RouteAction(backends=(_backend(SVC, 0),))),
        _route("direct", ir.PathMatch("Prefix", "/direct"), ir.RouteAction(direct_status=503)),
        _route("grpc", prefix, ir.RouteAction(backends=(_backend(SVC),)), grpc=True),
        _route("catch-all", prefix, ir.RouteAction(backends=(_backend(SVC),), websocket=True)),
    )
    vhosts = (
        ir.VirtualHost("default/gw/http/example.com", ("example.com", "*.example.com"), routes),
        ir.VirtualHost("default/gw/http/*", ("*",), (routes[-1],)),
    )
    http = ir.HTTPConfig("127.30.0.1:18080/http", vhosts)
    listener = ir.Listener(
        "127.30.0.1:18080/tcp", "127.30.0.1", 18080, filter_chains=(ir.FilterChain("default/gw/http", http=http),)
    )
    return ir.IR(listeners=(listener,), clusters=_clusters())


def http_filters() -> ir.IR:
    """Redirects, rewrites, mirrors, timeouts, retries, CORS, session persistence."""
    backends = (_backend(SVC),)
    foo = ir.PathMatch("Prefix", "/foo")
    routes = (
        _route(
            "redirect",
            ir.PathMatch("Prefix", "/redirect"),
            ir.RouteAction(redirect=ir.Redirect(scheme="https", hostname="example.org", port=8443, status_code=301)),
        ),
        _route(
            "redirect-prefix",
            ir.PathMatch("Prefix", "/old/"),
            ir.RouteAction(redirect=ir.Redirect(path_prefix="/new", strip_port=True, status_code=308)),
        ),
        _route("redirect-full", ir.PathMatch("Exact", "/full"), ir.RouteAction(redirect=ir.Redirect(path_full="/x"))),
        _route("rewrite-prefix", foo, ir.RouteAction(backends=backends, rewrite=ir.URLRewrite("h.example", None, "/"))),
        _route(
            "rewrite-prefix2",
            ir.PathMatch("Prefix", "/bar/"),
            ir.RouteAction(backends=backends, rewrite=ir.URLRewrite(path_prefix="/xyz/")),
        ),
        _route(
            "rewrite-full",
            ir.PathMatch("Prefix", "/full"),
            ir.RouteAction(backends=backends, rewrite=ir.URLRewrite(path_full="/replaced")),
        ),
        _route(
            "mirror-timeouts",
            ir.PathMatch("Prefix", "/mirror"),
            ir.RouteAction(
                backends=backends,
                mirrors=(ir.Mirror(SVC2), ir.Mirror(SVC2, 1, 3)),
                timeout_ms=0,
                backend_timeout_ms=1500,
            ),
        ),
        _route(
            "retry",
            ir.PathMatch("Prefix", "/retry"),
            ir.RouteAction(
                backends=backends,
                retry=ir.Retry(attempts=2, codes=(500, 503), backoff_ms=100),
                backend_timeout_ms=250,
            ),
        ),
        _route(
            "cors",
            ir.PathMatch("Prefix", "/cors"),
            ir.RouteAction(
                backends=backends,
                timeout_ms=10_000,
                cors=ir.CORS(
                    allow_origins=("https://example.com", "https://*.example.org", "*"),
                    allow_methods=("GET", "PUT"),
                    allow_headers=("x-a",),
                    expose_headers=("x-b",),
                    allow_credentials=True,
                    max_age_s=600,
                ),
            ),
        ),
        _route(
            "session-cookie",
            ir.PathMatch("Prefix", "/cookie"),
            ir.RouteAction(backends=backends, session_persistence=ir.SessionPersistence("Cookie", "sticky", 60)),
        ),
        _route(
            "session-header",
            ir.PathMatch("Prefix", "/header"),
            ir.RouteAction(backends=backends, session_persistence=ir.SessionPersistence("Header", "x-session")),
        ),
    )
    http = ir.HTTPConfig("127.30.0.2:18080/http", (ir.VirtualHost("default/gw/http/*", ("*",), routes),))
    listener = ir.Listener(
        "127.30.0.2:18080/tcp", "127.30.0.2", 18080, filter_chains=(ir.FilterChain("default/gw/http", http=http),)
    )
    return ir.IR(listeners=(listener,), clusters=_clusters())


def tls_listeners() -> ir.IR:
    """HTTPS by SNI (with mTLS and 421), TLS passthrough, plain TCP, UDP, upstream TLS."""
    cert = ir.TLSCertificate("default/example-cert", pem("server.pem"), pem("server.key"))
    route = _route("all", ir.PathMatch("Prefix", "/"), ir.RouteAction(backends=(_backend(SVC),)))
    https = ir.FilterChain(
        "default/gw/https",
        server_names=("example.com", "*.example.com"),
        tls=ir.DownstreamTLS((cert,), client_validation=ir.ClientValidation(pem("ca.pem"))),
        http=ir.HTTPConfig(
            "127.30.0.3:18443/https",
            (ir.VirtualHost("default/gw/https/example.com", ("example.com", "*.example.com"), (route,)),),
            misdirected_421=True,
        ),
    )
    https_default = ir.FilterChain(
        "default/gw/https-any",
        tls=ir.DownstreamTLS((cert,), client_validation=ir.ClientValidation(pem("ca.pem"), optional=True)),
        http=ir.HTTPConfig("127.30.0.3:18443/https-any", (ir.VirtualHost("default/gw/https-any/*", ("*",), (route,)),)),
    )
    passthrough = ir.FilterChain(
        "default/gw/tls/passthrough",
        server_names=("pass.example.net",),
        tcp=ir.TCPConfig((_backend("tlsroute/default/tls/443", 1), _backend(None, 1))),
    )
    tcp = ir.FilterChain("default/gw/tcp", tcp=ir.TCPConfig((_backend("tcproute/default/tcp/9000"),)))
    tcp_invalid = ir.FilterChain("default/gw/tcp-invalid", tcp=ir.TCPConfig((_backend(None),)))
    clusters = (
        *_clusters(),
        ir.Cluster("tlsroute/default/tls/443", (ir.Endpoint("127.20.0.3", 443),), protocol="tcp"),
        ir.Cluster("tcproute/default/tcp/9000", (ir.Endpoint("127.20.0.4", 9000),), protocol="tcp"),
        ir.Cluster("udproute/default/udp/53", (ir.Endpoint("127.20.0.5", 5353),), protocol="udp"),
        ir.Cluster("udproute/default/udp2/53", (ir.Endpoint("127.20.0.6", 5353),), protocol="udp"),
        ir.Cluster(
            "httproute/default/secure/443",
            (ir.Endpoint("127.20.0.7", 8443),),
            protocol="h2",
            tls=ir.UpstreamTLS(
                "backend.test",
                ca_pem=pem("ca.pem"),
                subject_alt_names=(
                    ir.SubjectAltName("Hostname", "backend.test"),
                    ir.SubjectAltName("URI", "spiffe://x"),
                ),
                client_cert_secret="default/client-cert",
            ),
        ),
        ir.Cluster(
            "httproute/default/public/443", (), protocol="h2c", tls=ir.UpstreamTLS("example.org", system_ca=True)
        ),
        ir.Cluster(
            "httproute/default/external/80", (ir.Endpoint("localhost", 80),), dns=True, lb_policy="least_request"
        ),
    )
    listeners = (
        ir.Listener("127.30.0.3:18443/tcp", "127.30.0.3", 18443, filter_chains=(https, https_default, passthrough)),
        ir.Listener("127.30.0.3:19000/tcp", "127.30.0.3", 19000, filter_chains=(tcp,)),
        ir.Listener("127.30.0.3:19001/tcp", "127.30.0.3", 19001, filter_chains=(tcp_invalid,)),
        ir.Listener("127.30.0.3:19002/tcp", "127.30.0.3", 19002),  # nothing to serve: not emitted
        ir.Listener(
            "127.30.0.3:19053/udp",
            "127.30.0.3",
            19053,
            transport="udp",
            udp_backends=(_backend("udproute/default/udp/53", 1), _backend("udproute/default/udp2/53", 3)),
        ),
    )
    secrets = (
        ir.TLSCertificate("default/client-cert", pem("client.pem"), pem("client.key")),
        ir.TLSCertificate("default/unused", pem("client.pem"), pem("client.key")),
    )
    return ir.IR(listeners=listeners, clusters=clusters, secrets=secrets)


JWKS = "securitypolicy/default/idp/80"
PROVIDER = ir.JWTProvider(
    name="default/api/idp", issuer="https://idp.example.com", audiences=("orders",),
    jwks_uri="http://idp.default/jwks.json", jwks_cluster=JWKS, jwks_cache_s=60,
    claim_to_headers=(("x-user", "sub"),), clock_skew_s=30)
LOCAL = ir.JWTProvider(name="default/web/local", local_jwks=(
    '{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": "IVwoc_MNunhz_kpD-7B0HxIC2Uup9HNl2ML0ueEgsF8", '
    '"y": "qxOjWSt8MywPiFOtXEONwGv_DxuIERsqRE-vT48Maww"}]}'), from_cookies=("session",),
                       from_params=("token",), from_headers=(("x-token", ""),), forward=True)


OIDC_CLUSTER = "oidc/default/login/idp.example.com:443"
OIDC = ir.OIDC(
    name="default/login", client_id="portal", client_secret="client-s3cret", hmac_secret="hmac-s3cret",
    authorization_endpoint="https://idp.example.com/authorize", token_endpoint="https://idp.example.com/token",
    token_cluster=OIDC_CLUSTER, scopes=("openid", "email"), resources=("https://api.example.com",),
    redirect_uri="https://%REQ(:authority)%/callback", redirect_path="/callback", logout_path="/bye",
    forward_access_token=True, default_token_ttl_s=300, access_token_cookie="at", id_token_cookie="it",
    cookie_suffix="0123abcd", cookie_domain="example.com")


def http_security(with_policies: bool = True) -> ir.IR:
    """SecurityPolicy: JWT (remote and local keys, optional), authorization rules on
    claims, scopes, headers, methods, paths and client addresses."""
    backends = (_backend(SVC),)
    rules = (
        ir.AuthorizationRule(allow=False, name="no-interns", jwt_provider=PROVIDER.name,
                             claims=((("org", "role"), ("intern",)),)),
        ir.AuthorizationRule(allow=True, name="writers", methods=("POST", "PUT"), paths=("/orders/*", "*.json"),
                             jwt_provider=PROVIDER.name, scopes=("orders:write",)),
        ir.AuthorizationRule(allow=True, name="readers", methods=("GET",), headers=(("x-team", ("a", "b")),
                                                                                      ("x-debug", ()))),
        ir.AuthorizationRule(allow=False, cidrs=("10.0.0.0/8",)),
    )
    secured = ir.RouteAction(backends=backends, jwt=ir.JWTAuthentication((PROVIDER,)),
                             authorization=ir.ClientAuthorization(False, rules, "default/api"),
                             rate_limits=(ir.RateLimit(100, 3600, 100, claims=("sub", "org.id")),))
    optional = ir.RouteAction(backends=backends, jwt=ir.JWTAuthentication((PROVIDER, LOCAL), optional=True),
                              authorization=ir.ClientAuthorization(True, rules[:1]),
                              rate_limits=(ir.RateLimit(10, 1, 10, claims=("sub",)),))
    open_ = ir.RouteAction(backends=backends)
    basic = ir.RouteAction(backends=backends, basic_auth=ir.BasicAuth("alice:{SHA}Kd5ORu2LcaGO/JzK5Bf5MsVaa/M=\n"))
    keys = ir.RouteAction(backends=backends, api_key_auth=ir.APIKeyAuth(
        (("billing", "k1"), ("reports", "k2")), headers=("x-api-key",), params=("api_key",), cookies=("key",),
        forward_client_header="x-client", hide_credentials=True))
    routes = (
        _route("secured", ir.PathMatch("Prefix", "/orders"), secured if with_policies else open_),
        _route("optional", ir.PathMatch("Prefix", "/shop"), optional if with_policies else open_),
        _route("basic", ir.PathMatch("Prefix", "/basic"), basic if with_policies else open_),
        _route("keys", ir.PathMatch("Prefix", "/keys"), keys if with_policies else open_),
        _route("login", ir.PathMatch("Prefix", "/app"), ir.RouteAction(backends=backends, oidc=OIDC)
               if with_policies else open_),
        _route("open", ir.PathMatch("Prefix", "/"), open_),
    )
    vh = ir.VirtualHost("default/gw/http/api.example.com", ("api.example.com",), routes)
    chain = ir.FilterChain("default/gw/http", http=ir.HTTPConfig("127.30.0.3:18082/http", (vh,)))
    clusters = (*_clusters(), ir.Cluster(JWKS, (ir.Endpoint("127.20.0.9", 80),)),
                ir.Cluster(OIDC_CLUSTER, (ir.Endpoint("idp.example.com", 443),), dns=True,
                           tls=ir.UpstreamTLS("idp.example.com", system_ca=True)))
    listener = ir.Listener("127.30.0.3:18082/tcp", "127.30.0.3", 18082, filter_chains=(chain,))
    return ir.IR(listeners=(listener,), clusters=clusters)


CASES = {"http_basic": http_basic, "http_filters": http_filters, "tls_listeners": tls_listeners,
         "http_security": http_security}
