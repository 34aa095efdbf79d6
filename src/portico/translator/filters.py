"""HTTPRoute and GRPCRoute filters (HTTPRouteFilter) → IR action pieces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from portico import ir
from portico.models import (
    GRPCRouteFilter,
    HTTPHeaderFilter,
    HTTPRequestMirrorFilter,
    HTTPRequestRedirectFilter,
    HTTPRouteFilter,
    Resource,
)
from portico.translator.conditions import Cond

if TYPE_CHECKING:  # avoids an import cycle
    from portico.translator.backends import Backends


@dataclass
class FilterSet:
    request_headers: ir.HeaderModifier = ir.HeaderModifier()
    response_headers: ir.HeaderModifier = ir.HeaderModifier()
    redirect: HTTPRequestRedirectFilter | None = None  # resolved per listener (port defaults)
    rewrite: ir.URLRewrite | None = None
    mirrors: tuple[ir.Mirror, ...] = ()
    cors: ir.CORS | None = None
    conds: list[Cond] = field(default_factory=list)
    failed: bool = False  # a filter could not be applied: the rule answers 500


def header_modifier(f: HTTPHeaderFilter | None) -> ir.HeaderModifier:
    if f is None:
        return ir.HeaderModifier()
    return ir.HeaderModifier(
        set=tuple(ir.HeaderValue(h.name, h.value) for h in f.set),
        add=tuple(ir.HeaderValue(h.name, h.value) for h in f.add),
        remove=tuple(f.remove),
    )


def apply_filters(route: Resource, filters: list[HTTPRouteFilter] | list[GRPCRouteFilter],
                  backends: Backends) -> FilterSet:
    out = FilterSet()
    for f in filters:
        if f.type == "RequestHeaderModifier":
            out.request_headers = header_modifier(f.request_header_modifier)
        elif f.type == "ResponseHeaderModifier":
            out.response_headers = header_modifier(f.response_header_modifier)
        elif f.type == "RequestMirror" and f.request_mirror:
            mirror = mirror_of(route, f.request_mirror, backends, out)
            if mirror:
                out.mirrors += (mirror,)
        elif isinstance(f, HTTPRouteFilter) and f.type == "RequestRedirect":
            out.redirect = f.request_redirect
        elif isinstance(f, HTTPRouteFilter) and f.type == "URLRewrite" and f.url_rewrite:
            path = f.url_rewrite.path
            out.rewrite = ir.URLRewrite(
                hostname=f.url_rewrite.hostname,
                path_full=path.replace_full_path if path and path.type == "ReplaceFullPath" else None,
                path_prefix=path.replace_prefix_match if path and path.type == "ReplacePrefixMatch" else None)
        elif isinstance(f, HTTPRouteFilter) and f.type == "CORS" and f.cors:
            c = f.cors
            out.cors = ir.CORS(tuple(c.allow_origins), tuple(c.allow_methods), tuple(c.allow_headers),
                               tuple(c.expose_headers), bool(c.allow_credentials), c.max_age)
        else:
            # ExtensionRef to an unknown resource, or an unsupported filter type: the
            # filter must not be skipped; its requests get an error (HTTPRouteFilter).
            out.failed = True
            out.conds.append(Cond("Accepted", False, "UnsupportedValue",
                                  f"filter {f.type} is not supported"))
    return out


def mirror_of(route: Resource, spec: HTTPRequestMirrorFilter, backends: Backends,
              out: FilterSet) -> ir.Mirror | None:
    resolved = backends.resolve(route, spec.backend_ref, "http1")
    if resolved.problem or resolved.cluster is None:
        if resolved.problem:
            out.conds.append(resolved.problem)
        return None
    if spec.fraction is not None:
        return ir.Mirror(resolved.cluster.name, spec.fraction.numerator, spec.fraction.denominator)
    if spec.percent is not None:
        return ir.Mirror(resolved.cluster.name, spec.percent, 100)
    return ir.Mirror(resolved.cluster.name)
