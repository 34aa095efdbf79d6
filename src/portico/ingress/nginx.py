"""ingress-nginx annotations (`nginx.ingress.kubernetes.io/*`) as Gateway API pieces.

Why here and not in the route builder: an annotation is ingress-nginx's, and its
meaning (defaults included) is ingress-nginx's documented behaviour; this module
reads them once into `Annotations`, which `convert` turns into HTTPRoute rules,
filters and Portico policies. Each annotation maps as follows (README, "Migrating
from Ingress", has the table):

- rewrite-target: without capture groups, URLRewrite ReplaceFullPath (nginx replaces
  the whole URI); with `$n` groups, a Portico HTTPRouteFilter `replaceRegexMatch`
  (ExtensionRef filter). Where it differs from the path it makes, as use-regex does,
  every path of the host a regular expression (`convert`: per host).
- use-regex: every path of the host (every Ingress, every path type) a case-insensitive
  regular expression anchored at the start (nginx `location ~* "^path"`).
- ssl-redirect (default true for hosts with TLS), force-ssl-redirect: the plain
  HTTP listener answers a 308 to https (nginx's code).
- permanent-redirect (+ -code, 301) / temporal-redirect (+ -code, 302), app-root (302
  from `/`): RequestRedirect filters.
- enable-cors and cors-*: the HTTPRoute CORS filter, with ingress-nginx's defaults.
- affinity: cookie (+ session-cookie-name/-path/-max-age/-expires): rule sessionPersistence.
- canary, canary-weight (+ -total), canary-by-header (+ -value / -pattern),
  canary-by-cookie: weighted backendRefs and header-matched rules on the main Ingress's routes.
- backend-protocol HTTPS/GRPCS: a BackendTLSPolicy, trusting the `ca.crt` of the
  proxy-ssl-secret (`namespace/name`) with proxy-ssl-verify "on", the name checked
  proxy-ssl-name; GRPC/GRPCS: upstream HTTP/2 (BackendTrafficPolicy `upstreamHTTP2`).
- ssl-passthrough: a TLS Passthrough listener on 443 for the host and a TLSRoute to
  the backend of its `/` path (ingress-nginx's `--enable-ssl-passthrough`).
- x-forwarded-prefix: a RequestHeaderModifier setting X-Forwarded-Prefix where
  rewrite-target rewrites (ingress-nginx sets it only there).
- from-to-www-redirect: an HTTPRoute for `www.<host>` (or `<host>` for a `www.` host)
  redirecting (308) to the other name.
- proxy-body-size, proxy-connect/read/send-timeout, upstream-hash-by, load-balance,
  limit-connections (circuit breaker), proxy-next-upstream(-tries) (retry):
  BackendTrafficPolicy; whitelist-source-range: SecurityPolicy; limit-rps, limit-rpm:
  RateLimitPolicy (per client IP, burst limit-burst-multiplier x rate, 503 over it).
- auth-url (+ auth-response-headers): the ExternalAuth filter; mirror-target:
  RequestMirror; upstream-vhost: URLRewrite hostname; server-alias: more hostnames;
  auth-tls-secret: the Gateway's frontend TLS validation (`convert` decides), with the
  ssl-client-subject-dn/-issuer-dn headers (a Portico HTTPRouteFilter clientCertificateHeaders)
  and ssl-client-verify; verify-client optional, or on with auth-tls-error-page: a Portico
  HTTPRouteFilter requireClientCertificate (400, or a 302 to the error page, for a client
  without the certificate it needs); auth-tls-pass-certificate-to-upstream: ssl-client-cert.
- custom-http-errors (+ default-backend): a Portico HTTPRouteFilter errorPages per rule, the
  answers of those codes replaced by the default-backend Service's to a GET of `/` with
  X-Code and its companions (without default-backend: ingress-nginx's built-in 404).
- default-backend: a BackendTrafficPolicy fallback, the Service's endpoints the priority 1
  of every rule's clusters (served while the rule's Service has no endpoints).
- configuration-snippet: never run; its literal header directives become header modifiers.
- auth-type: basic + auth-secret (+ auth-realm): SecurityPolicy basicAuth (htpasswd).
- auth-signin (+ auth-signin-redirect-param), with auth-url: a Portico HTTPRouteFilter
  authSignin (a 401 of the authorization service becomes a 302 to the sign-in page).
- Authentication ingress-nginx enforces that is not converted (digest, auth-map, a bad
  auth-url): the routes refuse every request (`deny_all`), never serve it open.

Each annotation's outcome is in `Annotations.report`: converted, converted with a
difference (`differ`, what differs) or not converted (`refuse`, why).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PREFIX = "nginx.ingress.kubernetes.io/"
# ingress-nginx's enable-cors defaults (annotations documentation)
CORS_METHODS = "GET, PUT, POST, DELETE, PATCH, OPTIONS"
CORS_HEADERS = ("DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,"
                "Range,Authorization")
CORS_MAX_AGE = 1728000
SESSION_COOKIE = "INGRESSCOOKIE"
BURST_MULTIPLIER = 5
LIMIT_STATUS = 503  # ingress-nginx's limit-req-status-code default
# annotations read elsewhere or only together with another one
COMPANIONS = {
    "permanent-redirect-code", "temporal-redirect-code", "cors-allow-origin", "cors-allow-methods",
    "cors-allow-headers", "cors-expose-headers", "cors-allow-credentials", "cors-max-age",
    "session-cookie-name", "session-cookie-path", "session-cookie-max-age", "session-cookie-expires",
    "canary-weight", "canary-weight-total", "canary-by-header", "canary-by-header-value",
    "canary-by-header-pattern", "canary-by-cookie", "limit-burst-multiplier", "proxy-ssl-name",
    "auth-response-headers", "auth-method", "auth-signin-redirect-param", "auth-secret", "auth-secret-type",
    "auth-realm",
    "auth-tls-verify-client", "auth-tls-verify-depth", "auth-tls-error-page",
}
# the answer of ingress-nginx's built-in default backend (no --default-backend-service)
BUILTIN_DEFAULT_BACKEND = {"statusCode": 404, "body": "default backend - 404"}
# outcomes of an annotation (`portico convert --report`)
CONVERTED = "converted"
DIFFERENT = "converted with a difference"
NOT_CONVERTED = "not converted"
# well-known annotations that have no equivalent here, and why
NOT_SUPPORTED = {
    "server-snippet": "raw nginx configuration is never run (no Envoy equivalent)",
    "auth-secret": "read only with auth-type: basic",
    "auth-realm": "read only with auth-type: basic",
    "session-cookie-samesite": "SameSite is not a sessionPersistence attribute",
}
# proxy-next-upstream conditions -> BackendTrafficPolicy retry triggers / status codes
NEXT_UPSTREAM_TRIGGERS = {"error": ("connect-failure", "refused-stream", "reset"), "timeout": ("reset",)}
NEXT_UPSTREAM_CODES = {f"http_{c}": c for c in (500, 502, 503, 504, 403, 404, 429)}
DEFAULT_NEXT_UPSTREAM_TRIES = 3
# a Service by its cluster DNS name: name.namespace[.svc[.cluster.local]]
SERVICE_HOST = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)"
                          r"(\.svc(\.cluster\.local)?)?$")
# configuration-snippet directives with a Gateway API equivalent (header modifiers):
# directive -> whether it sets a response header (else a request header)
SNIPPET_HEADERS = {"more_set_headers": True, "add_header": True, "proxy_set_header": False,
                   "more_set_input_headers": False}
HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
# the original URL in an auth-signin query parameter, as oauth2-proxy's docs write it
SIGNIN_RETURN = re.compile(r"(\$(scheme|pass_access_scheme)://\$(host|http_host))?\$(escaped_)?request_uri")
NGINX_VARIABLE = re.compile(r"^\$(remote_addr|binary_remote_addr|http_(\w+)|cookie_(\w+)|arg_(\w+)|request_uri|uri)$")


@dataclass
class Canary:
    weight: int | None = None
    total: int = 100
    header: str | None = None
    header_value: str | None = None
    header_pattern: str | None = None
    cookie: str | None = None


@dataclass
class Annotations:
    """What an Ingress's ingress-nginx annotations ask for, in Gateway API terms."""

    rewrite_full: str | None = None  # URLRewrite ReplaceFullPath
    rewrite_regex: tuple[str, str] | None = None  # (substitution with \\n groups) -> HTTPRouteFilter
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    redirect: dict[str, Any] | None = None  # a RequestRedirect for every path
    app_root: str | None = None
    cors: dict[str, Any] | None = None
    session: dict[str, Any] | None = None  # rule sessionPersistence
    backend_tls: bool = False
    ssl_name: str | None = None
    ssl_secret: tuple[str, str] | None = None  # proxy-ssl-secret (namespace, name): its ca.crt
    ssl_verify: bool = False  # proxy-ssl-verify "on"
    ssl_passthrough: bool = False
    forwarded_prefix: str | None = None  # X-Forwarded-Prefix where the path is rewritten
    www_redirect: bool = False  # from-to-www-redirect
    rewrite_target: str | None = None  # as given: ingress-nginx rewrites where it differs from the path
    use_regex: bool = False
    external_auth: dict[str, Any] | None = None  # ExternalAuth filter; backendRef by (namespace, name, port)
    signin: dict[str, str] | None = None  # Portico HTTPRouteFilter authSignin (with auth-url)
    mirror: dict[str, Any] | None = None  # RequestMirror backendRef
    upstream_vhost: str | None = None  # URLRewrite hostname
    aliases: list[str] = field(default_factory=list)  # server-alias: more hostnames of the host
    basic_auth: dict[str, str] | None = None  # SecurityPolicy basicAuth.users (a SecretObjectReference)
    client_ca: tuple[str, str] | None = None  # auth-tls-secret (namespace, name): its ca.crt
    # custom-http-errors: the codes whose answers the error page replaces, and the
    # default-backend Service that serves it (else ingress-nginx's built-in 404)
    error_codes: list[int] = field(default_factory=list)
    error_backend: str | None = None
    # default-backend: the Service whose endpoints serve a rule whose Service has none
    # (a BackendTrafficPolicy fallback)
    fallback: str | None = None
    client_mode: str = "AllowValidOnly"  # auth-tls-verify-client on; optional: AllowInsecureFallback
    # the routes' own check of the client certificate (a Portico HTTPRouteFilter
    # requireClientCertificate), where the Gateway accepts every client: verify-client
    # optional, or on with auth-tls-error-page
    client_check: dict[str, Any] | None = None
    request_headers: list[dict[str, str]] = field(default_factory=list)  # configuration-snippet, set
    # auth-tls-*: the client certificate's headers for the backend (Certificate, Subject or
    # Issuer: a Portico HTTPRouteFilter clientCertificateHeaders)
    client_headers: dict[str, str] = field(default_factory=dict)
    response_headers: list[dict[str, str]] = field(default_factory=list)  # configuration-snippet, set
    traffic: dict[str, Any] = field(default_factory=dict)  # BackendTrafficPolicy spec
    allow_cidrs: list[str] = field(default_factory=list)  # SecurityPolicy
    rate_limit: dict[str, Any] | None = None  # RateLimitPolicy spec
    canary: Canary | None = None
    not_converted: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # annotations not of ingress-nginx
    # authentication ingress-nginx enforces that is not converted: the routes refuse every
    # request (403) rather than serve unauthenticated what ingress-nginx protected
    deny_all: bool = False
    # annotation (without the prefix) -> (CONVERTED | DIFFERENT | NOT_CONVERTED, why)
    report: dict[str, tuple[str, str]] = field(default_factory=dict)

    def differ(self, key: str, what: str) -> None:
        """`key` is converted, but does not behave exactly as in ingress-nginx: `what` differs."""
        if self.report.get(key, (CONVERTED, ""))[0] == DIFFERENT and what in self.report[key][1]:
            return
        previous = self.report.get(key, (CONVERTED, ""))
        detail = f"{previous[1]}; {what}" if previous[0] == DIFFERENT else what
        self.report[key] = (DIFFERENT, detail)
        self.not_converted.append(f"annotation {PREFIX}{key}: converted with a difference: {what}")

    def refuse(self, key: str, why: str) -> None:
        """`key` is not converted, because `why`."""
        self.report[key] = (NOT_CONVERTED, why)
        self.not_converted.append(f"annotation {PREFIX}{key}: {why}")


