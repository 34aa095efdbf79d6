"""Gateway spec.tls: client-certificate validation on HTTPS listeners
(`frontend`) and the client certificate the Gateway presents to TLS backends
(`backend`).

Rules (Gateway API GatewayTLSConfig, FrontendTLSValidation):
- `frontend.perPort[].tls` applies to the HTTPS listeners on that port, else
  `frontend.default` applies to every HTTPS listener.
- A caCertificateRef that cannot be resolved (missing object, no `ca.crt`, not
  PEM) makes the listener ResolvedRefs=False with reason InvalidCACertificateRef;
  an unsupported kind, InvalidCACertificateKind; another namespace without a
  ReferenceGrant, RefNotPermitted. When no reference is valid the listener is
  also Accepted=False with reason NoValidCACertificate.
- `mode: AllowInsecureFallback` accepts clients without a valid certificate.
- `backend.clientCertificateRef` (a kubernetes.io/tls Secret) that is invalid
  makes the Gateway ResolvedRefs=False (InvalidClientCertificateRef, or
  RefNotPermitted across namespaces without a grant).
"""

from __future__ import annotations

from dataclasses import dataclass

from portico.ir import ClientValidation, TLSCertificate
from portico.models import (
    ConfigMap,
    FrontendTLSValidation,
    Gateway,
    ObjectReference,
    Secret,
)
from portico.objects import CORE_GROUP, GATEWAY_GROUP
from portico.translator.conditions import Cond
from portico.translator.context import Context
from portico.translator.secrets import configmap_value, secret_value, tls_key_pair, valid_certificates

# Kinds that can hold a CA bundle under `ca.crt` (ConfigMap is Core; Secret is
# implementation-specific support).
CA_KINDS = ("ConfigMap", "Secret")
CA_KEY = "ca.crt"


def group_kind(group: str, kind: str) -> str:
    """How a reference's kind reads in messages: "Service", "example.com/Thing"."""
    return f"{group}/{kind}" if group else kind


@dataclass(frozen=True)
class CAProblem:
    reason: str
    message: str


def ca_bundle(ctx: Context, kind: str, namespace: str, name: str) -> str | CAProblem:
    """The PEM bundle under `ca.crt` of a ConfigMap or Secret, or why it is unusable."""
    obj = ctx.get(ConfigMap, kind, namespace, name) if kind == "ConfigMap" else ctx.get(Secret, kind, namespace, name)
    if obj is None:
        return CAProblem("InvalidCACertificateRef", f"{kind} {namespace}/{name} not found")
    pem = configmap_value(obj, CA_KEY) if isinstance(obj, ConfigMap) else secret_value(obj, CA_KEY)
    if not pem:
        return CAProblem("InvalidCACertificateRef", f"{kind} {namespace}/{name} has no {CA_KEY}")
    if not valid_certificates(pem):
        return CAProblem("InvalidCACertificateRef", f"{kind} {namespace}/{name}: {CA_KEY} is not a PEM certificate")
    return pem


def frontend_ca(ctx: Context, gw: Gateway, ref: ObjectReference) -> str | CAProblem:
    """One frontend caCertificateRef (FrontendTLSValidation.caCertificateRefs)."""
    if ref.group not in (CORE_GROUP, "core") or ref.kind not in CA_KINDS:
        return CAProblem("InvalidCACertificateKind", f"{group_kind(ref.group, ref.kind)} cannot hold a CA certificate")
    ns = ref.namespace or gw.namespace
    if not ctx.reference_allowed(GATEWAY_GROUP, "Gateway", gw.namespace, CORE_GROUP, ref.kind, ns, ref.name):
        return CAProblem("RefNotPermitted", f"no ReferenceGrant allows {ref.kind} {ns}/{ref.name}")
    return ca_bundle(ctx, ref.kind, ns, ref.name)


