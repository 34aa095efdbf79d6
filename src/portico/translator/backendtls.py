"""BackendTLSPolicy → TLS origination (`ir.UpstreamTLS`) on the clusters of the
Services it targets, and the policy's ancestor status.

Rules (BackendTLSPolicy spec):
- targetRefs name a Service, optionally one port by name (sectionName); a
  policy for the port wins over one for the whole Service. Among policies for
  the same target the oldest (creation timestamp, then namespace/name) takes
  precedence; the others are Accepted=False with reason Conflicted.
- validation.caCertificateRefs (ConfigMap or Secret with `ca.crt`, in the
  policy's namespace) or wellKnownCACertificates "System" are the trust
  anchors; an unresolvable reference is ResolvedRefs=False with reason
  InvalidCACertificateRef, an unsupported kind InvalidKind; with no valid
  reference the policy is Accepted=False (NoValidCACertificate) and
  connections to the backend must fail with a 5xx.
- validation.hostname is the SNI, and the name the backend certificate must
  carry unless subjectAltNames are given (then those are matched instead).
- The policy applies where routes use the Service: HTTPRoute and GRPCRoute
  backends and mirrors, and TLSRoutes on listeners that terminate TLS (a
  passthrough or TCP stream is forwarded as is). Its ancestors are the
  Gateways of those routes.
- Gateway spec.tls.backend.clientCertificateRef is presented to such backends
  by that Gateway (so each Gateway with a client certificate gets its own
  variant of the cluster).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from portico import ir
from portico.models import BackendTLSPolicy, BackendTLSValidation
from portico.objects import CORE_GROUP, ObjectKey
from portico.translator.backends import Backends
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.frontendtls import CA_KINDS, CAProblem, ca_bundle, group_kind
from portico.translator.gateway import GatewayState, HostRoutes, L4Routes, ListenerState, RouteEntry
from portico.translator.status import policy_status

# (namespace, Service, port name); port None: the whole Service
TargetKey = tuple[str, str, str | None]
WELL_KNOWN_CAS = ("System",)


@dataclass
class Policy:
    policy: BackendTLSPolicy
    tls: ir.UpstreamTLS | None  # None: no valid trust anchor, connections must fail
    conds: list[Cond]
    # ancestor Gateway -> conditions for it
    ancestors: dict[ObjectKey, list[Cond]] = field(default_factory=dict)

    @property
    def precedence(self) -> tuple[str, str, str]:
        p = self.policy
        return (p.metadata.creation_timestamp, p.namespace, p.name)


@dataclass
class Result:
    statuses: dict[ObjectKey, dict[str, Any]]
    secrets: tuple[ir.TLSCertificate, ...]  # client certificates the TLS clusters present


def apply_backend_tls(ctx: Context, gateways: dict[ObjectKey, GatewayState], backends: Backends) -> Result:
    policies = [resolve_policy(ctx, p) for p in ctx.all(BackendTLSPolicy, "BackendTLSPolicy")]
    index = target_index(policies)
    secrets: dict[str, ir.TLSCertificate] = {}
    replaced: set[str] = set()
    for _, gw in sorted(gateways.items()):
        origin = Origination(index, backends, gw, replaced)
        for ls in gw.listeners:
            if index and originates_tls(ls):  # no policy targets anything: every cluster stays as it is
                rewrite_listener(ls, origin.cluster_for)
        if origin.used_client_cert and gw.backend_client_cert:
            secrets[gw.backend_client_cert.name] = gw.backend_client_cert
    drop_unreferenced(backends, replaced, gateways)
    statuses = {p.policy.key: policy_status(p.policy, p.ancestors, ctx.snapshot.controller_name) for p in policies}
    return Result(statuses, tuple(sorted(secrets.values(), key=lambda c: c.name)))


# ---------------------------------------------------------------- policies


def resolve_policy(ctx: Context, policy: BackendTLSPolicy) -> Policy:
    v = policy.spec.validation
    sans = subject_alt_names(v)
    if v.ca_certificate_refs and v.well_known_ca_certificates:
        return invalid(policy, "caCertificateRefs and wellKnownCACertificates are mutually exclusive")
    if v.well_known_ca_certificates:
        if v.well_known_ca_certificates not in WELL_KNOWN_CAS:
            return invalid(policy, f"wellKnownCACertificates {v.well_known_ca_certificates} is not supported")
        return Policy(policy, ir.UpstreamTLS(v.hostname, system_ca=True, subject_alt_names=sans), [])
    if not v.ca_certificate_refs:
        return invalid(policy, "either caCertificateRefs or wellKnownCACertificates is required")
    pems, conds = ca_certificates(ctx, policy, v)
    if not pems:
        conds.append(Cond("Accepted", False, "NoValidCACertificate", "no caCertificateRef is valid"))
        return Policy(policy, None, conds)
    bundle = "".join(p if p.endswith("\n") else p + "\n" for p in pems)
    return Policy(policy, ir.UpstreamTLS(v.hostname, ca_pem=bundle, subject_alt_names=sans), conds)


def subject_alt_names(v: BackendTLSValidation) -> tuple[ir.SubjectAltName, ...]:
    """validation.subjectAltNames: the names the backend certificate must carry (one of)."""
    out: list[ir.SubjectAltName] = []
    for san in v.subject_alt_names:
        if san.type == "Hostname" and san.hostname:
            out.append(ir.SubjectAltName("Hostname", san.hostname))
        elif san.type == "URI" and san.uri:
            out.append(ir.SubjectAltName("URI", san.uri))
    return tuple(out)


def ca_certificates(ctx: Context, policy: BackendTLSPolicy, v: BackendTLSValidation) -> tuple[list[str], list[Cond]]:
    """The PEM bundles of the valid references, and ResolvedRefs=False for the first invalid one."""
    pems: list[str] = []
    problems: list[CAProblem] = []
    for ref in v.ca_certificate_refs:
        if ref.group not in (CORE_GROUP, "core") or ref.kind not in CA_KINDS:
            problems.append(CAProblem("InvalidKind", f"{group_kind(ref.group, ref.kind)} cannot hold a CA certificate"))
            continue
        result = ca_bundle(ctx, ref.kind, policy.namespace, ref.name)
        if isinstance(result, CAProblem):
            problems.append(result)
        else:
            pems.append(result)
    return pems, [Cond("ResolvedRefs", False, p.reason, p.message) for p in problems[:1]]


def invalid(policy: BackendTLSPolicy, message: str) -> Policy:
    return Policy(policy, None, [Cond("Accepted", False, "Invalid", message)])


def target_index(policies: list[Policy]) -> dict[TargetKey, list[Policy]]:
    """Policies per target, in precedence order (the first one applies)."""
    index: dict[TargetKey, list[Policy]] = defaultdict(list)
    for p in sorted(policies, key=lambda p: p.precedence):
        for ref in p.policy.spec.target_refs:
            if ref.group in (CORE_GROUP, "core") and ref.kind == "Service":
                index[(p.policy.namespace, ref.name, ref.section_name or None)].append(p)
    return index


# ---------------------------------------------------------------- clusters


class Origination:
    """Maps a Gateway's cluster references to their TLS variants, recording
    the policies' ancestors on the way."""

    def __init__(self, index: dict[TargetKey, list[Policy]], backends: Backends, gw: GatewayState,
                 replaced: set[str]) -> None:
        self.index, self.backends, self.gw, self.replaced = index, backends, gw, replaced
        self.used_client_cert = False

    def policies_for(self, cluster: str) -> list[Policy]:
        origin = self.backends.origins.get(cluster)
        if origin is None:
            return []
        ns, service, port = origin
        return self.index.get((ns, service, port)) or self.index.get((ns, service, None)) or []

    def cluster_for(self, name: str) -> str:
        policies = self.policies_for(name)
        if not policies:
            return name
        winner, losers = policies[0], policies[1:]
        winner.ancestors.setdefault(self.gw.key, winner.conds)
        for p in losers:
            p.ancestors.setdefault(self.gw.key, [Cond("Accepted", False, "Conflicted",
                                                      f"BackendTLSPolicy {winner.policy.namespace}/"
                                                      f"{winner.policy.name} takes precedence")] + p.conds)
        variant = self.variant(self.backends.clusters[name], winner)
        self.backends.clusters.setdefault(variant.name, variant)
        self.replaced.add(name)
        return variant.name

    def variant(self, base: ir.Cluster, policy: Policy) -> ir.Cluster:
        if policy.tls is None:
            # No valid trust anchor: no endpoint, so every request fails (503).
            return replace(base, name=f"{base.name}/tls", endpoints=())
        cert = self.gw.backend_client_cert
        self.used_client_cert |= cert is not None
        tls = replace(policy.tls, client_cert_secret=cert.name if cert else None)
        name = f"{base.name}/tls" + (f"/client/{cert.name}" if cert else "")
        # HTTP/2 over TLS negotiates h2 by ALPN instead of prior knowledge (h2c).
        protocol: ir.AppProtocol = "h2" if base.protocol == "h2c" else base.protocol
        return replace(base, name=name, protocol=protocol, tls=tls)