def read(annotations: dict[str, str], ignore: frozenset[str] = frozenset()) -> Annotations:
    """`annotations` of one Ingress; keys in `ignore` (e.g. the class annotation) are not reported."""
    nginx = {k[len(PREFIX):]: str(v) for k, v in annotations.items() if k.startswith(PREFIX)}
    out = Annotations()
    for key in sorted(annotations):
        if not key.startswith(PREFIX) and key not in ignore:
            out.foreign.append(f"annotation {key}: not an ingress-nginx annotation; not converted")
            out.not_converted.append(out.foreign[-1])
    for key in sorted(nginx):
        value = nginx[key]
        reader = _READERS.get(key)
        try:
            if reader is not None:
                reader(value, nginx, out)
            elif key not in COMPANIONS:
                out.refuse(key, NOT_SUPPORTED.get(key, "not supported"))
        except ValueError as e:
            out.refuse(key, f"{value!r}: {e}; not converted")
        out.report.setdefault(key, (CONVERTED, ""))
    enforced = {"auth-type": True, "auth-url": True,
                "auth-tls-secret": nginx.get("auth-tls-verify-client", "on") == "on"}
    for key, enforcing in enforced.items():
        if enforcing and out.report.get(key, (CONVERTED, ""))[0] == NOT_CONVERTED:
            out.deny_all = True
            why = "not enforced here, so every request to this Ingress is refused (403) rather than served " \
                  "unauthenticated"
            out.report[key] = (NOT_CONVERTED, f"{out.report[key][1]}; {why}")
            out.not_converted.append(f"annotation {PREFIX}{key}: {why}")
    return out


