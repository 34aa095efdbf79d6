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

Where it happens: policies are resolved once per translation (`BackendTLS`, held
by `Backends`), and a Service backend a policy targets resolves straight to its
TLS cluster (`Backends.resolve`; TLSRoutes when they bind to a terminating
listener). What depends on the Gateway is applied to that Gateway's own IR
(`for_gateway`): its client certificate, and the policy's ancestor status.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from portico import ir
from portico.models import BackendTLSPolicy, BackendTLSValidation
from portico.objects import CORE_GROUP, ObjectKey
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.frontendtls import CA_KINDS, CAProblem, ca_bundle, group_kind

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


Origin = tuple[str, str, str]  # (namespace, Service, Service port name) of a cluster


class BackendTLS:
    """The BackendTLSPolicies of one translation, applied as backends are resolved."""

    def __init__(self, ctx: Context) -> None:
        self.policies = [resolve_policy(ctx, p) for p in ctx.all(BackendTLSPolicy, "BackendTLSPolicy")]
        self.index = target_index(self.policies)

    def policies_for(self, origin: Origin) -> list[Policy]:
        ns, service, port = origin
        return self.index.get((ns, service, port)) or self.index.get((ns, service, None)) or []

    def variant(self, cluster: ir.Cluster, origin: Origin) -> ir.Cluster | None:
        """The TLS cluster for `cluster` when a policy targets its Service (port), else None."""
        policies = self.policies_for(origin) if self.index else []
        return tls_variant(cluster, policies[0]) if policies else None

    def for_gateway(self, gateway: ObjectKey, client_cert: ir.TLSCertificate | None,
                    listeners: tuple[ir.Listener, ...], clusters: dict[str, ir.Cluster],
                    origins: dict[str, Origin]) -> tuple[tuple[ir.Listener, ...], ir.TLSCertificate | None]:
        """The Gateway's listeners with its client certificate on their TLS clusters (and
        that certificate if they present it); records the Gateway as an ancestor of the
        policies whose clusters it uses."""
        if not self.index:
            return listeners, None
        variants = {}
        for name in ir.clusters_used(listeners):
            policies = self.policies_for(origins[name]) if is_tls_variant(name) and name in origins else []
            if not policies:
                continue
            self.record_ancestor(gateway, policies)
            cluster = clusters[name]
            if client_cert is not None and cluster.tls is not None:
                variant = with_client_certificate(cluster, client_cert)
                clusters.setdefault(variant.name, variant)
                origins.setdefault(variant.name, origins[name])
                variants[name] = variant.name
        if not variants:
            return listeners, None
        return tuple(rename_clusters(li, variants.get) for li in listeners), client_cert

    @staticmethod
    def record_ancestor(gateway: ObjectKey, policies: list[Policy]) -> None:
        winner, losers = policies[0], policies[1:]
        winner.ancestors.setdefault(gateway, winner.conds)
        for p in losers:
            p.ancestors.setdefault(gateway, [Cond("Accepted", False, "Conflicted",
                                                  f"BackendTLSPolicy {winner.policy.namespace}/"
                                                  f"{winner.policy.name} takes precedence")] + p.conds)


# ---------------------------------------------------------------- policies


def resolve_policy(ctx: Context, policy: BackendTLSPolicy) -> Policy:
    tls, conds = validation_tls(ctx, policy.namespace, policy.spec.validation)
    return Policy(policy, tls, conds)


def validation_tls(ctx: Context, namespace: str, v: BackendTLSValidation) -> tuple[ir.UpstreamTLS | None, list[Cond]]:
    """The TLS a validation block asks for (BackendTLSPolicy's; an XBackend's tls.validation
    has the same fields), with its problems: no TLS and Accepted=False (Invalid,
    NoValidCACertificate) when it cannot be used; ResolvedRefs=False for the first invalid
    caCertificateRef."""
    sans = subject_alt_names(v)
    if v.ca_certificate_refs and v.well_known_ca_certificates:
        return None, [invalid("caCertificateRefs and wellKnownCACertificates are mutually exclusive")]
    if v.well_known_ca_certificates:
        if v.well_known_ca_certificates not in WELL_KNOWN_CAS:
            return None, [invalid(f"wellKnownCACertificates {v.well_known_ca_certificates} is not supported")]
        return ir.UpstreamTLS(v.hostname, system_ca=True, subject_alt_names=sans), []
    if not v.ca_certificate_refs:
        return None, [invalid("either caCertificateRefs or wellKnownCACertificates is required")]
    pems, conds = ca_certificates(ctx, namespace, v)
    if not pems:
        conds.append(Cond("Accepted", False, "NoValidCACertificate", "no caCertificateRef is valid"))
        return None, conds
    bundle = "".join(p if p.endswith("\n") else p + "\n" for p in pems)
    return ir.UpstreamTLS(v.hostname, ca_pem=bundle, subject_alt_names=sans), conds


