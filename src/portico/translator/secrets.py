"""Reading Secrets and ConfigMaps as Kubernetes stores them.

`cryptography` is imported where a certificate or key is read, not with this module:
a configuration without TLS never needs it (13 MiB of the control plane's resident
memory, most of it the library's Rust extension).
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import TYPE_CHECKING

from portico.models import ConfigMap, Secret

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes


def secret_value(secret: Secret, key: str) -> str | None:
    """`stringData` wins over `data` (the API server merges it into data on write)."""
    if key in secret.string_data:
        return secret.string_data[key]
    raw = secret.data.get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def configmap_value(cm: ConfigMap, key: str) -> str | None:
    return cm.data.get(key)


def valid_certificates(pem: str) -> bool:
    from cryptography import x509

    try:
        return bool(x509.load_pem_x509_certificates(pem.encode()))
    except ValueError:
        return False


def tls_key_pair(secret: Secret) -> tuple[str, str] | str:
    """(cert PEM, key PEM) of a kubernetes.io/tls Secret, or why it is unusable (then the
    reference is invalid, InvalidCertificateRef: the listener is not handed to Envoy to
    be rejected there)."""
    cert, key = secret_value(secret, "tls.crt"), secret_value(secret, "tls.key")
    if not cert or not key:
        return "the Secret has no tls.crt and tls.key"
    problem = key_pair_problem(cert, key)
    return problem if problem else (cert, key)


@functools.lru_cache(maxsize=1024)
def key_pair_problem(cert_pem: str, key_pem: str) -> str:
    """Why Envoy could not serve this certificate chain with this key ("" when it can)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        return "tls.crt is not a PEM certificate"
    try:
        key = load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        return "tls.key is not a PEM private key"
    if not chain:
        return "tls.crt is not a PEM certificate"
    public = chain[0].public_key()
    if _spki(public) != _spki(key.public_key()):
        return "tls.key does not match the certificate in tls.crt"
    return _unsupported_key(key)


def _spki(key: PublicKeyTypes) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _unsupported_key(key: PrivateKeyTypes) -> str:
    """Envoy (BoringSSL) serves RSA keys of 2048 bits or more, ECDSA keys on P-256,
    P-384 and P-521, and Ed25519 keys (each checked against Envoy here)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ed25519.Ed25519PrivateKey):
        return ""
    if isinstance(key, rsa.RSAPrivateKey):
        return "" if key.key_size >= 2048 else f"an RSA key of {key.key_size} bits is too short (2048 or more)"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "" if key.curve.name in ("secp256r1", "secp384r1", "secp521r1") else \
            f"the ECDSA curve {key.curve.name} is not supported (P-256, P-384 or P-521)"
    return f"a {type(key).__name__.removeprefix('_')} key is not supported (RSA, ECDSA or Ed25519)"