def _rewrite(value: str, nginx: dict[str, str], out: Annotations) -> None:
    """ingress-nginx: `rewrite "(?i)<path>" <target> break` where the target differs from
    the path, and then every path of the host is a regular expression (`convert`)."""
    if not value:
        return
    out.rewrite_target = value
    if re.search(r"\$\d", value):
        out.rewrite_regex = (re.sub(r"\$(\d)", r"\\\1", value), value)
    else:
        out.rewrite_full = value


def _use_regex(value: str, nginx: dict[str, str], out: Annotations) -> None:
    out.use_regex = _bool(value)


def _proxy_ssl_secret(value: str, nginx: dict[str, str], out: Annotations) -> None:
    namespace, _, name = value.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError("not namespace/name")
    out.ssl_secret = (namespace, name)


def _proxy_ssl_verify(value: str, nginx: dict[str, str], out: Annotations) -> None:
    if value not in ("on", "off"):
        raise ValueError("not on or off")
    out.ssl_verify = value == "on"


def _ssl_passthrough(value: str, nginx: dict[str, str], out: Annotations) -> None:
    out.ssl_passthrough = _bool(value)


def _forwarded_prefix(value: str, nginx: dict[str, str], out: Annotations) -> None:
    out.forwarded_prefix = value or None


