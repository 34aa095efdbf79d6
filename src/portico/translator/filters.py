"""HTTPRoute and GRPCRoute filters (HTTPRouteFilter, GRPCRouteFilter) → IR action pieces.

Three outcomes besides the IR pieces themselves (HTTPRouteRule.filters):
- `invalid`: the rule cannot be programmed as written (an unknown or unsupported
  filter type or value, an incompatible combination); the route drops the rule
  and reports it (Accepted=False UnsupportedValue / IncompatibleFilters, or
  PartiallyInvalid when other rules survive).
- `failed`: an ExtensionRef that cannot be resolved. "the filter MUST NOT be
  skipped. Instead, requests that would have been processed by that filter MUST
  receive a HTTP error response": the rule answers 500.
- `conds`: reference problems (ResolvedRefs=False) of mirror backends and
  extension references.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from portico import ir
from portico.ir import AppProtocol
from portico.models import (
    PORTICO_GROUP,
    GRPCRouteFilter,
    HTTPCORSFilter,
    HTTPExternalAuthFilter,
    HTTPHeaderFilter,
    HTTPPathModifier,
    HTTPRequestMirrorFilter,
    HTTPRequestRedirectFilter,
    HTTPRouteFilter,
    HTTPURLRewriteFilter,
    LocalObjectReference,
    PorticoHTTPRouteFilter,
    Resource,
)
from portico.translator.conditions import Cond
from portico.translator.errorpages import error_pages_of, error_pages_problem
from portico.translator.regex import regex_problem
from portico.translator.signin import signin_location

CLIENT_CERT_VALUES = ("Certificate", "Subject", "Issuer")  # HTTPRouteFilter clientCertificateHeaders

if TYPE_CHECKING:  # avoids an import cycle
    from portico.translator.backends import Backends

AnyFilter = HTTPRouteFilter | GRPCRouteFilter

# HTTPRouteFilter.type -> the field that carries its configuration
# ("filter.<field> must be specified for <type> filter.type").
CONFIG_FIELDS = {
    "RequestHeaderModifier": "request_header_modifier",
    "ResponseHeaderModifier": "response_header_modifier",
    "RequestMirror": "request_mirror",
    "RequestRedirect": "request_redirect",
    "URLRewrite": "url_rewrite",
    "CORS": "cors",
    "ExternalAuth": "external_auth",
    "ExtensionRef": "extension_ref",
}
HTTP_FILTER_TYPES = frozenset(CONFIG_FIELDS)
# GRPCRouteFilter.type enum.
GRPC_FILTER_TYPES = frozenset({"RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef"})
# Filters a backendRef may carry here ("executed if and only if the request is being
# forwarded to the backend defined here"): header edits map to Envoy's per-cluster header
# options; RequestRedirect and URLRewrite (HTTPRouteBackendRequestRedirect,
# HTTPRouteBackendURLRewrite) split the rule into one route per backend share
# (httproute.backend_splits); anything else at that level is not supported.
BACKEND_FILTER_TYPES = frozenset({"RequestHeaderModifier", "ResponseHeaderModifier", "ExtensionRef",
                                  "RequestRedirect", "URLRewrite"})
# "This filter can be used multiple times within the same rule": RequestMirror and ExtensionRef only.
REPEATABLE = frozenset({"RequestMirror", "ExtensionRef"})
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
REDIRECT_SCHEMES = frozenset({"http", "https"})
PATH_MODIFIERS = frozenset({"ReplaceFullPath", "ReplacePrefixMatch"})
# HTTPCORSFilter.maxAge: "When the MaxAge field is unspecified, the gateway sets the
# response header Access-Control-Max-Age: 5 by default."
CORS_DEFAULT_MAX_AGE = 5
AUTH_PROTOCOLS = frozenset({"GRPC", "HTTP"})
# HTTPAuthConfig.path: "Valid values are the same as the 'value' regex for path values".
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# in a header value, a tab is allowed (RFC 9110 5.5 field-value: VCHAR, SP, HTAB, obs-text)
HEADER_VALUE_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# requireClientCertificate.errorRedirect: a Location (no control characters or spaces)
ABSOLUTE_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f/?#]+[^\s\x00-\x1f\x7f]*")
AUTH_PATH = re.compile(r"/(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})*")


@dataclass
class FilterSet:
    request_headers: ir.HeaderModifier = ir.HeaderModifier()
    response_headers: ir.HeaderModifier = ir.HeaderModifier()
    redirect: HTTPRequestRedirectFilter | None = None  # resolved per listener (port defaults)
    rewrite: ir.URLRewrite | None = None
    mirrors: tuple[ir.Mirror, ...] = ()
    cors: ir.CORS | None = None
    external_auth: ir.ExternalAuth | None = None
    signin: str | None = None  # HTTPRouteFilter authSignin: the 302's Location format string
    error_pages: ir.ErrorPages | None = None  # HTTPRouteFilter errorPages
    client_cert_check: ir.ClientCertificateCheck | None = None  # HTTPRouteFilter requireClientCertificate
    client_cert_headers: tuple[tuple[str, str], ...] = ()  # HTTPRouteFilter clientCertificateHeaders
    conds: list[Cond] = field(default_factory=list)
    failed: bool = False  # an ExtensionRef could not be resolved: the rule answers 500
    invalid: Cond | None = None  # the rule cannot be programmed (Accepted=False reason)


def unsupported(message: str) -> Cond:
    return Cond("Accepted", False, "UnsupportedValue", message)


def incompatible(message: str) -> Cond:
    return Cond("Accepted", False, "IncompatibleFilters", message)


# ---------------------------------------------------------------- validation


def filters_problem(filters: list[HTTPRouteFilter] | list[GRPCRouteFilter],
                    allowed: frozenset[str], where: str = "here") -> Cond | None:
    """Why this filter list cannot be programmed, if it cannot (the CRD rules
    plus the values this implementation does not support)."""
    for f in filters:
        problem = filter_problem(f, allowed, where)
        if problem:
            return problem
    counts = Counter(f.type for f in filters)
    repeated = sorted(t for t, n in counts.items() if n > 1 and t not in REPEATABLE)
    if repeated:
        return incompatible(f"{repeated[0]} filter cannot be repeated")
    if counts["RequestRedirect"] and counts["URLRewrite"]:
        # "All filters are expected to be compatible with each other except for the
        # URLRewrite and RequestRedirect filters, which may not be combined."
        return incompatible("RequestRedirect and URLRewrite filters cannot be combined")
    return None


def filter_problem(f: AnyFilter, allowed: frozenset[str], where: str) -> Cond | None:
    if f.type not in allowed:
        # "Unknown values here must result in the implementation setting the Accepted
        # Condition for the Route to status: False, with a Reason of UnsupportedValue."
        return unsupported(f"filter type {f.type} is not supported {where}")
    if getattr(f, CONFIG_FIELDS[f.type], None) is None:
        return unsupported(f"filter {f.type} has no {CONFIG_FIELDS[f.type]} configuration")
    headers = (header_filter_problem(f.request_header_modifier, request=True)
               or header_filter_problem(f.response_header_modifier, request=False))
    if headers:
        return headers
    if isinstance(f, HTTPRouteFilter):
        return (redirect_problem(f.request_redirect) or rewrite_problem(f.url_rewrite)
                or mirror_problem(f.request_mirror) or external_auth_problem(f.external_auth))
    return mirror_problem(f.request_mirror)


def header_filter_problem(f: HTTPHeaderFilter | None, request: bool) -> Cond | None:
    """HTTPHeader.value: "Must consist of printable US-ASCII characters, optionally
    separated by single tabs or spaces" (RFC 7230 3.2): a CR or LF would split the header
    (the rule's pattern is the experimental channel's; control characters are refused here
    in any channel, as Envoy refuses them).
    Host: on a request, `set` rewrites the authority (Envoy's host rewrite, `xds.routes`);
    `add` would send two Hosts (RFC 9112 3.2: answered 400) and `remove` none at all
    (an HTTP/1.1 request without Host is invalid), and Envoy refuses to modify or remove
    Host (or any ":"-pseudo-header) through its header lists. A response has no Host."""
    if f is None:
        return None
    which = "RequestHeaderModifier" if request else "ResponseHeaderModifier"
    for h in (*f.set, *f.add):
        if HEADER_VALUE_CONTROLS.search(h.value):
            return unsupported(f"{which} header {h.name}: value {h.value!r} contains control characters "
                               "(a header value is printable characters separated by single tabs or spaces)")
    host_edits = [("set", h.name) for h in f.set] + [("add", h.name) for h in f.add] + [("remove", n) for n in f.remove]
    for action, name in host_edits:
        if name.lower() != "host" or (request and action == "set"):
            continue
        if not request:
            return unsupported(f"{which} cannot {action} the Host header: a response has none")
        return unsupported(f"{which} cannot {action} the Host header: a request has exactly one Host "
                           "(use set, or URLRewrite hostname, to change it)")
    return None


def redirect_problem(r: HTTPRequestRedirectFilter | None) -> Cond | None:
    if r is None:
        return None
    if r.status_code not in REDIRECT_CODES:
        return unsupported(f"redirect statusCode {r.status_code} is not supported")
    if r.scheme is not None and r.scheme not in REDIRECT_SCHEMES:
        return unsupported(f"redirect scheme {r.scheme} is not supported")
    return path_modifier_problem(r.path)


def rewrite_problem(r: HTTPURLRewriteFilter | None) -> Cond | None:
    return path_modifier_problem(r.path) if r else None


def path_modifier_problem(p: HTTPPathModifier | None) -> Cond | None:
    if p is None:
        return None
    if p.type not in PATH_MODIFIERS:
        return unsupported(f"path modifier type {p.type} is not supported")
    value = p.replace_full_path if p.type == "ReplaceFullPath" else p.replace_prefix_match
    if value is None:
        return unsupported(f"path modifier {p.type} has no value")
    if CONTROL_CHARACTERS.search(value):
        # a CR or LF in a path would end the request line (request smuggling); Envoy refuses it
        return unsupported(f"path modifier {p.type} value {value!r} contains control characters")
    return None


def mirror_problem(m: HTTPRequestMirrorFilter | None) -> Cond | None:
    if m is None:
        return None
    if m.percent is not None and m.fraction is not None:
        return unsupported("only one of percent or fraction may be specified in RequestMirror")
    if m.fraction is not None and not 0 <= m.fraction.numerator <= m.fraction.denominator:
        return unsupported("RequestMirror fraction numerator must be between 0 and the denominator")
    if m.percent is not None and not 0 <= m.percent <= 100:
        return unsupported("RequestMirror percent must be between 0 and 100")
    return None


def external_auth_problem(a: HTTPExternalAuthFilter | None) -> Cond | None:
    if a is None:
        return None
    if a.protocol not in AUTH_PROTOCOLS:
        return unsupported(f"ExternalAuth protocol {a.protocol} is not supported")
    if a.protocol == "GRPC" and a.grpc and a.grpc.allowed_headers:
        # Envoy sets the headers of ext_authz gRPC checks per filter, not per route.
        return unsupported("ExternalAuth grpc.allowedHeaders is not supported")
    path = a.http.path if a.http else ""
    if path and not AUTH_PATH.fullmatch(path):
        return unsupported(f"ExternalAuth http.path {path!r} is not a valid path")
    return None


def prefix_replacements(filters: list[HTTPRouteFilter]) -> bool:
    """Does a redirect or rewrite use ReplacePrefixMatch? ("ReplacePrefixMatch is only
    compatible with a PathPrefix HTTPRouteMatch.")"""
    paths = [f.request_redirect.path if f.request_redirect else f.url_rewrite.path if f.url_rewrite else None
             for f in filters]
    return any(p is not None and p.type == "ReplacePrefixMatch" for p in paths)


# ---------------------------------------------------------------- translation


def header_modifier(f: HTTPHeaderFilter | None) -> ir.HeaderModifier:
    """HTTPHeaderFilter: set replaces, add appends (a second value, which a
    client sees joined with a comma), remove removes; names are case-insensitive."""
    if f is None:
        return ir.HeaderModifier()
    return ir.HeaderModifier(
        set=tuple(ir.HeaderValue(h.name, h.value) for h in f.set),
        add=tuple(ir.HeaderValue(h.name, h.value) for h in f.add),
        remove=tuple(f.remove),
    )


def apply_filters(route: Resource, filters: list[HTTPRouteFilter] | list[GRPCRouteFilter],
                  backends: Backends, allowed: frozenset[str] = HTTP_FILTER_TYPES, where: str = "here",
                  protocol: AppProtocol = "http1") -> FilterSet:
    """`allowed`: the filter types valid where the filters are; `protocol`: what
    mirror backends speak when their Service does not say (gRPC: h2c)."""
    out = FilterSet(invalid=filters_problem(filters, allowed, where))
    if out.invalid is not None:
        return out
    for f in filters:
        apply_one(route, f, backends, out, protocol)
    return out


def apply_one(route: Resource, f: AnyFilter, backends: Backends, out: FilterSet, protocol: AppProtocol) -> None:
    if f.type == "RequestHeaderModifier":
        out.request_headers = header_modifier(f.request_header_modifier)
    elif f.type == "ResponseHeaderModifier":
        out.response_headers = header_modifier(f.response_header_modifier)
    elif f.type == "RequestMirror" and f.request_mirror:
        mirror = mirror_of(route, f.request_mirror, backends, out, protocol)
        if mirror:
            out.mirrors += (mirror,)
    elif isinstance(f, HTTPRouteFilter) and f.type == "ExternalAuth" and f.external_auth:
        external_auth(route, f.external_auth, backends, out)
    elif f.type == "ExtensionRef" and f.extension_ref:
        extension_ref(route, f.extension_ref, backends, out)
    elif isinstance(f, HTTPRouteFilter):
        apply_http_only(f, out)


def apply_http_only(f: HTTPRouteFilter, out: FilterSet) -> None:
    if f.type == "RequestRedirect":
        out.redirect = f.request_redirect
    elif f.type == "URLRewrite" and f.url_rewrite:
        path = f.url_rewrite.path
        out.rewrite = ir.URLRewrite(
            hostname=f.url_rewrite.hostname,
            path_full=path.replace_full_path if path and path.type == "ReplaceFullPath" else None,
            path_prefix=path.replace_prefix_match if path and path.type == "ReplacePrefixMatch" else None,
            # an HTTPRouteFilter's regex rewrite before it stays unless this one sets the path
            regex=out.rewrite.regex if out.rewrite is not None and path is None else None)
    elif f.type == "CORS" and f.cors:
        out.cors = cors_of(f.cors)


def extension_ref(route: Resource, ref: LocalObjectReference, backends: Backends, out: FilterSet) -> None:
    """ExtensionRef: Portico's HTTPRouteFilter (a regex path rewrite) in the route's
    namespace. An unknown kind or a missing object must not be skipped: the rule
    answers 500 ("the implementation MUST ... return a 500 status code")."""
    if (ref.group, ref.kind) != (PORTICO_GROUP, "HTTPRouteFilter"):
        out.failed = True
        out.conds.append(Cond("ResolvedRefs", False, "InvalidKind",
                              f"ExtensionRef {ref.group}/{ref.kind} {ref.name}: kind is not supported"))
        return
    found = backends.ctx.get(PorticoHTTPRouteFilter, "HTTPRouteFilter", route.namespace, ref.name)
    if found is None:
        out.failed = True
        out.conds.append(Cond("ResolvedRefs", False, "BackendNotFound",
                              f"ExtensionRef HTTPRouteFilter {route.namespace}/{ref.name} not found"))
        return
    if found.spec.auth_signin is not None:
        out.signin = signin_location(found.spec.auth_signin)
        if out.signin is None:
            out.invalid = unsupported(f"HTTPRouteFilter {ref.name}: authSignin.redirectValue is not one of "
                                      "URL, UnescapedURL, EscapedRequestURI and RequestURI")
            return
    cert_headers = tuple((h.name, h.value) for h in found.spec.client_certificate_headers)
    if any(value not in CLIENT_CERT_VALUES for _, value in cert_headers):
        out.invalid = unsupported(f"HTTPRouteFilter {ref.name}: a clientCertificateHeaders value is not one of "
                                  f"{', '.join(CLIENT_CERT_VALUES)}")
        return
    out.client_cert_headers += cert_headers
    pages = found.spec.error_pages
    if pages is not None:
        why = error_pages_problem(ref.name, pages)
        if why:
            out.invalid = unsupported(why)
            return
        out.error_pages, problem = error_pages_of(route, ref.name, pages, backends)
        out.conds += [problem] if problem else []
    check = found.spec.require_client_certificate
    if check is not None:
        if check.error_redirect is not None and not ABSOLUTE_URL.fullmatch(check.error_redirect):
            out.invalid = unsupported(f"HTTPRouteFilter {ref.name}: requireClientCertificate.errorRedirect is not "
                                      "an absolute http(s) URL")
            return
        out.client_cert_check = ir.ClientCertificateCheck(check.optional, check.error_redirect)
    if found.spec.url_rewrite is None:
        if found.spec.auth_signin is None and not cert_headers and pages is None and check is None:
            out.invalid = unsupported(f"HTTPRouteFilter {ref.name}: sets none of urlRewrite, authSignin, "
                                      "clientCertificateHeaders, errorPages and requireClientCertificate")
        return
    regex = found.spec.url_rewrite.path.replace_regex_match
    why = regex_problem(regex.pattern)
    if why:
        out.invalid = unsupported(f"HTTPRouteFilter {ref.name}: {why}")
        return
    base = out.rewrite or ir.URLRewrite()
    out.rewrite = replace(base, regex=(regex.pattern, regex.substitution), path_full=None, path_prefix=None)


def external_auth(route: Resource, spec: HTTPExternalAuthFilter, backends: Backends, out: FilterSet) -> None:
    """HTTPExternalAuthFilter. An authorization service that cannot be resolved fails
    closed: the rule's requests get 500 ("If there is any problem communicating with
    the external service, this filter MUST fail closed")."""
    resolved = backends.resolve(route, spec.backend_ref, "h2c" if spec.protocol == "GRPC" else "http1")
    if resolved.cluster is None:
        out.failed = True
        out.conds += [resolved.problem] if resolved.problem else []
        return
    http = spec.http
    out.external_auth = ir.ExternalAuth(
        protocol="GRPC" if spec.protocol == "GRPC" else "HTTP",
        cluster=resolved.cluster.name,
        path_prefix=http.path.rstrip("/") if http else "",
        allowed_headers=tuple(http.allowed_headers if http else ()),
        allowed_response_headers=tuple(http.allowed_response_headers if http else ()),
        forward_body_bytes=spec.forward_body.max_size if spec.forward_body else 0,
    )


def cors_of(c: HTTPCORSFilter) -> ir.CORS:
    """Envoy's CORS filter echoes the request's origin, method and headers for "*"
    (what the spec requires with credentials). exposeHeaders: "If the configuration
    contains the wildcard * ... and allowCredentials is set to true, the gateway
    cannot use the * in the Access-Control-Expose-Headers response header"."""
    credentials = bool(c.allow_credentials)
    expose = tuple(h for h in c.expose_headers if not (credentials and h == "*"))
    return ir.CORS(
        allow_origins=tuple(c.allow_origins),
        allow_methods=tuple(c.allow_methods),
        allow_headers=tuple(c.allow_headers),
        expose_headers=expose,
        allow_credentials=credentials,
        max_age_s=CORS_DEFAULT_MAX_AGE if c.max_age is None else c.max_age,
    )


def mirror_of(route: Resource, spec: HTTPRequestMirrorFilter, backends: Backends,
              out: FilterSet, protocol: AppProtocol) -> ir.Mirror | None:
    """HTTPRequestMirrorFilter.backendRef: an unresolvable reference sets
    ResolvedRefs=False and is "not configured" (the rule itself still works)."""
    resolved = backends.resolve(route, spec.backend_ref, protocol)
    if resolved.problem or resolved.cluster is None:
        if resolved.problem:
            out.conds.append(resolved.problem)
        return None
    if spec.fraction is not None:
        return ir.Mirror(resolved.cluster.name, spec.fraction.numerator, spec.fraction.denominator)
    if spec.percent is not None:
        return ir.Mirror(resolved.cluster.name, spec.percent, 100)
    return ir.Mirror(resolved.cluster.name)
