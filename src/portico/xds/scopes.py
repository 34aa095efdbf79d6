"""Scoped routes: a connection manager that serves exact hostnames only finds its route
table by the Host, one scope per hostname.

Why: with one route configuration per connection manager (its virtual hosts by VHDS)
Envoy copies and rebuilds the whole route table on every changed virtual host
(`onVhdsUpdate`: 45-108 ms at 3000 hostnames, docs/benchmarks.md); with one scope per
hostname a change is one small scope, whatever the number of hostnames (0.3 ms).

When (`scoped`): the connection manager has routes, and every one is under an exact
hostname (one with none stays on VHDS: Gateways are mostly created before their routes,
and conformance-style routes without hostnames are common). A wildcard hostname's or a
catch-all's routes keep the connection manager on VHDS
(`xds.resources`), because Envoy has no default scope, and what could stand for one (a
filter that picks a fallback scope when the Host names none) runs after Envoy created
the request's filters for the route it found then (none): the filters Portico enables
per route (SecurityPolicy's authentication and authorization, ExternalAuth, CORS, rate
limits...) would not run for the routes chosen that way. Checked against
Envoy 1.40 (docs/benchmarks.md "scoped routes"). A route with error pages keeps it on
VHDS too: Envoy's custom_response redirect (`xds.errorpages`) finds the error page's route
in the connection manager's route configuration, which a scoped one has not (the backend's
answer would pass unchanged: tests/integration/test_ingress_error_pages.py). Switching a connection manager between
the two changes its listener (its connections drain), which happens when the first
route arrives, when the first wildcard or catch-all route arrives or the last one leaves.
The old connection manager drains with what it served, so a request on one of its
kept-alive connections is still served: from scoped to VHDS with its scopes
(`XdsServer._scopes` keeps them while the configuration is on VHDS), from VHDS to scoped
with its route configuration and virtual hosts (`Connection.draining` keeps them served to
that Envoy, out of the version, for as long as it subscribes to the route configuration:
until it destroys the drained listener). Not covered: a scoped listener removed entirely.
Its scopes go at once (scoped RDS is a wildcard subscription: nothing tells the server
when the drained listener is gone), and its kept-alive connections get 404 until they
close (docs/benchmarks.md "routes scoped by Host").

The scheme:

- The scope key is two fragments: the connection manager's own route configuration name,
  written into `SCOPE_HEADER` by an early header mutation (over a client's), and the Host
  before any ':' (a Host with a port finds its scope). Envoy gives every scoped-RDS
  subscription of an ADS stream every scope, whichever connection manager it is for: the
  first fragment keeps each to its own.
- One scope per hostname (lower-case), its route configuration inline (no RDS round trip)
  holding that hostname's virtual host, which disables `SCOPE_FILTER`: Envoy does not
  even create it for the requests a scope serves (no per-request cost on that path).
- A request whose key names no scope runs `SCOPE_FILTER`: an upper-case Host that names
  a scope in lower case is redirected there (308: its route's filters were not created
  for this request, so it is not served as it is); any other Host gets the answer the
  connection manager gives a Host no listener serves (404, or 421 on an HTTPS listener
  when another listener of the port serves every other Host).
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2, extension_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import header_mutation_pb2

from portico import ir
from portico.xds._common import ads_source, pack

SCOPE_HEADER = "x-portico-scope"  # the connection manager's own key fragment (never a client's)
SCOPE_FILTER = "portico.scope"

# Runs only when the request's key named no scope (every scope disables it). Envoy looks
# the route up again after clearRouteCache() when something asks for it: metadata() does.
_SCOPE_LUA = """\
function envoy_on_request(handle)
  local headers = handle:headers()
  local authority = headers:get(':authority') or ''
  local host = string.match(authority, '^%[[^%]]*%]') or string.match(authority, '^[^:]*')
  local name = string.lower(host)
  if name ~= host then
    headers:replace(':authority', name)
    handle:clearRouteCache()
    handle:metadata()
    if handle:streamInfo():routeName() ~= '' then
      local location = (headers:get(':scheme') or 'http') .. '://' .. name .. string.sub(authority, #host + 1)
        .. (headers:get(':path') or '/')
      handle:respond({[':status'] = '308', ['location'] = location}, '')
      return
    end
  end
  handle:respond({[':status'] = 'STATUS'}, '')
end
"""


def scoped(http: ir.HTTPConfig) -> bool:
    """Has the connection manager routes, all under exact hostnames (no wildcard
    hostname's, no catch-all's) and none with error pages? Then its routes are scoped by
    Host."""
    exact_routed, other_routed = counted(http.virtual_hosts)
    return exact_routed > 0 and other_routed == 0


def counted(hosts: Iterable[ir.VirtualHost]) -> tuple[int, int]:
    """How many of `hosts` are exact hostnames with routes, and how many keep the
    connection manager on VHDS: wildcards or the catch-all with routes, and virtual hosts
    with a route that has error pages."""
    exact_routed = other_routed = 0
    for vh in hosts:
        if vh.routes:
            if exact(vh) and not any(r.action.error_pages is not None for r in vh.routes):
                exact_routed += 1
            else:
                other_routed += 1
    return exact_routed, other_routed


def exact(vh: ir.VirtualHost) -> bool:
    return len(vh.domains) == 1 and not vh.domains[0].startswith("*")


def scoped_routes(route_config_name: str) -> hcm.ScopedRoutes:
    """The connection manager's scoped routes: keyed on its own name and the Host, over ADS."""
    out = hcm.ScopedRoutes(name=route_config_name, rds_config_source=ads_source())
    own = out.scope_key_builder.fragments.add().header_value_extractor
    own.name, own.index = SCOPE_HEADER, 0
    host = out.scope_key_builder.fragments.add().header_value_extractor
    host.name, host.element_separator, host.index = ":authority", ":", 0  # a Host with a port: its name
    out.scoped_rds.scoped_rds_config_source.CopyFrom(ads_source())
    return out


def scope_key_mutation(route_config_name: str) -> extension_pb2.TypedExtensionConfig:
    """Writes the connection manager's key fragment before any route lookup, over a client's."""
    mutation = header_mutation_pb2.HeaderMutation()
    append = mutation.mutations.add().append
    append.header.key, append.header.value = SCOPE_HEADER, route_config_name
    append.append_action = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    return extension_pb2.TypedExtensionConfig(name="portico.scope_key", typed_config=pack(mutation))


def scope_filter(http: ir.HTTPConfig) -> hcm.HttpFilter:
    """The filter answering a Host no scope is keyed on (enabled; every scope disables it)."""
    lua = lua_pb2.Lua()
    lua.clear_route_cache.value = False  # it clears the route itself, only when it means to
    lua.default_source_code.inline_string = _SCOPE_LUA.replace("STATUS", "421" if http.misdirected_421 else "404")
    return hcm.HttpFilter(name=SCOPE_FILTER, typed_config=pack(lua))


def scope_name(route_config_name: str, domain: str) -> str:
    return f"{route_config_name}/{domain}"


def host_scope(header: route_pb2.RouteConfiguration, domain: str, host: rc.VirtualHost
               ) -> scoped_route_pb2.ScopedRouteConfiguration:
    """One hostname's scope: its virtual host in a route configuration of its own."""
    host.typed_per_filter_config[SCOPE_FILTER].CopyFrom(_DISABLED)
    name = scope_name(header.name, domain)
    config = route_pb2.RouteConfiguration()
    config.CopyFrom(header)
    config.name = name
    # An inline route configuration is checked for unknown clusters unless told not to
    # (RDS's are not): a route naming a cluster Envoy rejected answers 503, the others serve.
    config.validate_clusters.value = False
    config.request_headers_to_remove.append(SCOPE_HEADER)  # never to a backend
    config.virtual_hosts.append(host)
    out = scoped_route_pb2.ScopedRouteConfiguration(name=name, route_configuration=config)
    out.key.fragments.add().string_key = header.name
    out.key.fragments.add().string_key = domain
    return out


_DISABLED = pack(rc.FilterConfig(disabled=True))