def _www_redirect(value: str, nginx: dict[str, str], out: Annotations) -> None:
    out.www_redirect = _bool(value)


def _ssl_redirect(value: str, nginx: dict[str, str], out: Annotations) -> None:
    out.ssl_redirect = _bool(value)


def _force_ssl_redirect(value: str, nginx: dict[str, str], out: Annotations) -> None:
    out.force_ssl_redirect = _bool(value)


def _redirect_to(code_key: str, default: int) -> Any:
    def reader(value: str, nginx: dict[str, str], out: Annotations) -> None:
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("not an absolute http(s) URL")
        code = int(nginx.get(code_key, default))
        if code not in (301, 302, 303, 307, 308):
            raise ValueError(f"redirect code {code} is not one of 301, 302, 303, 307, 308")
        redirect: dict[str, Any] = {"scheme": url.scheme, "hostname": url.hostname, "statusCode": code}
        if url.port:
            redirect["port"] = url.port
        redirect["path"] = {"type": "ReplaceFullPath", "replaceFullPath": url.path or "/"}
        if url.query:
            out.differ(code_key.split("-code")[0], f"the query {url.query!r} is dropped (a RequestRedirect "
                                                   "has no query)")
        out.redirect = redirect
    return reader


def _app_root(value: str, nginx: dict[str, str], out: Annotations) -> None:
    if not value.startswith("/"):
        raise ValueError("not a path")
    out.app_root = value


def _cors(value: str, nginx: dict[str, str], out: Annotations) -> None:
    if not _bool(value):
        return
    origins = _list(nginx.get("cors-allow-origin", "*"))
    out.cors = {
        "allowOrigins": origins,
        "allowMethods": _list(nginx.get("cors-allow-methods", CORS_METHODS)),
        "allowHeaders": _list(nginx.get("cors-allow-headers", CORS_HEADERS)),
        "allowCredentials": _bool(nginx.get("cors-allow-credentials", "true")),
        "maxAge": int(nginx.get("cors-max-age", CORS_MAX_AGE)),
    }
    if nginx.get("cors-expose-headers"):
        out.cors["exposeHeaders"] = _list(nginx["cors-expose-headers"])


def _affinity(value: str, nginx: dict[str, str], out: Annotations) -> None:
    if value != "cookie":
        raise ValueError("only cookie affinity exists")
    cookie: dict[str, Any] = {"name": nginx.get("session-cookie-name", SESSION_COOKIE)}
    if nginx.get("session-cookie-path"):
        cookie["path"] = nginx["session-cookie-path"]
    session: dict[str, Any] = {"type": "Cookie", "cookie": cookie}
    lifetime = nginx.get("session-cookie-max-age") or nginx.get("session-cookie-expires")
    if lifetime:
        cookie["lifetimeType"] = "Permanent"
        session["absoluteTimeout"] = _duration(int(lifetime))
    out.session = session


def _canary(value: str, nginx: dict[str, str], out: Annotations) -> None:
    if not _bool(value):
        return
    weight = nginx.get("canary-weight")
    out.canary = Canary(
        weight=int(weight) if weight is not None else None,
        total=int(nginx.get("canary-weight-total", 100)),
        header=nginx.get("canary-by-header"), header_value=nginx.get("canary-by-header-value"),
        header_pattern=nginx.get("canary-by-header-pattern"), cookie=nginx.get("canary-by-cookie"))


def _backend_protocol(value: str, nginx: dict[str, str], out: Annotations) -> None:
    protocol = value.upper()
    if protocol not in ("HTTP", "HTTPS", "GRPC", "GRPCS"):
        raise ValueError("only HTTP, HTTPS, GRPC and GRPCS are converted")
    out.backend_tls = protocol in ("HTTPS", "GRPCS")
    out.ssl_name = nginx.get("proxy-ssl-name")
    if protocol.startswith("GRPC"):
        out.traffic["upstreamHTTP2"] = True


def _body_size(value: str, nginx: dict[str, str], out: Annotations) -> None:
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", value.strip())
    if not match:
        raise ValueError("not an nginx size")
    number, unit = int(match[1]), match[2].lower()
    if number == 0:
        return  # nginx: 0 disables the check
    out.traffic["requestBuffer"] = {"limit": f"{number}{ {'': '', 'k': 'Ki', 'm': 'Mi', 'g': 'Gi'}[unit] }"}


def _timeout(kind: str) -> Any:
    def reader(value: str, nginx: dict[str, str], out: Annotations) -> None:
        seconds = int(value)
        timeout = out.traffic.setdefault("timeout", {})
        if kind == "connect":
            timeout["connect"] = _duration(seconds)
        else:  # read and send: the time between two reads/writes, Envoy's per-route idle timeout
            current = timeout.get("idle")
            timeout["idle"] = _duration(max(seconds, int(current[:-1]) if current else 0))
    return reader


