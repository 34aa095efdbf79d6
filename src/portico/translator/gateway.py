"""GatewayClass acceptance and Gateway listener validation.

Produces a `GatewayState` per Gateway of an accepted class of ours: its address,
its listeners with their conditions, and (filled in later by route attachment)
the routes each listener serves.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from portico.contracts import Placement
from portico.ir import ClientValidation, Route, TLSCertificate, WeightedBackend
from portico.models import Gateway, GatewayClass, Listener, ListenerSet, Other, Secret
from portico.objects import CORE_GROUP, GATEWAY_GROUP, ObjectKey
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.frontendtls import backend_client_certificate, frontend_validation, insecure_fallback_conditions
from portico.translator.secrets import tls_key_pair

# Route kinds each listener protocol can serve (Gateway API Listener.protocol).
PROTOCOL_KINDS: dict[str, tuple[str, ...]] = {
    "HTTP": ("HTTPRoute", "GRPCRoute"),
    "HTTPS": ("HTTPRoute", "GRPCRoute"),
    "TLS": ("TLSRoute",),
    "TCP": ("TCPRoute",),
    "UDP": ("UDPRoute",),
}

# Protocols that can share one port, told apart by SNI (HTTPS and TLS) or not at all.
PORT_FAMILY = {"HTTP": "http", "HTTPS": "tls", "TLS": "tls", "TCP": "tcp", "UDP": "udp"}


@dataclass(frozen=True)
class RouteEntry:
    """One HTTP/gRPC rule match, ready for a virtual host; sorted by precedence."""

    precedence: tuple[object, ...]
    route: Route
    rule: str | None = None  # HTTPRouteRule/GRPCRouteRule name: what a policy's sectionName names


@dataclass
class HostRoutes:
    """One route accepted on a listener: the hostnames it serves there and its entries."""

    hostnames: list[str]
    entries: list[RouteEntry]
    route: ObjectKey | None = None
    order: tuple[str, str] = ("", "")  # the listener's route order (Candidate.order)


@dataclass
class L4Routes:
    """A TLS/TCP/UDP route's backends on a listener (TLSRoute: per SNI hostname)."""

    hostnames: list[str]
    backends: tuple[WeightedBackend, ...]
    precedence: tuple[object, ...]


@dataclass
class ListenerState:
    gateway: Gateway
    spec: Listener
    port: int  # with the standalone port offset
    conds: list[Cond] = field(default_factory=list)
    supported_kinds: list[str] = field(default_factory=list)
    certificates: list[TLSCertificate] = field(default_factory=list)
    client_validation: ClientValidation | None = None  # Gateway spec.tls.frontend (HTTPS)
    attached_routes: int = 0
    # filled by route translation: what this listener serves
    http_routes: list[HostRoutes] = field(default_factory=list)
    l4_routes: list[L4Routes] = field(default_factory=list)
    # the ListenerSet that declares this listener; None for the Gateway's own
    listener_set: ListenerSet | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def owner(self) -> Gateway | ListenerSet:
        """The object that declares the listener: allowedRoutes `from: Same` means
        its namespace, certificateRefs are resolved from it, its status lists it."""
        return self.listener_set or self.gateway

    @property
    def qualified_name(self) -> str:
        """Unique among a Gateway's merged listeners (a name need not be unique
        across a Gateway and its ListenerSets): "<ns>/<listenerset>/<name>"."""
        if self.listener_set is None:
            return self.name
        return f"{self.listener_set.namespace}/{self.listener_set.name}/{self.name}"

    @property
    def protocol(self) -> str:
        return self.spec.protocol

    @property
    def accepted(self) -> bool:
        """Routes may attach (and count in attachedRoutes) unless the listener is
        not Accepted — even when unresolved refs keep it from being Programmed."""
        return not any((c.type == "Accepted" and not c.status) or (c.type == "Conflicted" and c.status)
                       for c in self.conds)

    @property
    def ready(self) -> bool:
        """Accepted and Programmed: the listener goes to the data plane."""
        return self.accepted and not any(c.type == "Programmed" and not c.status for c in self.conds)

    @property
    def tls_mode(self) -> str:
        return self.spec.tls.mode if self.spec.tls else "Terminate"

    def allows_kind(self, kind: str) -> bool:
        return kind in self.supported_kinds


