"""ListenerSet (GEP-1713): listeners that join a parent Gateway.

Spec text (ListenerSet CRD, Gateway spec.allowedListeners):
- "The parent Gateway must explicitly allow ListenerSet attachment through its
  AllowedListeners configuration. By default, Gateways do not allow ListenerSet
  attachment" (allowedListeners.namespaces.from: None | Same | All | Selector).
- "Implementations MUST treat the parent Gateway as having the merged list of
  all listeners from itself and attached ListenerSets using the following
  precedence: 1. parent Gateway 2. ListenerSet ordered by creation time (oldest
  first) 3. ListenerSet ordered alphabetically by {namespace}/{name}." A
  listener that conflicts with one of higher precedence is Conflicted; the
  higher one keeps serving.
- "Listeners define logical endpoints that are bound on this referenced parent
  Gateway's addresses": attached listeners join `GatewayState.listeners` (with
  `ListenerState.listener_set` set) and are served with the Gateway's own.
- Gateway status.attachedListenerSets counts the ListenerSets with Accepted=True.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portico.models import Gateway, ListenerSet
from portico.objects import GATEWAY_GROUP, ObjectKey
from portico.translator.conditions import Cond
from portico.translator.context import Context, selector_matches
from portico.translator.gateway import (
    PORT_FAMILY,
    GatewayState,
    ListenerState,
    conflict,
    mark_conflicts,
    validate_listener,
)

# ListenerSet graduated into the standard group; the experimental one is still read.
LISTENERSET_GROUPS = (GATEWAY_GROUP, "gateway.networking.x-k8s.io")


@dataclass
class ListenerSetState:
    listener_set: ListenerSet
    gateway: GatewayState
    listeners: list[ListenerState]
    conds: list[Cond] = field(default_factory=list)

    @property
    def key(self) -> ObjectKey:
        return self.listener_set.key

    @property
    def accepted(self) -> bool:
        return next((c.status for c in self.conds if c.type == "Accepted"), True)


def parent_gateway_key(lset: ListenerSet) -> ObjectKey | None:
    """spec.parentRef: a Gateway; namespace defaults to the ListenerSet's own."""
    ref = lset.spec.parent_ref
    if ref.group != GATEWAY_GROUP or ref.kind != "Gateway":
        return None
    return ObjectKey(GATEWAY_GROUP, "Gateway", ref.namespace or lset.namespace, ref.name)


def precedence(lset: ListenerSet) -> tuple[str, str, str]:
    """Oldest first, then "{namespace}/{name}" (ListenerSet spec.listeners)."""
    return (lset.metadata.creation_timestamp, lset.namespace, lset.name)


def attach_listener_sets(ctx: Context, gateways: dict[ObjectKey, GatewayState]) -> list[ListenerSetState]:
    """Every ListenerSet whose parent is a Gateway of ours, in precedence order.
    Attached ones add their listeners to the Gateway's (for serving, conflicts
    and route attachment); ListenerSets of other Gateways are not ours."""
    states = []
    for lset in sorted(ctx.all(ListenerSet, "ListenerSet"), key=precedence):
        key = parent_gateway_key(lset)
        gw = gateways.get(key) if key else None
        if gw is not None:
            states.append(attach_one(ctx, gw, lset))
    return states


def attach_one(ctx: Context, gw: GatewayState, lset: ListenerSet) -> ListenerSetState:
    listeners = [validate_listener(ctx, gw.gateway, spec, lset) for spec in lset.spec.listeners]
    state = ListenerSetState(lset, gw, listeners)
    refusal = refusal_reason(ctx, gw, lset)
    if refusal:
        reject(state, *refusal)
        return state
    higher = [ls for ls in gw.listeners if ls.accepted]
    for ls in listeners:
        if ls.accepted:
            mark_conflict_with(ls, higher)
    # then within the set, as within a Gateway: indistinct listeners are all Conflicted
    mark_conflicts([ls for ls in listeners if ls.accepted])
    state.conds = listener_set_conditions(gw, listeners)
    if state.accepted:
        gw.listeners += listeners
    return state