def _hash_by(value: str, nginx: dict[str, str], out: Annotations) -> None:
    match = NGINX_VARIABLE.match(value.strip())
    if not match:
        raise ValueError("only $remote_addr, $binary_remote_addr, $http_*, $cookie_*, $arg_*, "
                         "$request_uri and $uri are converted")
    name, header, cookie, arg = match.groups()
    if header:
        hash_on: dict[str, Any] = {"header": {"name": header.replace("_", "-")}}
    elif cookie:
        hash_on = {"cookie": {"name": cookie}}
    elif arg:
        hash_on = {"queryParameter": {"name": arg}}
    elif name in ("request_uri", "uri"):
        hash_on = {"header": {"name": ":path"}}
    else:
        hash_on = {"sourceIP": {}}
    out.traffic["loadBalancer"] = {"type": "RingHash", "hashOn": hash_on}


def _load_balance(value: str, nginx: dict[str, str], out: Annotations) -> None:
    kinds = {"round_robin": "RoundRobin", "ewma": "LeastRequest", "least_conn": "LeastRequest"}
    if value not in kinds:
        raise ValueError("only round_robin, ewma and least_conn are converted")
    if "upstream-hash-by" not in nginx:  # nginx: upstream-hash-by wins
        out.traffic["loadBalancer"] = {"type": kinds[value]}


def _source_range(value: str, nginx: dict[str, str], out: Annotations) -> None:
    cidrs = _list(value)
    for cidr in cidrs:
        if not re.fullmatch(r"[0-9a-fA-F:.]+(/\d{1,3})?", cidr):
            raise ValueError(f"{cidr!r} is not a CIDR")
    out.allow_cidrs = [c if "/" in c else f"{c}/{128 if ':' in c else 32}" for c in cidrs]


def _limit_rps(value: str, nginx: dict[str, str], out: Annotations) -> None:
    rate = int(value)
    burst = rate * int(nginx.get("limit-burst-multiplier", BURST_MULTIPLIER))
    rules = (out.rate_limit or {"local": {"rules": []}})["local"]["rules"]
    rules.append({"clientSelectors": [{"sourceIP": {}}], "limit": {"requests": rate, "unit": "Second"},
                  "burst": burst})
    # ingress-nginx's limit-req-status-code (a ConfigMap option) defaults to 503
    out.rate_limit = {"local": {"rules": rules, "responseStatusCode": LIMIT_STATUS}}


def _limit_rpm(value: str, nginx: dict[str, str], out: Annotations) -> None:
    """limit_req rate=Nr/m, burst N x limit-burst-multiplier; with limit-rps, both apply."""
    rate = int(value)
    burst = rate * int(nginx.get("limit-burst-multiplier", BURST_MULTIPLIER))
    rules = (out.rate_limit or {"local": {"rules": []}})["local"]["rules"]
    rules.append({"clientSelectors": [{"sourceIP": {}}], "limit": {"requests": rate, "unit": "Minute"},
                  "burst": burst})
    # ingress-nginx's limit-req-status-code (a ConfigMap option) defaults to 503
    out.rate_limit = {"local": {"rules": rules, "responseStatusCode": LIMIT_STATUS}}


def _limit_connections(value: str, nginx: dict[str, str], out: Annotations) -> None:
    """limit_conn per client address (503 over it): the closest is a circuit breaker on
    the parallel requests to the route's backends (503 over it), for all clients together."""
    limit = int(value)
    if limit <= 0:
        raise ValueError("not a positive number")
    out.traffic["circuitBreaker"] = {"maxParallelRequests": limit}
    out.differ("limit-connections", "the limit is on parallel requests to the backends of the Ingress's "
                                    "routes, for all clients together (ingress-nginx: connections per client "
                                    "address)")