@dataclass
class GatewayState:
    gateway: Gateway
    placement: Placement
    listeners: list[ListenerState]
    conds: list[Cond] = field(default_factory=list)
    # Gateway spec.tls.backend.clientCertificateRef, presented to TLS backends
    backend_client_cert: TLSCertificate | None = None

    @property
    def key(self) -> ObjectKey:
        return self.gateway.key

    @property
    def address(self) -> str | None:
        """The address the Gateway's listeners bind."""
        return self.placement.bind_address

    @property
    def accepted(self) -> bool:
        """The first Accepted condition decides (see conditions.render_all)."""
        return next((c.status for c in self.conds if c.type == "Accepted"), True)

    @property
    def programmable(self) -> bool:
        """Accepted, with an address, and no Gateway-level reason not to program it."""
        return self.accepted and self.address is not None and next(
            (c.status for c in self.conds if c.type == "Programmed"), True)

    @property
    def own_listeners(self) -> list[ListenerState]:
        """spec.listeners, without those of attached ListenerSets."""
        return [ls for ls in self.listeners if ls.listener_set is None]

    @property
    def attached_listener_sets(self) -> int:
        """status.attachedListenerSets: only Accepted ListenerSets add listeners."""
        return len({ls.listener_set.key for ls in self.listeners if ls.listener_set is not None})


def accepted_classes(ctx: Context) -> dict[str, GatewayClass]:
    """Our GatewayClasses by name. Classes of other controllers are not ours to
    judge (no status is written for them)."""
    return {c.name: c for c in ctx.all(GatewayClass, "GatewayClass")
            if c.spec.controller_name == ctx.snapshot.controller_name and not class_problem(ctx, c)}


def class_problem(ctx: Context, gc: GatewayClass) -> str | None:
    """Why the class cannot be accepted (GatewayClass parametersRef rules), if so."""
    ref = gc.spec.parameters_ref
    if not ref:
        return None
    group, kind = str(ref.get("group", "")), str(ref.get("kind", ""))
    namespace, name = str(ref.get("namespace") or ""), str(ref.get("name", ""))
    if (group, kind) not in PARAMETER_KINDS:
        return f"parametersRef kind {group}/{kind} is not supported (use a PorticoProxy or a ConfigMap)"
    if (kind, namespace, name) not in ctx.by_name:
        return f"parametersRef {kind} {namespace}/{name} not found"
    return None


# Gateway API releases whose CRDs Portico serves (v1.2-v1.4 at their older route versions)
SUPPORTED_BUNDLES = ("v1.2", "v1.3", "v1.4", "v1.5")
BUNDLE_VERSION = "gateway.networking.k8s.io/bundle-version"


def supported_version(ctx: Context) -> Cond:
    """SupportedVersion from the installed Gateway API CRDs' bundle-version annotation
    (Kubernetes mode sees the CRDs; elsewhere there are none and the condition is True).
    Best effort, as the spec allows: Accepted stays True."""
    found = sorted({str((crd.metadata.annotations or {}).get(BUNDLE_VERSION) or "")
                    for crd in ctx.all(Other, "CustomResourceDefinition")} - {""})
    unsupported = [v for v in found if not v.startswith(tuple(f"{b}." for b in SUPPORTED_BUNDLES))
                   and v not in (bundled_version(), UNRELEASED)]
    if unsupported:
        return Cond("SupportedVersion", False, "UnsupportedVersion",
                    f"Gateway API CRDs of bundle version {', '.join(unsupported)} are installed; this Portico "
                    f"supports {', '.join(f'{b}.x' for b in SUPPORTED_BUNDLES)}")
    return Cond("SupportedVersion", True, "SupportedVersion")


# The Gateway API version of the bundled CRDs (src/portico/crds, upstream commit 4564255:
# main after v1.4, the v1.5 line); the vendored files say v0.0.0-dev, `portico install
# render` writes this instead
GATEWAY_API_BUNDLE = "v1.5.0-dev+4564255"
UNRELEASED = "v0.0.0-dev"  # upstream main's CRDs, as Portico 0.1's render installed them


def bundled_version() -> str:
    """The bundle version of the CRDs Portico installs (always supported)."""
    return GATEWAY_API_BUNDLE


