"""IR certificates -> Envoy SDS `Secret` resources.

Certificates are served over SDS (named by `TLSCertificate.name`) so a rotation pushes
only the secret, not the listener.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from portico import ir
from portico.xds._common import ads_source


def build_secret(cert: ir.TLSCertificate) -> secret_pb2.Secret:
    """A tls_certificate secret with the chain and key inline."""
    out = secret_pb2.Secret(name=cert.name)
    out.tls_certificate.certificate_chain.inline_string = cert.cert_pem
    out.tls_certificate.private_key.inline_string = cert.key_pem
    return out


def sds_config(name: str) -> secret_pb2.SdsSecretConfig:
    """Reference to secret `name`, fetched over the ADS stream."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads_source())


def collect_certificates(model: ir.IR) -> Iterable[ir.TLSCertificate]:
    """Every certificate the IR uses: listener certificates, then the IR.secrets that a
    cluster references (upstream client certificates). Unreferenced secrets are left out:
    Envoy never subscribes to them, so they could never be acknowledged."""
    for listener in model.listeners:
        for chain in listener.filter_chains:
            if chain.tls is not None:
                yield from chain.tls.certificates
    if not model.secrets:
        return
    referenced = {c.tls.client_cert_secret for c in model.clusters if c.tls is not None}
    yield from (s for s in model.secrets if s.name in referenced)


def build_secrets(model: ir.IR) -> dict[str, secret_pb2.Secret]:
    """name -> Secret; the first certificate of a name wins (names are unique per content)."""
    out: dict[str, secret_pb2.Secret] = {}
    for cert in collect_certificates(model):
        out.setdefault(cert.name, build_secret(cert))
    return out
