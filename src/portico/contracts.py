"""The types the core and the modes share, on neutral ground (neither the translator's
nor a mode's): what a provider hands the store (`ProviderEvent` of `Document`s, load
errors as `DocumentError`), where the infrastructure places a Gateway (`Placement`,
a translator input) and what the translator hands the infrastructure per Gateway
(`GatewayOutput`). The IR itself is `portico.ir`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portico.ir import IR, GatewayInfra
from portico.objects import ObjectKey

GatewayName = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Source:
    """Where a document came from: file and 1-based line of its start."""

    file: str
    line: int


@dataclass(frozen=True)
class Document:
    key: ObjectKey
    raw: dict[str, Any]
    source: Source
    # The API server's checks of this document as a new object, made where it was parsed
    # (a bulk worker: `portico.provider.apiserver.parse_and_check`), for the API-server
    # emulation to use if it does not hold the object yet; opaque here.
    checked: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class DocumentError:
    """A document that was skipped (or an object that was not applied)."""

    file: str
    line: int
    message: str
    path: str = ""  # field path inside the document, e.g. "spec.listeners[0].port"
    object: str = ""  # "Kind ns/name" when known
    rule: str = ""  # the schema keyword or CEL rule that rejected it

    def __post_init__(self) -> None:
        # what a document's author wrote reaches logs and /api/errors: never unbounded
        # (values in messages are cut where they are quoted; this holds for every field)
        for name, limit in (("message", 1000), ("path", 300), ("object", 400), ("rule", 500)):
            value = getattr(self, name)
            if len(value) > limit:
                object.__setattr__(self, name, f"{value[:limit]}... ({len(value)} characters)")

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path,
                "message": self.message, "object": self.object, "rule": self.rule}

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        what = f" {self.object}" if self.object else ""
        field_path = f" {self.path}:" if self.path else ""
        rule = f" (rule: {self.rule})" if self.rule else ""
        return f"{where}:{what}{field_path} {self.message}{rule}"


@dataclass(frozen=True)
class ProviderEvent:
    """One sync: what changed since the previous event, and every load error now."""

    upserts: tuple[Document, ...] = ()
    deletes: tuple[ObjectKey, ...] = ()
    errors: tuple[DocumentError, ...] = field(default=())
    initial: bool = False  # the first, complete load
    # when the provider saw the change (time.monotonic(): e.g. the file watcher's event),
    # the start of a change's timeline (`portico.control`); None when unknown
    observed: float | None = None


@dataclass(frozen=True)
class Reserved:
    """Portico's and Envoy's own control endpoints on the machine (or pod) where Envoy runs:
    no backend may name them, whatever a platform owner allows (`translator.localaccess`).
    Through them a route would reach the xDS stream (every private key), Envoy's admin API
    (/quitquitquit) or Portico's admin API."""

    # directories and sockets: everything under them is reserved (the state directory:
    # the xDS socket, every Envoy's admin socket)
    paths: tuple[str, ...] = ()
    # (bind host, port) of TCP control endpoints: that port on any loopback, unspecified
    # or the bind address itself; on every address when the bind host is unspecified
    ports: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Placement:
    """Where the infrastructure runs one Gateway's data plane."""

    # the address Envoy's listeners bind; None when no usable address exists
    bind_address: str | None
    # status.addresses; empty means (bind_address,)
    addresses: tuple[str, ...] = ()
    # a listener on port P binds P + bind_port_offset
    bind_port_offset: int = 0
    # (bind port, "tcp" | "udp") the data plane could not bind (ListenerReasonPortUnavailable)
    unavailable: frozenset[tuple[int, str]] = frozenset()
    # why bind_address is None although addresses were requested (GatewayReasonAddressNotUsable)
    address_problem: str = ""
    # whether bind_address is what clients reach (standalone), or only where the data plane
    # binds inside its pod (Kubernetes: clients reach `addresses`, the Service's)
    bind_address_reachable: bool = True
    # a Service's externalName may name endpoints on this machine (loopback, localhost,
    # link-local) without an allow-list: standalone mode, where backends run beside Envoy
    # (its EndpointSlices may in any mode). In a Kubernetes pod, loopback is Envoy's own.
    # Backends and XBackends (a route author's objects) never may, unless the GatewayClass's
    # PorticoProxy allows it (spec.localBackends; `translator.localaccess`).
    local_backends: bool = True
    # link-local and cloud metadata addresses allowed to every backend without a
    # spec.localBackends / spec.protectedBackends rule (the controller's
    # --allow-link-local-backends; off by default: instance credentials live there)
    link_local_backends: bool = False
    # control endpoints no backend may reach, in any mode
    reserved: Reserved = field(default_factory=Reserved)

    @property
    def status_addresses(self) -> tuple[str, ...]:
        if self.addresses:
            return self.addresses
        return (self.bind_address,) if self.bind_address and self.bind_address_reachable else ()


@dataclass(frozen=True)
class GatewayOutput:
    """What one Gateway's data plane needs: its Envoy configuration and its infrastructure."""

    xds: IR
    infra: GatewayInfra