def subject_alt_names(v: BackendTLSValidation) -> tuple[ir.SubjectAltName, ...]:
    """validation.subjectAltNames: the names the backend certificate must carry (one of)."""
    out: list[ir.SubjectAltName] = []
    for san in v.subject_alt_names:
        if san.type == "Hostname" and san.hostname:
            out.append(ir.SubjectAltName("Hostname", san.hostname))
        elif san.type == "URI" and san.uri:
            out.append(ir.SubjectAltName("URI", san.uri))
    return tuple(out)


def ca_certificates(ctx: Context, namespace: str, v: BackendTLSValidation) -> tuple[list[str], list[Cond]]:
    """The PEM bundles of the valid references, and ResolvedRefs=False for the first invalid one."""
    pems: list[str] = []
    problems: list[CAProblem] = []
    for ref in v.ca_certificate_refs:
        if ref.group not in (CORE_GROUP, "core") or ref.kind not in CA_KINDS:
            problems.append(CAProblem("InvalidKind", f"{group_kind(ref.group, ref.kind)} cannot hold a CA certificate"))
            continue
        result = ca_bundle(ctx, ref.kind, namespace, ref.name)
        if isinstance(result, CAProblem):
            problems.append(result)
        else:
            pems.append(result)
    return pems, [Cond("ResolvedRefs", False, p.reason, p.message) for p in problems[:1]]


def invalid(message: str) -> Cond:
    return Cond("Accepted", False, "Invalid", message)


def target_index(policies: list[Policy]) -> dict[TargetKey, list[Policy]]:
    """Policies per target, in precedence order (the first one applies)."""
    index: dict[TargetKey, list[Policy]] = defaultdict(list)
    for p in sorted(policies, key=lambda p: p.precedence):
        for ref in p.policy.spec.target_refs:
            if ref.group in (CORE_GROUP, "core") and ref.kind == "Service":
                index[(p.policy.namespace, ref.name, ref.section_name or None)].append(p)
    return index


# ---------------------------------------------------------------- clusters


def tls_variant(base: ir.Cluster, policy: Policy) -> ir.Cluster:
    if policy.tls is None:
        # No valid trust anchor: no endpoint, so every request fails (503).
        return replace(base, name=f"{base.name}/tls", endpoints=())
    # HTTP/2 over TLS negotiates h2 by ALPN instead of prior knowledge (h2c).
    protocol: ir.AppProtocol = "h2" if base.protocol == "h2c" else base.protocol
    return replace(base, name=f"{base.name}/tls", protocol=protocol, tls=policy.tls)


def with_client_certificate(cluster: ir.Cluster, cert: ir.TLSCertificate) -> ir.Cluster:
    assert cluster.tls is not None
    return replace(cluster, name=f"{cluster.name}/client/{cert.name}",
                   tls=replace(cluster.tls, client_cert_secret=cert.name))


def is_tls_variant(name: str) -> bool:
    """Cluster names are "<ns>/<service>/<port>[/<protocol>][/tls[/client/<secret>]]"."""
    return "tls" in name.split("/")[3:5]


def rename_clusters(li: ir.Listener, new: Callable[[str], str | None]) -> ir.Listener:
    """`li` with its backends, mirrors and authorization services sent to `new(name)`
    where that is not None."""
    def backends(items: tuple[ir.WeightedBackend, ...]) -> tuple[ir.WeightedBackend, ...]:
        return tuple(replace(b, cluster=new(b.cluster) or b.cluster) if b.cluster else b for b in items)

    def action(a: ir.RouteAction) -> ir.RouteAction:
        mirrors = tuple(replace(m, cluster=new(m.cluster) or m.cluster) for m in a.mirrors)
        auth = a.external_auth
        if auth is not None:
            auth = replace(auth, cluster=new(auth.cluster) or auth.cluster)
        return replace(a, backends=backends(a.backends), mirrors=mirrors, external_auth=auth)

    def chain(c: ir.FilterChain) -> ir.FilterChain:
        if c.tcp is not None:
            return replace(c, tcp=ir.TCPConfig(backends(c.tcp.backends)))
        if c.http is None:
            return c
        hosts = tuple(replace(vh, routes=tuple(replace(r, action=action(r.action)) for r in vh.routes))
                      for vh in c.http.virtual_hosts)
        return replace(c, http=replace(c.http, virtual_hosts=hosts))

    return replace(li, filter_chains=tuple(chain(c) for c in li.filter_chains))
