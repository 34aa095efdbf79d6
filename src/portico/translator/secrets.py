"""Reading Secrets and ConfigMaps as Kubernetes stores them."""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from portico.models import ConfigMap, Secret


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
    try:
        return bool(x509.load_pem_x509_certificates(pem.encode()))
    except ValueError:
        return False


def tls_key_pair(secret: Secret) -> tuple[str, str] | str:
    """(cert PEM, key PEM) of a kubernetes.io/tls Secret, or why it is unusable."""
    cert, key = secret_value(secret, "tls.crt"), secret_value(secret, "tls.key")
    if not cert or not key:
        return "the Secret has no tls.crt and tls.key"
    if not valid_certificates(cert):
        return "tls.crt is not a PEM certificate"
    try:
        load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError):
        return "tls.key is not a PEM private key"
    return cert, key