def originates_tls(ls: ListenerState) -> bool:
    """HTTP and HTTPS listeners, and TLS listeners that terminate (re-encryption)."""
    return ls.protocol in ("HTTP", "HTTPS") or (ls.protocol == "TLS" and ls.tls_mode == "Terminate")


def rewrite_listener(ls: ListenerState, fn: Callable[[str], str]) -> None:
    ls.http_routes = [HostRoutes(hr.hostnames, [RouteEntry(e.precedence, replace(e.route, action=rewrite_action(
        e.route.action, fn))) for e in hr.entries]) for hr in ls.http_routes]
    ls.l4_routes = [L4Routes(r.hostnames, rewrite_backends(r.backends, fn), r.precedence) for r in ls.l4_routes]


def rewrite_action(action: ir.RouteAction, fn: Callable[[str], str]) -> ir.RouteAction:
    mirrors = tuple(replace(m, cluster=fn(m.cluster)) for m in action.mirrors)
    return replace(action, backends=rewrite_backends(action.backends, fn), mirrors=mirrors)


def rewrite_backends(backends: tuple[ir.WeightedBackend, ...],
                     fn: Callable[[str], str]) -> tuple[ir.WeightedBackend, ...]:
    return tuple(replace(b, cluster=fn(b.cluster)) if b.cluster else b for b in backends)


def drop_unreferenced(backends: Backends, replaced: set[str], gateways: dict[ObjectKey, GatewayState]) -> None:
    """A plain cluster that every use now reaches through its TLS variant goes."""
    used: set[str] = set()
    for gw in gateways.values():
        for ls in gw.listeners:
            used |= referenced(ls)
    for name in replaced - used:
        del backends.clusters[name]


def referenced(ls: ListenerState) -> set[str]:
    out = {b.cluster for r in ls.l4_routes for b in r.backends if b.cluster}
    for hr in ls.http_routes:
        for e in hr.entries:
            out |= {b.cluster for b in e.route.action.backends if b.cluster}
            out |= {m.cluster for m in e.route.action.mirrors}
    return out