def validation_for_port(gw: Gateway, port: int) -> FrontendTLSValidation | None:
    """perPort wins over default for the HTTPS listeners on its port."""
    frontend = gw.spec.tls.frontend if gw.spec.tls else None
    if frontend is None:
        return None
    for pp in frontend.per_port:
        if pp.port == port:
            return pp.tls.validation
    return frontend.default.validation


def insecure_fallback_conditions(gw: Gateway) -> list[Cond]:
    """InsecureFrontendValidationMode=True (ConfigurationChanged) while the Gateway's default
    or a per-port frontend validation allows insecure fallback; "This condition is removed as
    soon as FrontendValidationModeType is changed back to `AllowValidOnly`" (not set then)."""
    frontend = gw.spec.tls.frontend if gw.spec.tls else None
    if frontend is None:
        return []
    where = ["default"] if frontend.default.validation and is_insecure(frontend.default.validation) else []
    where += [f"port {pp.port}" for pp in frontend.per_port if pp.tls.validation and is_insecure(pp.tls.validation)]
    if not where:
        return []
    message = (f"frontend client certificate validation allows insecure fallback ({', '.join(where)}): "
               "clients without a valid certificate are accepted")
    return [Cond("InsecureFrontendValidationMode", True, "ConfigurationChanged", message)]


def is_insecure(validation: FrontendTLSValidation) -> bool:
    return validation.mode == "AllowInsecureFallback"


def frontend_validation(ctx: Context, gw: Gateway, port: int) -> tuple[ClientValidation | None, list[Cond]]:
    """Client validation for an HTTPS listener on `port` (spec port) and the
    listener conditions its CA references call for."""
    validation = validation_for_port(gw, port)
    if validation is None or not validation.ca_certificate_refs:
        return None, []
    pems: list[str] = []
    problems: list[CAProblem] = []
    for ref in validation.ca_certificate_refs:
        result = frontend_ca(ctx, gw, ref)
        if isinstance(result, CAProblem):
            problems.append(result)
        else:
            pems.append(result)
    conds = [Cond("ResolvedRefs", False, p.reason, p.message) for p in problems[:1]]
    if not pems:
        message = "no caCertificateRef of the frontend validation is valid"
        conds += [Cond("Accepted", False, "NoValidCACertificate", message),
                  Cond("Programmed", False, "Invalid", message)]
        return None, conds
    bundle = "".join(p if p.endswith("\n") else p + "\n" for p in pems)
    return ClientValidation(bundle, optional=validation.mode == "AllowInsecureFallback"), conds


def backend_client_certificate(ctx: Context, gw: Gateway) -> tuple[TLSCertificate | None, list[Cond]]:
    """Gateway spec.tls.backend.clientCertificateRef, and the Gateway
    ResolvedRefs condition it calls for (none when it is not set)."""
    ref = gw.spec.tls.backend.client_certificate_ref if gw.spec.tls and gw.spec.tls.backend else None
    if ref is None:
        return None, []
    ns = ref.namespace or gw.namespace
    if ref.group not in (CORE_GROUP, "core") or ref.kind != "Secret":
        return None, [unresolved("InvalidClientCertificateRef", f"{group_kind(ref.group, ref.kind)} is not a Secret")]
    if not ctx.reference_allowed(GATEWAY_GROUP, "Gateway", gw.namespace, CORE_GROUP, "Secret", ns, ref.name):
        return None, [unresolved("RefNotPermitted", f"no ReferenceGrant allows Secret {ns}/{ref.name}")]
    secret = ctx.get(Secret, "Secret", ns, ref.name)
    pair = tls_key_pair(secret) if secret else "not found"
    if isinstance(pair, str):
        return None, [unresolved("InvalidClientCertificateRef", f"Secret {ns}/{ref.name}: {pair}")]
    return TLSCertificate(f"{ns}/{ref.name}", pair[0], pair[1]), [Cond("ResolvedRefs", True, "ResolvedRefs")]


def unresolved(reason: str, message: str) -> Cond:
    return Cond("ResolvedRefs", False, reason, message)
