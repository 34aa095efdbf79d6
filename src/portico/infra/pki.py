"""The xDS certificate authority of Kubernetes mode.

xDS carries TLS private keys, so Envoy pods reach the controller over mutual
TLS only: the controller keeps a CA (in a Secret of its namespace, so every
replica serves with the same one), serves xDS with a certificate it issues
itself, and gives each Gateway's proxies a client certificate whose URI SAN
names that Gateway (`spiffe://portico.dev/gateway/<namespace>/<name>`). The xDS
server serves a connection only the group its certificate names
(`portico.xds.server`): an Envoy holding another Gateway's certificate gets
nothing. Keys are EC P-256; certificates last a year (CA: ten) and are issued
again when the CA changes.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SPIFFE_PREFIX = "spiffe://portico.dev/gateway/"


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def gateway_identity(group: str) -> str:
    """The URI SAN of a Gateway's proxies; `group` is "<namespace>/<name>"."""
    return SPIFFE_PREFIX + group


def group_of_identity(uri: str) -> str | None:
    return uri.removeprefix(SPIFFE_PREFIX) if uri.startswith(SPIFFE_PREFIX) else None


class CertificateAuthority:
    def __init__(self, pair: KeyPair) -> None:
        self.pair = pair
        self._cert = x509.load_pem_x509_certificate(pair.cert_pem)
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._key = key

    @classmethod
    def create(cls, name: str = "portico xDS CA") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)))

    @property
    def cert_pem(self) -> bytes:
        return self.pair.cert_pem

    def issue_server(self, dns_names: list[str], ips: list[str] = ()) -> KeyPair:  # type: ignore[assignment]
        import ipaddress

        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        return self._issue(dns_names[0] if dns_names else "portico-xds", names, ExtendedKeyUsageOID.SERVER_AUTH)

    def issue_client(self, group: str) -> KeyPair:
        """A Gateway's proxy certificate, naming its xDS group."""
        return self._issue(group[-64:], [x509.UniformResourceIdentifier(gateway_identity(group))],
                           ExtendedKeyUsageOID.CLIENT_AUTH)

    def _issue(self, common_name: str, names: list[x509.GeneralName], usage: x509.ObjectIdentifier) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                .issuer_name(self._cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=365))
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(self._key, hashes.SHA256()))
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