def class_conditions(ctx: Context, gc: GatewayClass) -> list[Cond]:
    problem = class_problem(ctx, gc)
    if problem:
        return [Cond("Accepted", False, "InvalidParameters", problem), supported_version(ctx)]
    return [Cond("Accepted", True, "Accepted", "Accepted by portico"), supported_version(ctx)]


def build_gateways(ctx: Context, classes: dict[str, GatewayClass]) -> dict[ObjectKey, GatewayState]:
    states: dict[ObjectKey, GatewayState] = {}
    for gw in ctx.all(Gateway, "Gateway"):
        if gw.spec.gateway_class_name not in classes:
            continue
        place = placement(ctx, gw)
        listeners = [validate_listener(ctx, gw, spec) for spec in gw.spec.listeners]
        mark_conflicts(listeners)
        client_cert, cert_conds = backend_client_certificate(ctx, gw)
        conds = (infrastructure_conditions(ctx, gw) + gateway_conditions(gw, place, listeners)
                 + resolved_refs_conditions(cert_conds, listeners) + insecure_fallback_conditions(gw))
        state = GatewayState(gw, place, listeners, conds, client_cert)
        if not state.programmable:
            not_programmed(state)
        states[gw.key] = state
    return states


def resolved_refs_conditions(cert_conds: list[Cond], listeners: list[ListenerState]) -> list[Cond]:
    """Gateway ResolvedRefs: the Gateway's own references (its backend client certificate:
    RefNotPermitted, InvalidClientCertificateRef) first, then "a positive-polarity summary
    of Listener's ResolvedRefs condition" (ListenersNotResolved); True otherwise."""
    problems = [c for c in cert_conds if not c.status]
    unresolved = [ls.name for ls in listeners if any(c.type == "ResolvedRefs" and not c.status for c in ls.conds)]
    if unresolved:
        problems.append(Cond("ResolvedRefs", False, "ListenersNotResolved",
                             f"listeners with unresolved references: {', '.join(unresolved)}"))
    return problems + [Cond("ResolvedRefs", True, "ResolvedRefs")]


def not_programmed(state: GatewayState) -> None:
    """A Gateway that is not accepted, or has no address, programs nothing: neither
    it nor its listeners may report Programmed=True."""
    why = "the Gateway is not accepted" if not state.accepted else "the Gateway's address is not usable"
    if not state.accepted:  # otherwise a Programmed=False condition already says why
        state.conds.insert(1, Cond("Programmed", False, "Invalid", why))
    for ls in state.listeners:
        ls.conds.append(Cond("Programmed", False, "Invalid", why))


# Parameter kinds Portico reads (GatewayClass and Gateway infrastructure parametersRef).
# parametersRef kinds: a ConfigMap (free-form) or Portico's PorticoProxy (its data plane)
PARAMETER_KINDS = {(CORE_GROUP, "ConfigMap"), ("gateway.portico.dev", "PorticoProxy")}


def infrastructure_conditions(ctx: Context, gw: Gateway) -> list[Cond]:
    """Gateway spec.infrastructure.parametersRef: an unknown kind or a missing
    object makes the Gateway Accepted=False with reason InvalidParameters."""
    infra = gw.spec.infrastructure
    ref = infra.parameters_ref if infra else None
    if ref is None:
        return []
    if (ref.group, ref.kind) not in PARAMETER_KINDS or (ref.kind, gw.namespace, ref.name) not in ctx.by_name:
        message = f"parametersRef {ref.group}/{ref.kind} {ref.name} is not a known parameters object"
        return [Cond("Accepted", False, "InvalidParameters", message),
                Cond("Programmed", False, "Invalid", message)]
    return []


def validate_listener(ctx: Context, gw: Gateway, spec: Listener,
                      listener_set: ListenerSet | None = None) -> ListenerState:
    state = ListenerState(gw, spec, spec.port + placement(ctx, gw).bind_port_offset, listener_set=listener_set)
    kinds = PROTOCOL_KINDS.get(spec.protocol)
    if kinds is None:
        state.conds += [Cond("Accepted", False, "UnsupportedProtocol",
                             f"protocol {spec.protocol} is not supported"),
                        Cond("Programmed", False, "Invalid", "the listener is not accepted")]
        return state
    state.supported_kinds, kinds_ok = allowed_kinds(spec, kinds)
    port_unavailable(ctx, gw, state)
    if not kinds_ok:
        state.conds.append(Cond("ResolvedRefs", False, "InvalidRouteKinds",
                                "allowedRoutes.kinds names a kind this listener cannot serve"))
    validate_tls(ctx, gw, state)
    return state


