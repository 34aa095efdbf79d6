"""BackendTLSPolicy (Gateway API) → TLS origination (`ir.UpstreamTLS`) on the clusters
of the Services it targets, and the policy's ancestor status.

Rules (BackendTLSPolicy spec):
- targetRefs name a Service, optionally one port by name (sectionName); a policy for
  the port wins over one for the whole Service. Among policies for the same target the
  oldest (creation timestamp, then namespace/name) takes precedence; the others are
  Accepted=False with reason Conflicted. Its own attachment, not `Attachment`'s: the
  Gateway API's rules for this kind, not Portico's CRDs'.
- spec.validation: the trust anchors, SNI and names to verify (`upstreamtls`).
- The policy applies where routes use the Service: HTTPRoute and GRPCRoute backends and
  mirrors, and TLSRoutes on listeners that terminate TLS (a passthrough or TCP stream is
  forwarded as is). Its ancestors are the Gateways of those routes.
- Gateway spec.tls.backend.clientCertificateRef is presented to such backends by that
  Gateway (so each Gateway with a client certificate gets its own variant of the cluster).

Where it happens: a Service backend a policy targets resolves straight to its TLS
cluster (`originate`, asked by `Backends.originating`). What depends on the Gateway is
applied to that Gateway's own IR (`on_gateway`): its client certificate, and the
policy's ancestor status.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from portico import ir
from portico.models import BackendTLSPolicy, Resource
from portico.objects import CORE_GROUP, ObjectKey
from portico.translator.backends import Backends, Origin
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.gateway import GatewayState
from portico.translator.policies.attachment import Ancestors, Attachment, conflicted, precedence
from portico.translator.policies.kind import PolicyKind
from portico.translator.upstreamtls import validation_tls

# (namespace, Service, port name); port None: the whole Service
TargetKey = tuple[str, str, str | None]


@dataclass
class Policy:
    policy: BackendTLSPolicy
    tls: ir.UpstreamTLS | None  # None: no valid trust anchor, connections must fail
    conds: list[Cond]
    ancestors: Ancestors = field(default_factory=dict)  # ancestor Gateway -> conditions for it

    @property
    def precedence(self) -> tuple[str, str, str]:
        return precedence(self.policy)


class BackendTLSPolicies(PolicyKind):
    kind = "BackendTLSPolicy"
    model = BackendTLSPolicy
    direct = False

    def __init__(self, ctx: Context, attachment: Attachment) -> None:
        super().__init__(ctx, attachment)
        self.policies = [resolve_policy(ctx, p) for p in ctx.all(BackendTLSPolicy, self.kind)]
        self.index = target_index(self.policies)

    @property
    def active(self) -> bool:
        return bool(self.index)

    def gateways_only(self) -> bool:
        return not self.index  # it targets Services only

    def policies_for(self, origin: Origin) -> list[Policy]:
        ns, service, port = origin
        return self.index.get((ns, service, port)) or self.index.get((ns, service, None)) or []

    def originate(self, cluster: ir.Cluster, origin: Origin) -> ir.Cluster | None:
        """The TLS cluster for `cluster` when a policy targets its Service (port), else None."""
        policies = self.policies_for(origin)
        return tls_variant(cluster, policies[0]) if policies else None

    def on_gateway(self, gw: GatewayState, listeners: tuple[ir.Listener, ...], backends: Backends
                   ) -> tuple[tuple[ir.Listener, ...], tuple[ir.TLSCertificate, ...]]:
        """The Gateway's listeners with its client certificate on their TLS clusters (and
        that certificate if they present it); records the Gateway as an ancestor of the
        policies whose clusters it uses."""
        clusters, origins, client_cert = backends.clusters, backends.origins, gw.backend_client_cert
        variants = {}
        for name in ir.clusters_used(listeners):
            policies = self.policies_for(origins[name]) if is_tls_variant(name) and name in origins else []
            if not policies:
                continue
            self.record_ancestor(gw.key, policies)
            cluster = clusters[name]
            if client_cert is not None and cluster.tls is not None:
                variant = with_client_certificate(cluster, client_cert)
                clusters.setdefault(variant.name, variant)
                origins.setdefault(variant.name, origins[name])
                variants[name] = variant.name
        if not variants or client_cert is None:
            return listeners, ()
        return tuple(rename_clusters(li, variants.get) for li in listeners), (client_cert,)

    def record_ancestor(self, gateway: ObjectKey, policies: list[Policy]) -> None:
        winner, losers = policies[0], policies[1:]
        winner.ancestors.setdefault(gateway, winner.conds)
        for p in losers:
            p.ancestors.setdefault(gateway, [conflicted(self.kind, winner.policy)] + p.conds)

    def statuses(self) -> Iterable[tuple[Resource, Ancestors]]:
        return [(p.policy, p.ancestors) for p in self.policies]


def resolve_policy(ctx: Context, policy: BackendTLSPolicy) -> Policy:
    tls, conds = validation_tls(ctx, policy.namespace, policy.spec.validation)
    return Policy(policy, tls, conds)


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
    """`li` with its backends, mirrors, authorization services and error pages sent to `new(name)`
    where that is not None."""
    def backends(items: tuple[ir.WeightedBackend, ...]) -> tuple[ir.WeightedBackend, ...]:
        return tuple(replace(b, cluster=new(b.cluster) or b.cluster) if b.cluster else b for b in items)

    def action(a: ir.RouteAction) -> ir.RouteAction:
        mirrors = tuple(replace(m, cluster=new(m.cluster) or m.cluster) for m in a.mirrors)
        auth = a.external_auth
        if auth is not None:
            auth = replace(auth, cluster=new(auth.cluster) or auth.cluster)
        pages = a.error_pages
        if pages is not None and pages.cluster is not None:
            pages = replace(pages, cluster=new(pages.cluster) or pages.cluster)
        policy_auth = a.policy_external_auth
        if policy_auth is not None:
            policy_auth = replace(policy_auth, cluster=new(policy_auth.cluster) or policy_auth.cluster)
        return replace(a, backends=backends(a.backends), mirrors=mirrors, external_auth=auth, error_pages=pages,
                       policy_external_auth=policy_auth)

    def chain(c: ir.FilterChain) -> ir.FilterChain:
        if c.tcp is not None:
            return replace(c, tcp=ir.TCPConfig(backends(c.tcp.backends)))
        if c.http is None:
            return c
        hosts = tuple(replace(vh, routes=tuple(replace(r, action=action(r.action)) for r in vh.routes))
                      for vh in c.http.virtual_hosts)
        return replace(c, http=replace(c.http, virtual_hosts=hosts))

    return replace(li, filter_chains=tuple(chain(c) for c in li.filter_chains))