def refusal_reason(ctx: Context, gw: GatewayState, lset: ListenerSet) -> tuple[str, str] | None:
    """Accepted=False reasons NotAllowed and ParentNotAccepted (ListenerSetConditionReason)."""
    if not gw.accepted:
        return ("ParentNotAccepted", f"Gateway {gw.key.namespace}/{gw.key.name} is not accepted")
    if not allowed_by_gateway(ctx, gw.gateway, lset.namespace):
        return ("NotAllowed", f"Gateway {gw.key.namespace}/{gw.key.name} spec.allowedListeners "
                              f"does not allow ListenerSets from namespace {lset.namespace}")
    return None


def allowed_by_gateway(ctx: Context, gw: Gateway, namespace: str) -> bool:
    """Gateway spec.allowedListeners.namespaces.from; "The default value is to allow no ListenerSets"."""
    allowed = gw.spec.allowed_listeners
    ns = allowed.namespaces if allowed else None
    if ns is None or ns.from_ == "None":
        return False
    if ns.from_ == "All":
        return True
    if ns.from_ == "Same":
        return namespace == gw.namespace
    if ns.from_ == "Selector":
        return ns.selector is not None and selector_matches(ns.selector, ctx.namespace_labels(namespace))
    return False


def reject(state: ListenerSetState, reason: str, message: str) -> None:
    """A ListenerSet that does not attach: neither it nor its listeners are
    accepted or programmed, for the same reason."""
    programmed = "ParentNotProgrammed" if reason == "ParentNotAccepted" else reason
    state.conds = [Cond("Accepted", False, reason, message), Cond("Programmed", False, programmed, message)]
    for ls in state.listeners:
        ls.conds[:0] = [Cond("Accepted", False, reason, message), Cond("Programmed", False, programmed, message)]


def mark_conflict_with(ls: ListenerState, higher: list[ListenerState]) -> None:
    """Conflicts with listeners of higher precedence (the Gateway's, older
    ListenerSets'): "Listeners in a Gateway and their attached ListenerSets are
    concatenated as a list"; the one that comes later is Conflicted."""
    for other in higher:
        found = conflict_reason(ls, other)
        if found:
            conflict(ls, *found)
            return


def conflict_reason(ls: ListenerState, other: ListenerState) -> tuple[str, str] | None:
    """Distinct Listeners (Gateway spec.listeners): one port serves one protocol
    family; HTTP, HTTPS and TLS listeners on it differ in hostname, TCP and UDP
    listeners are told apart by port alone."""
    if other.port != ls.port or transport_of(other) != transport_of(ls):
        return None
    if PORT_FAMILY[other.protocol] != PORT_FAMILY[ls.protocol]:
        return ("ProtocolConflict",
                f"port {ls.port} is used with another protocol by listener {other.qualified_name}")
    if PORT_FAMILY[ls.protocol] in ("tcp", "udp"):
        return ("HostnameConflict", f"port {ls.port} is used by listener {other.qualified_name}")
    if (ls.spec.hostname or "") == (other.spec.hostname or ""):
        return ("HostnameConflict", f"listener {other.qualified_name} on port {ls.port} has the same hostname")
    return None


def transport_of(ls: ListenerState) -> str:
    return "udp" if ls.protocol == "UDP" else "tcp"


def listener_set_conditions(gw: GatewayState, listeners: list[ListenerState]) -> list[Cond]:
    """Accepted/Programmed of an allowed ListenerSet: ListenersNotValid
    (False when no listener can be served, True when only some can)."""
    valid = [ls for ls in listeners if ls.ready]
    if not valid:
        message = "no listener of the ListenerSet is valid"
        return [Cond("Accepted", False, "ListenersNotValid", message),
                Cond("Programmed", False, "ListenersNotValid", message)]
    conds = []
    if len(valid) < len(listeners):
        invalid = ", ".join(ls.name for ls in listeners if not ls.ready)
        conds.append(Cond("Accepted", True, "ListenersNotValid", f"listeners not valid: {invalid}"))
    conds.append(Cond("Accepted", True, "Accepted"))
    if gw.address is None:
        conds.append(Cond("Programmed", False, "ParentNotProgrammed", "the parent Gateway has no address"))
    conds.append(Cond("Programmed", True, "Programmed"))
    return conds