def socket_name(address: str, port: int, protocol: str) -> str:
    """The name of the IR listener (one socket) a Gateway listener binds."""
    return f"{address}:{port}/{'udp' if protocol == 'UDP' else 'tcp'}"


def port_unavailable(ctx: Context, gw: Gateway, state: ListenerState) -> None:
    """ListenerReasonPortUnavailable: the data plane could not bind the listener's
    socket (Placement.unavailable, reported by the infrastructure); the listener is
    not accepted so the rest of the Gateway can be programmed."""
    place = placement(ctx, gw)
    transport = "udp" if state.protocol == "UDP" else "tcp"
    if place.bind_address is None or (state.port, transport) not in place.unavailable:
        return
    message = f"port {state.port} cannot be bound on {place.bind_address}"
    state.conds += [Cond("Accepted", False, "PortUnavailable", message),
                    Cond("Programmed", False, "PortUnavailable", message)]


def validate_tls(ctx: Context, gw: Gateway, state: ListenerState) -> None:
    """Listener.tls: HTTPS always terminates (Passthrough is an UnsupportedValue);
    TLS terminates or passes through; terminating listeners need certificates,
    and HTTPS ones get the Gateway's frontend client validation for their port."""
    protocol = state.protocol
    modes = {"HTTPS": ("Terminate",), "TLS": ("Terminate", "Passthrough")}.get(protocol)
    if modes and state.tls_mode not in modes:
        message = f"tls.mode {state.tls_mode} is not supported with protocol {protocol}"
        state.conds += [Cond("Accepted", False, "UnsupportedValue", message),
                        Cond("Programmed", False, "Invalid", message)]
        return
    if protocol == "HTTPS" or (protocol == "TLS" and state.tls_mode == "Terminate"):
        resolve_certificates(ctx, gw, state)
    if protocol == "HTTPS":
        state.client_validation, conds = frontend_validation(ctx, gw, state.spec.port)
        state.conds += conds


def allowed_kinds(spec: Listener, kinds: tuple[str, ...]) -> tuple[list[str], bool]:
    """(supportedKinds, every requested kind valid) — Listener.allowedRoutes.kinds."""
    requested = spec.allowed_routes.kinds
    if requested is None:
        return list(kinds), True
    valid = [k.kind for k in requested if k.group == GATEWAY_GROUP and k.kind in kinds]
    return list(dict.fromkeys(valid)), len(valid) == len(requested)


def resolve_certificates(ctx: Context, gw: Gateway, state: ListenerState) -> None:
    """Listener.tls.certificateRefs: Secrets, same namespace or granted."""
    # A ListenerSet's references are its own: "ReferenceGrants applied to a
    # Gateway are not inherited by child ListenerSets" (ListenerSet CRD).
    owner = state.owner
    refs = state.spec.tls.certificate_refs if state.spec.tls else []
    if not refs:
        message = "a TLS listener that terminates needs at least one certificateRef"
        state.conds += [Cond("ResolvedRefs", False, "InvalidCertificateRef", message),
                        Cond("Programmed", False, "Invalid", message)]
        return
    for ref in refs:
        ns = ref.namespace or owner.namespace
        if ref.group != CORE_GROUP or ref.kind != "Secret":
            problem: tuple[str, str] | None = ("InvalidCertificateRef", f"{ref.group}/{ref.kind} is not a Secret")
        elif not ctx.reference_allowed(owner.key.group, owner.kind, owner.namespace, CORE_GROUP, "Secret", ns,
                                       ref.name):
            problem = ("RefNotPermitted", f"no ReferenceGrant allows Secret {ns}/{ref.name}")
        else:
            problem = load_certificate(ctx, state, ns, ref.name)
        if problem:
            state.conds.append(Cond("ResolvedRefs", False, problem[0], problem[1]))
    if not state.certificates:
        # Programmed only with at least one usable certificate; the valid ones are served.
        state.conds.append(Cond("Programmed", False, "Invalid", "no certificateRef is usable"))


