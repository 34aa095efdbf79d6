"""Which endpoints on Envoy's own machine (or pod) a backend may name.

A backend on loopback, a link-local address or a Unix socket runs beside Envoy, and so do
Portico's and Envoy's control endpoints: the xDS socket (a route to it would hand any client
every private key), Envoy's admin socket (/quitquitquit) and Portico's admin API. The rules:

- Reserved (`Placement.reserved`): the state directory with everything under it, and the
  control ports. Never, for any backend kind, whatever a platform owner allows. Paths are
  compared as written, normalised (`..`, `//`) and with every symlink resolved; ports on
  every spelling of "this machine": any loopback address, the unspecified address (a
  connection to 0.0.0.0 or :: reaches loopback), IPv4-mapped and -compatible IPv6, numeric
  host names (`127.1`, `2130706433`) and localhost names.
- Local (loopback, unspecified, link-local, localhost names, Unix sockets): a Service's
  EndpointSlices (the platform's objects; in Kubernetes the API server refuses loopback
  and link-local endpoint addresses) may name them, and its externalName where
  `Placement.local_backends` says backends run beside Envoy (standalone mode). A Backend or
  XBackend (a route author's objects) only when the PorticoProxy of every GatewayClass the
  route is served through allows it for the backend's namespace (spec.localBackends):
  which local backends a namespace may use is the platform owner's decision.
- Anything else (other addresses, DNS names) is not local as far as Portico can tell: a
  DNS name is resolved by Envoy when it connects.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
from collections.abc import Iterable

from portico.contracts import Reserved
from portico.ir import UNIX_PREFIX, Endpoint
from portico.models import (
    PORTICO_GROUP,
    Gateway,
    GatewayClass,
    ListenerSet,
    LocalBackendRule,
    PorticoProxy,
    Resource,
)
from portico.objects import GATEWAY_GROUP
from portico.translator.context import Context, selector_matches

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
LOCALHOST = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host on this network" (RFC 1122)
LISTENERSET_GROUPS = (GATEWAY_GROUP, "gateway.networking.x-k8s.io")


def ip_of(address: str) -> IP | None:
    """The IP address `address` spells, IPv4 for an IPv4-mapped or -compatible IPv6 address,
    also for the numeric forms a resolver accepts as a host name (`127.1`, `0x7f000001`)."""
    text = address.strip().strip("[]").split("%", 1)[0]  # a zone index (fe80::1%eth0)
    ip: IP
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(text))
        except (OSError, ValueError):
            return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if 1 < int(ip) < 2 ** 32:  # IPv4-compatible ::a.b.c.d (deprecated; not :: or ::1)
            return ipaddress.IPv4Address(int(ip))
    return ip


def is_local_name(name: str) -> bool:
    n = name.strip().lower().rstrip(".")
    return n in ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback") or n.endswith(".localhost")


def is_local_ip(ip: IP) -> bool:
    return (ip.is_loopback or ip.is_unspecified or ip.is_link_local
            or (isinstance(ip, ipaddress.IPv4Address) and ip in THIS_NETWORK))


@functools.lru_cache(maxsize=8192)
def local_ips(address: str) -> tuple[IP, ...] | None:
    """The addresses of this machine an endpoint address stands for; None when it is not local."""
    if is_local_name(address):
        return LOCALHOST
    ip = ip_of(address)
    return (ip,) if ip is not None and is_local_ip(ip) else None


def spellings(path: str) -> set[str]:
    """A Unix path as written, normalised, and with its symlinks resolved (raises OSError
    when they cannot be: then nobody can vouch for it)."""
    return {path, os.path.normpath(path), real(path)}


def real(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError) as e:
        raise OSError(f"cannot resolve {path}: {e}") from None


def under(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root if root == "/" else root + "/")


# paths that mean something else in Envoy than here (`/proc/self` is the process reading
# it), so the check here cannot vouch for them
PROCESS_RELATIVE = ("/proc", "/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr")


def reserved_problem(endpoint: Endpoint, reserved: Reserved) -> str | None:
    """Why `endpoint` is one of the control endpoints no backend may name, if it is."""
    if endpoint.address.startswith(UNIX_PREFIX):
        path = endpoint.address[len(UNIX_PREFIX):]
        if "\0" in path or not path.startswith("/"):
            return "not an absolute path"
        relative = "a path relative to the process that opens it (/proc, /dev/fd)"
        if any(under(s, r) for s in (path, os.path.normpath(path)) for r in PROCESS_RELATIVE):
            return relative
        try:
            written = spellings(path)
            roots = {r for p in reserved.paths for r in spellings(p)}
        except OSError:
            return "a path whose symlinks cannot be resolved"
        if any(under(s, r) for s in written for r in PROCESS_RELATIVE):
            return relative
        if any(under(s, r) for s in written for r in roots):
            return "Portico's state directory or Envoy's admin directory (the xDS and Envoy admin sockets)"
        return None
    ips = local_ips(endpoint.address)
    for host, port in reserved.ports:
        if endpoint.port != port:
            continue
        bound = ip_of(host) if not is_local_name(host) else LOCALHOST[0]
        if bound is None or bound.is_unspecified:
            return f"a control port ({port}) that listens on every address"
        if ips is not None or ip_of(endpoint.address) == bound:
            return f"a control port ({host}:{port})"
    return None


def path_allowed(path: str, allowed: Iterable[str]) -> bool:
    """`path` (symlinks resolved) is an allowed socket or under an allowed directory (`dir/`)."""
    try:
        resolved = real(path)
        for entry in allowed:
            target = real(entry)
            if (entry.endswith("/") and under(resolved, target)) or resolved == target:
                return True
    except OSError:
        return False
    return False


def rule_allows(rule: LocalBackendRule, endpoint: Endpoint) -> bool:
    if endpoint.address.startswith(UNIX_PREFIX):
        return path_allowed(endpoint.address[len(UNIX_PREFIX):], rule.unix_sockets)
    ips = local_ips(endpoint.address) or ()
    networks = []
    for cidr in rule.cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    return bool(ips) and all(any(ip.version == n.version and ip in n for n in networks) for ip in ips)


class LocalAccess:
    """The rules above over one snapshot."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        placements = ctx.snapshot.placements.values()
        self.reserved = Reserved(tuple(sorted({p for pl in placements for p in pl.reserved.paths})),
                                 tuple(sorted({p for pl in placements for p in pl.reserved.ports})))
        self.services_local = all(p.local_backends for p in placements)
        # the controller's --allow-link-local-backends: link-local and metadata addresses are
        # allowed to every backend (loopback and Unix sockets still need spec.localBackends)
        self.link_local_allowed = bool(placements) and all(p.link_local_backends for p in placements)

    def problem(self, route: Resource | None, kind: str, namespace: str, name: str, endpoints: Iterable[Endpoint],
                platform: bool = False, classes: list[GatewayClass] | None = None) -> str | None:
        """Why the route may not send to these endpoints of backend `kind` namespace/name, if so.
        `platform`: the endpoints are the platform's to name (local ones allowed). `classes`:
        the GatewayClasses whose rules apply, when there is no route (a Gateway's policy)."""
        for e in endpoints:
            where = e.address if e.address.startswith(UNIX_PREFIX) else f"{e.address}:{e.port}"
            reserved = reserved_problem(e, self.reserved)
            if reserved is not None:
                return (f"{kind} {namespace}/{name}: endpoint {where} is {reserved}, which no backend may "
                        f"name")
            ips = None if e.address.startswith(UNIX_PREFIX) else local_ips(e.address)
            if platform or (not e.address.startswith(UNIX_PREFIX) and ips is None):
                continue
            if self.link_local_allowed and ips and all(ip.is_link_local for ip in ips):
                continue
            classes = self.classes(route) if classes is None and route is not None else classes or []
            refusing = [c.name for c in classes if not self.class_allows(c, namespace, e)]
            if refusing or not classes:
                return (f"{kind} {namespace}/{name}: endpoint {where} is a local backend (loopback, link-local "
                        f"or Unix socket) that the parameters of GatewayClass {', '.join(refusing) or '-'} "
                        f"do not allow for namespace {namespace} (PorticoProxy spec.localBackends)")
        return None

    def classes(self, route: Resource) -> list[GatewayClass]:
        """The GatewayClasses of ours whose Gateways the route names (directly, through a
        ListenerSet, or as a default Gateway)."""
        spec = getattr(route, "spec", None)
        keys: set[tuple[str, str]] = set()
        for ref in getattr(spec, "parent_refs", None) or []:
            ns = ref.namespace or route.namespace
            if ref.kind == "ListenerSet" and ref.group in LISTENERSET_GROUPS:
                lset = self.ctx.get(ListenerSet, "ListenerSet", ns, ref.name)
                if lset is not None:
                    parent = lset.spec.parent_ref
                    keys.add((parent.namespace or lset.namespace, parent.name))
            elif ref.kind == "Gateway" and ref.group == GATEWAY_GROUP:
                keys.add((ns, ref.name))
        if getattr(spec, "use_default_gateways", None) == "All":
            keys |= {(g.namespace, g.name) for g in self.ctx.all(Gateway, "Gateway") if g.spec.default_scope == "All"}
        out: dict[str, GatewayClass] = {}
        for ns, gw_name in sorted(keys):
            gw = self.ctx.get(Gateway, "Gateway", ns, gw_name)
            gc = self.ctx.get(GatewayClass, "GatewayClass", "", gw.spec.gateway_class_name) if gw else None
            if gc is not None and gc.spec.controller_name == self.ctx.snapshot.controller_name:
                out[gc.name] = gc
        return [out[n] for n in sorted(out)]

    def class_allows(self, gc: GatewayClass, namespace: str, endpoint: Endpoint) -> bool:
        labels = self.ctx.namespace_labels(namespace)
        for rule in self.rules(gc):
            ns = rule.namespaces
            selected = ns.from_ == "All" or (ns.from_ == "Selector" and ns.selector is not None
                                              and selector_matches(ns.selector, labels))
            if selected and rule_allows(rule, endpoint):
                return True
        return False

    def rules(self, gc: GatewayClass) -> list[LocalBackendRule]:
        """spec.localBackends of the class's PorticoProxy (none without one)."""
        ref = gc.spec.parameters_ref or {}
        if (ref.get("group"), ref.get("kind")) != (PORTICO_GROUP, "PorticoProxy"):
            return []
        proxy = self.ctx.get(PorticoProxy, "PorticoProxy", str(ref.get("namespace") or ""), str(ref.get("name", "")))
        out = []
        for item in (proxy.spec.get("localBackends") if proxy else None) or []:
            try:
                out.append(LocalBackendRule.model_validate(item))
            except ValueError:
                continue  # the CRD's schema rejects such an object before it gets here
        return out