def service_ref(url: str, what: str) -> dict[str, Any]:
    """A Service backendRef from an http URL naming it by its cluster DNS name, and the path."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"{what} must be an http:// URL naming a Service (name.namespace.svc)")
    found = SERVICE_HOST.match(parts.hostname or "")
    if not found:
        raise ValueError(f"{what}'s host must be a Service's cluster name (name.namespace[.svc.cluster.local])")
    return {"name": found[1], "namespace": found[3], "port": parts.port or 80, "path": parts.path or "/"}


def _auth_url(value: str, nginx: dict[str, str], out: Annotations) -> None:
    """auth_request to the URL: the HTTPRoute ExternalAuth filter (HTTP) to that Service,
    auth-response-headers copied into the forwarded request."""
    ref = service_ref(value, "auth-url")
    http: dict[str, Any] = {"path": ref.pop("path"), "allowedHeaders": ["Cookie"]}
    if nginx.get("auth-response-headers"):
        http["allowedResponseHeaders"] = _list(nginx["auth-response-headers"])
    out.external_auth = {"protocol": "HTTP", "backendRef": ref, "http": http}
    out.differ("auth-url", "the authorization service gets the request's path after the URL's path, "
                           "its Authorization and Cookie headers (ingress-nginx: the URL as it is, every header, "
                           "X-Original-URL), and only 200 allows (ingress-nginx: any 2xx); its other answers "
                           "reach the client as they are (ingress-nginx: 401, 403, else 500)")
    if nginx.get("auth-method"):
        out.differ("auth-url", "auth-method is not converted: the request's own method is sent")


def _auth_type(value: str, nginx: dict[str, str], out: Annotations) -> None:
    """auth_basic with the htpasswd file of auth-secret (`name` or `namespace/name`, its
    `auth` key): SecurityPolicy basicAuth on the routes, which reads that key when the
    Secret has no `.htpasswd` (Envoy Gateway's key)."""
    if value != "basic":
        raise ValueError("only basic is converted (Envoy has no digest authentication)")
    if nginx.get("auth-secret-type", "auth-file") != "auth-file":
        raise ValueError("auth-secret-type auth-map (a key per user) is not converted: only an htpasswd file")
    secret = nginx.get("auth-secret", "")
    namespace, _, name = secret.rpartition("/")
    if not name or "/" in namespace:
        raise ValueError("auth-secret names no Secret (name or namespace/name)")
    out.basic_auth = {"name": name, **({"namespace": namespace} if namespace else {})}
    out.differ("auth-type", "Envoy checks {SHA} htpasswd hashes only (htpasswd -s): a Secret with an apr1, bcrypt "
                            "or crypt hash (ingress-nginx takes them) leaves the policy unresolved and its routes "
                            "answer 500 (fail closed) until those users are hashed again with -s")
    if "auth-realm" in nginx:
        out.differ("auth-type", "auth-realm is not sent: the 401's WWW-Authenticate realm is the request's URL "
                                "(Envoy's basic_auth)")


def _auth_signin(value: str, nginx: dict[str, str], out: Annotations) -> None:
    """error_page 401 = a 302 to the sign-in URL with rd=<the original URL> (ingress-nginx's
    buildAuthSignURL): a Portico HTTPRouteFilter authSignin beside the ExternalAuth."""
    if "auth-url" not in nginx:
        raise ValueError("read only with auth-url")
    param = nginx.get("auth-signin-redirect-param") or "rd"
    parts = urlsplit(value)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    kind = "URL"  # ingress-nginx's own: $pass_access_scheme://$http_host$escaped_request_uri
    # oauth2-proxy's documented `?rd=$escaped_request_uri` (or $request_uri, with $scheme/$host
    # before it): that parameter is the one Portico fills in, with what it names
    for key, v in query:
        found = SIGNIN_RETURN.fullmatch(v)
        if found:
            param = key
            value = urlunsplit(parts._replace(query=urlencode([(k, x) for k, x in query if k != key])))
            escaped = bool(found[4])
            kind = ("URL" if escaped else "UnescapedURL") if found[1] else \
                ("EscapedRequestURI" if escaped else "RequestURI")
            if len(query) > 1:
                out.differ("auth-signin", f"{key} is the URL's last query parameter (ingress-nginx: where it is)")
    if not re.match(r"https?://", value) or "$" in value:
        raise ValueError("only an absolute http(s) URL without other nginx variables is converted")
    out.signin = {"url": value, "redirectParam": param, **({"redirectValue": kind} if kind != "URL" else {})}
    out.differ("auth-signin", "a 401 of the backend itself is redirected too (ingress-nginx: only the "
                              "authorization service's)")


def _custom_http_errors(value: str, nginx: dict[str, str], out: Annotations) -> None:
    """error_page <code> = @custom_<upstream>_<code>: a GET of / to the default backend with
    X-Code and its companions, its answer returned as it is: a Portico HTTPRouteFilter
    errorPages per rule (`convert`)."""
    codes = []
    for code in _list(value):
        if not code.isdigit() or not 400 <= int(code) <= 599:
            raise ValueError(f"{code!r} is not an error status code (400-599)")
        codes.append(int(code))
    if not codes:
        raise ValueError("no status codes")
    out.error_codes = codes
    out.error_backend = nginx.get("default-backend") or None
    out.differ("custom-http-errors", "the error page's X-Request-ID is the client's, else a new one (ingress-nginx: "
                                     "its request id, which the backend got too)")
    if out.error_backend is None:
        out.differ("custom-http-errors", "ingress-nginx's --default-backend-service (a controller flag, not in the "
                                         "Ingress) is not known here: without the default-backend annotation the "
                                         "listed codes are answered 404 \"default backend - 404\", as ingress-nginx's "
                                         "built-in default backend does")


def _default_backend(value: str, nginx: dict[str, str], out: Annotations) -> None:
    """The Service (of the Ingress's namespace, its first port) that ingress-nginx sends a
    location's requests to while the location's Service has no active endpoints, for every
    path of the Ingress (`getBackendServers`: the location's upstream replaced by the
    custom default backend when it has none, and only when the default backend has
    some); with custom-http-errors, also the Service of the error pages. A
    BackendTrafficPolicy `fallback` (`convert`): its endpoints are priority 1 of the
    rule's clusters."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value):
        raise ValueError("not a Service name (of the Ingress's namespace)")
    out.fallback = value
    out.differ("default-backend", "a rule whose Service does not exist answers 500, the Gateway API's answer for "
                                  "an unresolved backendRef (ingress-nginx: the default backend, as for a Service "
                                  "without endpoints)")


def _mirror_target(value: str, nginx: dict[str, str], out: Annotations) -> None:
    if value.startswith("/"):
        raise ValueError("an internal location cannot be converted")
    ref = service_ref(value.replace("$request_uri", ""), "mirror-target")
    ref.pop("path")
    out.mirror = ref
    if not value.endswith("$request_uri"):
        out.differ("mirror-target", "the mirror gets the request's own path (ingress-nginx: the URL's)")


def _upstream_vhost(value: str, nginx: dict[str, str], out: Annotations) -> None:
    if not re.fullmatch(r"[A-Za-z0-9.-]+", value):
        raise ValueError("only a literal host name is converted (no nginx variables)")
    out.upstream_vhost = value


def _next_upstream(value: str, nginx: dict[str, str], out: Annotations) -> None:
    """proxy_next_upstream: which failures try the next endpoint, proxy-next-upstream-tries
    times in all (ingress-nginx's default 3): a BackendTrafficPolicy retry."""
    words = value.split()
    tries = int(nginx.get("proxy-next-upstream-tries", DEFAULT_NEXT_UPSTREAM_TRIES))
    if "off" in words or tries == 1:
        out.traffic["retry"] = {"numRetries": 0}
        return
    triggers: list[str] = []
    codes: list[int] = []
    for word in words:
        if word in NEXT_UPSTREAM_TRIGGERS:
            triggers += [t for t in NEXT_UPSTREAM_TRIGGERS[word] if t not in triggers]
        elif word in NEXT_UPSTREAM_CODES:
            codes.append(NEXT_UPSTREAM_CODES[word])
        elif word == "non_idempotent":
            continue
        else:
            raise ValueError(f"{word!r} is not converted")
    if codes:
        triggers.append("retriable-status-codes")
    retry: dict[str, Any] = {"numRetries": tries - 1 if tries > 0 else 10, "retryOn": {"triggers": triggers}}
    if codes:
        retry["retryOn"]["httpStatusCodes"] = codes
    out.traffic["retry"] = retry
    if "non_idempotent" not in words:
        out.differ("proxy-next-upstream", "requests of every method are retried (ingress-nginx: not POST, LOCK "
                                          "or PATCH without non_idempotent)")


def _auth_tls_secret(value: str, nginx: dict[str, str], out: Annotations) -> None:
    """ssl_client_certificate + ssl_verify_client: the Gateway's frontend TLS validation
    on its HTTPS port (`convert` decides whether the Gateway can carry it)."""
    namespace, _, name = value.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError("not namespace/name")
    verify = nginx.get("auth-tls-verify-client", "on")
    if verify not in ("on", "off", "optional", "optional_no_ca"):
        raise ValueError(f"auth-tls-verify-client {verify!r} is not on, off, optional or optional_no_ca")
    if verify == "off":
        return
    out.client_ca = (namespace, name)
    # what ingress-nginx's template sets for the backend beside a client CA; a value the
    # client cannot forge: its own header of the name is removed first
    out.client_headers["ssl-client-subject-dn"] = "Subject"
    out.client_headers["ssl-client-issuer-dn"] = "Issuer"
    if nginx.get("auth-tls-verify-depth", "1") != "1":
        out.differ("auth-tls-secret", "auth-tls-verify-depth is not converted: Envoy accepts a chain of any "
                                      "length to the CA")
    page = nginx.get("auth-tls-error-page")
    if page is not None and not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", page):
        raise ValueError("auth-tls-error-page is not an absolute http(s) URL")
    if verify == "on":  # only a verified client reaches the backend (the handshake, or the routes' check)
        out.request_headers.append({"name": "ssl-client-verify", "value": "SUCCESS"})
    else:
        out.differ("auth-tls-secret", "no ssl-client-verify header for the backend (Envoy has no value for it)")
    if verify == "on" and page is None:
        out.differ("auth-tls-secret", "a client without a valid certificate fails the TLS handshake "
                                      "(ingress-nginx: a 400 answer)")
        return
    # nginx: no certificate (496, verify-client on) or a failed one (495) is answered 400,
    # or a 302 to auth-tls-error-page: the Gateway accepts every client, the routes check
    out.client_mode = "AllowInsecureFallback"
    if verify in ("on", "optional"):
        out.client_check = {"optional": verify == "optional", **({"errorRedirect": page} if page else {})}
    elif page is not None:
        out.differ("auth-tls-secret", "auth-tls-error-page is not used: verify-client optional_no_ca never "
                                      "fails (as in ingress-nginx)")


def _pass_certificate(value: str, nginx: dict[str, str], out: Annotations) -> None:
    """ssl-client-cert: $ssl_client_escaped_cert (the URL-encoded PEM), where auth-tls-secret
    asks for a client certificate: Envoy's %DOWNSTREAM_PEER_CERT% is the same encoding."""
    if not _bool(value):
        return
    if not nginx.get("auth-tls-secret") or nginx.get("auth-tls-verify-client", "on") == "off":
        raise ValueError("without auth-tls-secret (verify-client not off) there is no client certificate to pass")
    out.client_headers["ssl-client-cert"] = "Certificate"


def _next_upstream_tries(value: str, nginx: dict[str, str], out: Annotations) -> None:
    if "proxy-next-upstream" not in nginx:  # with ingress-nginx's default conditions
        _next_upstream("error timeout", nginx, out)


def _server_alias(value: str, nginx: dict[str, str], out: Annotations) -> None:
    aliases = _list(value)
    for alias in aliases:
        if not re.fullmatch(r"(\*\.)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?", alias):
            raise ValueError(f"{alias!r} is not a host name (regular expressions are not converted)")
    out.aliases = aliases


def _service_upstream(value: str, nginx: dict[str, str], out: Annotations) -> None:
    if _bool(value):
        out.differ("service-upstream", "requests go to the Service's endpoints, balanced by Envoy "
                                       "(ingress-nginx: to its cluster IP, balanced by kube-proxy)")


def _proxy_buffering(value: str, nginx: dict[str, str], out: Annotations) -> None:
    if value not in ("on", "off"):
        raise ValueError("not on or off")
    if value == "on":
        out.differ("proxy-buffering", "Envoy streams the response to the client as it comes (ingress-nginx: "
                                      "buffers it first); the answers are the same")


def _request_buffering(value: str, nginx: dict[str, str], out: Annotations) -> None:
    if value not in ("on", "off"):
        raise ValueError("not on or off")
    if value == "on":
        out.differ("proxy-request-buffering", "Envoy streams the request body to the backend (ingress-nginx: "
                                              "reads it whole first); proxy-body-size still limits it")


def _configuration_snippet(value: str, nginx: dict[str, str], out: Annotations) -> None:
    """Never run. Header directives become header modifiers; any other directive is
    reported (and the snippet then only partly converted)."""
    others = []
    for directive in (d.strip() for d in value.replace("\n", ";").split(";")):
        if directive:
            found = _snippet_headers(directive)
            if found is None:
                others.append(directive)
            else:
                (out.response_headers if SNIPPET_HEADERS[directive.split()[0]] else out.request_headers).extend(found)
    if others and not (out.request_headers or out.response_headers):
        raise ValueError("raw nginx configuration is never run (no Envoy equivalent)")
    if others:
        out.differ("configuration-snippet", "never run: its header directives are header modifiers; not "
                                            f"converted: {'; '.join(others)}")
    else:
        out.differ("configuration-snippet", "never run: its header directives are converted to header modifiers")


def _snippet_headers(directive: str) -> list[dict[str, str]] | None:
    """`more_set_headers 'Name: value' ...`, `add_header Name value [always]`,
    `proxy_set_header Name value` with literal values; None for anything else."""
    try:
        words = shlex.split(directive)
    except ValueError:
        return None
    if words[0] not in SNIPPET_HEADERS or "$" in directive:
        return None
    if words[0].startswith("more_set"):
        pairs = [w.partition(":") for w in words[1:]]
        if not pairs or any(not sep or not HEADER_NAME.fullmatch(n.strip()) for n, sep, _ in pairs):
            return None
        return [{"name": n.strip(), "value": v.strip()} for n, _, v in pairs]
    args = words[1:-1] if words[-1] == "always" and words[0] == "add_header" else words[1:]
    if len(args) != 2 or not HEADER_NAME.fullmatch(args[0]):
        return None
    return [{"name": args[0], "value": args[1]}]


_READERS = {
    "rewrite-target": _rewrite,
    "use-regex": _use_regex,
    "ssl-redirect": _ssl_redirect,
    "force-ssl-redirect": _force_ssl_redirect,
    "permanent-redirect": _redirect_to("permanent-redirect-code", 301),
    "temporal-redirect": _redirect_to("temporal-redirect-code", 302),
    "app-root": _app_root,
    "enable-cors": _cors,
    "affinity": _affinity,
    "canary": _canary,
    "backend-protocol": _backend_protocol,
    "proxy-body-size": _body_size,
    "proxy-connect-timeout": _timeout("connect"),
    "proxy-read-timeout": _timeout("read"),
    "proxy-send-timeout": _timeout("send"),
    "upstream-hash-by": _hash_by,
    "load-balance": _load_balance,
    "whitelist-source-range": _source_range,
    "allowlist-source-range": _source_range,  # its newer name
    "limit-rps": _limit_rps,
    "proxy-ssl-secret": _proxy_ssl_secret,
    "proxy-ssl-verify": _proxy_ssl_verify,
    "ssl-passthrough": _ssl_passthrough,
    "x-forwarded-prefix": _forwarded_prefix,
    "from-to-www-redirect": _www_redirect,
    "limit-rpm": _limit_rpm,
    "limit-connections": _limit_connections,
    "auth-url": _auth_url,
    "auth-type": _auth_type,
    "auth-signin": _auth_signin,
    "mirror-target": _mirror_target,
    "custom-http-errors": _custom_http_errors,
    "default-backend": _default_backend,
    "upstream-vhost": _upstream_vhost,
    "proxy-next-upstream": _next_upstream,
    "proxy-next-upstream-tries": _next_upstream_tries,
    "server-alias": _server_alias,
    "service-upstream": _service_upstream,
    "proxy-buffering": _proxy_buffering,
    "proxy-request-buffering": _request_buffering,
    "configuration-snippet": _configuration_snippet,
    "auth-tls-secret": _auth_tls_secret,
    "auth-tls-pass-certificate-to-upstream": _pass_certificate,
}


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ValueError("not true or false")
    return value.lower() == "true"


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _duration(seconds: int) -> str:
    if seconds < 0 or seconds > 99999:
        raise ValueError("out of range")
    return f"{seconds}s"