def load_certificate(ctx: Context, state: ListenerState, ns: str, name: str) -> tuple[str, str] | None:
    secret = ctx.get(Secret, "Secret", ns, name)
    if secret is None:
        return ("InvalidCertificateRef", f"Secret {ns}/{name} not found")
    pair = tls_key_pair(secret)
    if isinstance(pair, str):
        return ("InvalidCertificateRef", f"Secret {ns}/{name}: {pair}")
    state.certificates.append(TLSCertificate(f"{ns}/{name}", pair[0], pair[1]))
    return None


def mark_conflicts(listeners: list[ListenerState]) -> None:
    """Listeners on one port must share a protocol family (ProtocolConflict) and,
    within a protocol, differ in hostname (HostnameConflict). HTTPS and TLS
    listeners on one port are told apart by SNI alone, so they must differ in
    hostname across both protocols too."""
    by_port: dict[tuple[int, str], list[ListenerState]] = defaultdict(list)
    for ls in listeners:
        if ls.protocol in PORT_FAMILY:
            transport = "udp" if ls.protocol == "UDP" else "tcp"
            by_port[(ls.port, transport)].append(ls)
    for group in by_port.values():
        families = {PORT_FAMILY[ls.protocol] for ls in group}
        for ls in group:
            if len(families) > 1:
                conflict(ls, "ProtocolConflict", f"port {ls.port} is used with another protocol")
            elif sum(1 for o in group if (o.spec.hostname or "") == (ls.spec.hostname or "")) > 1:
                conflict(ls, "HostnameConflict", f"another listener on port {ls.port} has the same hostname")


def conflict(ls: ListenerState, reason: str, message: str) -> None:
    ls.conds += [Cond("Conflicted", True, reason, message), Cond("Accepted", False, reason, message),
                 Cond("Programmed", False, reason, message)]


def listeners_not_valid(listeners: list[ListenerState]) -> str:
    """The ListenersNotValid message: "SHOULD clearly indicate in the Message which
    Listeners are conflicted, and which are Accepted"."""
    def why(ls: ListenerState) -> str:
        return next((c.reason for c in ls.conds if c.type == "Accepted" and not c.status), "not accepted")

    bad = ", ".join(f"{ls.name} ({why(ls)})" for ls in listeners if not ls.accepted)
    good = ", ".join(ls.name for ls in listeners if ls.accepted) or "none"
    return f"listeners not valid: {bad}; accepted: {good}"


def gateway_conditions(gw: Gateway, place: Placement, listeners: list[ListenerState]) -> list[Cond]:
    """Gateway Accepted/Programmed (GatewayConditionType)."""
    conds = address_conditions(gw, place)
    ok = [ls for ls in listeners if ls.accepted]
    if len(ok) < len(listeners):
        conds.append(Cond("Accepted", bool(ok), "ListenersNotValid", listeners_not_valid(listeners)))
    conds.append(Cond("Accepted", True, "Accepted"))
    if place.bind_address is None:
        conds.append(Cond("Programmed", False, "AddressNotAssigned", "no address could be assigned"))
    if not ok and listeners:
        conds.append(Cond("Programmed", False, "Invalid", "no listener is valid"))
    conds.append(Cond("Programmed", True, "Programmed"))
    return conds


def address_conditions(gw: Gateway, place: Placement) -> list[Cond]:
    """spec.addresses (GatewaySpecAddress): only IPAddress is supported
    (UnsupportedAddress); the infrastructure says whether it can use the requested
    ones (Placement.address_problem: Programmed=False, AddressNotUsable)."""
    for a in gw.spec.addresses:
        if a.type not in ("IPAddress", ""):
            return [Cond("Accepted", False, "UnsupportedAddress", f"address type {a.type} is not supported")]
    if gw.spec.addresses and place.address_problem:
        return [Cond("Programmed", False, "AddressNotUsable", place.address_problem)]
    return []


NO_PLACEMENT = Placement(None)


def placement(ctx: Context, gw: Gateway) -> Placement:
    """Where the infrastructure runs the Gateway (no placement: no address)."""
    return ctx.snapshot.placements.get((gw.namespace, gw.name), NO_PLACEMENT)


def listener_conditions(ls: ListenerState) -> list[Cond]:
    """The listener's own problems first, then the positive defaults."""
    return ls.conds + [
        Cond("Accepted", True, "Accepted"),
        Cond("Programmed", True, "Programmed"),
        Cond("ResolvedRefs", True, "ResolvedRefs"),
        Cond("Conflicted", False, "NoConflicts"),
    ]
