"""HTTPRouteFilter errorPages → the IR's `ErrorPages` (ingress-nginx's custom-http-errors).

An error page backend that cannot be resolved is reported (ResolvedRefs=False) and the
answers stay as they are: a missing error page never takes the route's own answers away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portico import ir
from portico.models import ErrorPages, HTTPHeader, Resource
from portico.translator.conditions import Cond

if TYPE_CHECKING:  # avoids an import cycle
    from portico.translator.backends import Backends

HEADER_NAME_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def error_pages_problem(name: str, spec: ErrorPages) -> str | None:
    """Why `spec` cannot be programmed (the CRD's rules, for objects no API server checked)."""
    if not spec.status_codes or any(not 400 <= c <= 599 for c in spec.status_codes):
        return f"HTTPRouteFilter {name}: errorPages.statusCodes must be 400-599"
    if (spec.backend_ref is None) == (spec.response is None):
        return f"HTTPRouteFilter {name}: errorPages needs exactly one of backendRef and response"
    if spec.response is not None and not 200 <= spec.response.status_code <= 599:
        return f"HTTPRouteFilter {name}: errorPages.response.statusCode must be 200-599"
    if any(not _header_ok(h) for h in spec.request_headers):
        return f"HTTPRouteFilter {name}: an errorPages.requestHeaders name or value is not valid"
    return None


def _header_ok(h: HTTPHeader) -> bool:
    return bool(h.name) and set(h.name) <= HEADER_NAME_CHARS and not any(ord(c) < 32 and c != "\t" for c in h.value)


def error_pages_of(route: Resource, name: str, spec: ErrorPages, backends: Backends
                   ) -> tuple[ir.ErrorPages | None, Cond | None]:
    """The IR error pages of filter `name`, or None and the reference problem."""
    key = f"{route.namespace}/{name}"
    headers = tuple((h.name, h.value) for h in spec.request_headers)
    codes = tuple(sorted(set(spec.status_codes)))
    if spec.backend_ref is None:
        response = spec.response
        assert response is not None  # error_pages_problem
        return ir.ErrorPages(codes, key, status=response.status_code, body=response.body), None
    resolved = backends.resolve(route, spec.backend_ref, "http1")
    if resolved.cluster is None:
        return None, resolved.problem
    return ir.ErrorPages(codes, key, cluster=resolved.cluster.name, headers=headers), None
