"""A TLS validation block → the TLS Envoy originates to a backend (`ir.UpstreamTLS`):
BackendTLSPolicy's spec.validation, and an XBackend's tls.validation (the same fields).

Rules (BackendTLSPolicy spec):
- validation.caCertificateRefs (ConfigMap or Secret with `ca.crt`, in the object's
  namespace) or wellKnownCACertificates "System" are the trust anchors; an unresolvable
  reference is ResolvedRefs=False with reason InvalidCACertificateRef, an unsupported
  kind InvalidKind; with no valid reference the policy is Accepted=False
  (NoValidCACertificate) and connections to the backend must fail with a 5xx.
- validation.hostname is the SNI, and the name the backend certificate must carry
  unless subjectAltNames are given (then those are matched instead).
"""

from __future__ import annotations

from portico import ir
from portico.models import BackendTLSValidation
from portico.objects import CORE_GROUP
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.frontendtls import CA_KINDS, CAProblem, ca_bundle, group_kind

WELL_KNOWN_CAS = ("System",)


def validation_tls(ctx: Context, namespace: str, v: BackendTLSValidation) -> tuple[ir.UpstreamTLS | None, list[Cond]]:
    """The TLS a validation block asks for, with its problems: no TLS and Accepted=False
    (Invalid, NoValidCACertificate) when it cannot be used; ResolvedRefs=False for the
    first invalid caCertificateRef."""
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
