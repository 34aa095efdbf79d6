"""The xDS certificate authority of Kubernetes mode.

xDS carries TLS private keys, so Envoy pods reach the controller over mutual
TLS only: the controller keeps a CA (in a Secret of its namespace, so every
replica serves with the same one), serves xDS with a certificate it issues
itself, and gives each Gateway's proxies a client certificate whose URI SAN
names that Gateway (`spiffe://portico.dev/gateway/<namespace>/<name>`). The xDS
server serves a connection only the group its certificate names
(`portico.xds.server`): an Envoy holding another Gateway's certificate gets
nothing. Keys are EC P-256.

Lifetimes and rotation. Client and server certificates last 90 days
(`LEAF_LIFETIME`) and are replaced once less than a third of their lifetime is
left (`CertificateAuthority.keeps`), so a rotation happens about every 60 days
and a missed one leaves a month to notice. A certificate is kept, across
controller runs and leader changes, while it is valid, signed by the current CA
and names what it should: re-issuing on every run would change each Gateway's
Secret on every leader change. Envoy reads its client certificate and the CA
through file-based SDS on the mounted Secret (`portico.infra.kubernetes`), so a
new certificate is used for the next xDS connection without a restart; the xDS
server swaps its own certificate for new handshakes (grpc's dynamic server
credentials, `portico.xds.server`).

The CA lasts ten years and is never re-created while its Secret exists: every
replica and every Envoy trusts it. A leaf never outlives the CA (its notAfter is
capped at the CA's), so in the CA's last 90 days leaves get shorter and are
replaced more often, and the controller warns (`CA_WARNING`). Once the CA has
expired no Envoy can connect (each keeps serving its last configuration). The
operator replaces it by deleting the CA Secret and restarting the controller's
replicas together: the first creates a new CA, every Gateway's Secret gets a
certificate of it with the new `ca.crt` in the same update (Envoy reloads both
at once), and Envoys reconnect once the kubelet has synced their Secret (about
a minute). The README (Run on Kubernetes, "The CA") says the same.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SPIFFE_PREFIX = "spiffe://portico.dev/gateway/"
CA_LIFETIME = datetime.timedelta(days=3650)
LEAF_LIFETIME = datetime.timedelta(days=90)
RENEW_FRACTION = 3  # a leaf is replaced once less than 1/RENEW_FRACTION of its lifetime is left
CA_WARNING = datetime.timedelta(days=90)  # the controller warns this long before the CA expires
BACKDATE = datetime.timedelta(minutes=5)  # clocks a little behind the controller's accept a new leaf


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def gateway_identity(group: str) -> str:
    """The URI SAN of a Gateway's proxies; `group` is "<namespace>/<name>"."""
    return SPIFFE_PREFIX + group


def group_of_identity(uri: str) -> str | None:
    return uri.removeprefix(SPIFFE_PREFIX) if uri.startswith(SPIFFE_PREFIX) else None


class CAExpired(RuntimeError):
    """The CA can issue nothing more (see the module docstring for what the operator does)."""


class CertificateAuthority:
    def __init__(self, pair: KeyPair, lifetime: datetime.timedelta = LEAF_LIFETIME) -> None:
        self.pair = pair
        self.lifetime = lifetime  # of the leaves it issues
        self._cert = x509.load_pem_x509_certificate(pair.cert_pem)
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._key = key

    @classmethod
    def create(cls, name: str = "portico xDS CA", lifetime: datetime.timedelta = LEAF_LIFETIME,
               ca_lifetime: datetime.timedelta = CA_LIFETIME) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE)
                .not_valid_after(now + ca_lifetime)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)), lifetime)

    @property
    def cert_pem(self) -> bytes:
        return self.pair.cert_pem

    @property
    def expires(self) -> datetime.datetime:
        return self._cert.not_valid_after_utc

    def issue_server(self, dns_names: Sequence[str], ips: Sequence[str] = (), *,
                     now: datetime.datetime | None = None) -> KeyPair:
        """The xDS server's certificate; `now`: as if issued then (tests of renewal)."""
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        return self._issue(dns_names[0] if dns_names else "portico-xds", names, ExtendedKeyUsageOID.SERVER_AUTH,
                           now)

    def issue_client(self, group: str, *, now: datetime.datetime | None = None) -> KeyPair:
        """A Gateway's proxy certificate, naming its xDS group; `now`: as if issued then."""
        return self._issue(group[-64:], [x509.UniformResourceIdentifier(gateway_identity(group))],
                           ExtendedKeyUsageOID.CLIENT_AUTH, now)

    def keeps(self, pair: KeyPair, *, group: str | None = None, dns_names: Sequence[str] = (),
              now: datetime.datetime | None = None) -> bool:
        """Whether `pair` may go on being used now (see `renew_at`)."""
        at = self.renew_at(pair, group=group, dns_names=dns_names)
        now = now or _now()
        return at is not None and now < at

    def renew_at(self, pair: KeyPair, *, group: str | None = None,
                 dns_names: Sequence[str] = ()) -> datetime.datetime | None:
        """When `pair` is to be replaced: once a third of its lifetime is left. None when it
        may not be used at all: it does not parse, its key is not its certificate's, this CA
        did not sign it, or it does not name `group` (a client's) or each of `dns_names` (a
        server's)."""
        try:
            cert = x509.load_pem_x509_certificate(pair.cert_pem)
            key = serialization.load_pem_private_key(pair.key_pem, password=None)
            if cert.public_key() != key.public_key():
                return None
            cert.verify_directly_issued_by(self._cert)
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            return None
        if group is not None and gateway_identity(group) not in names.get_values_for_type(
                x509.UniformResourceIdentifier):
            return None
        if not set(dns_names) <= set(names.get_values_for_type(x509.DNSName)):
            return None
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        return end - (end - start) / RENEW_FRACTION

    def _issue(self, common_name: str, names: list[x509.GeneralName], usage: x509.ObjectIdentifier,
               now: datetime.datetime | None = None) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = now or _now()
        # never beyond the CA: a leaf the CA no longer vouches for would fail at the CA's expiry anyway
        end = min(now + self.lifetime, self.expires)
        if end <= now:
            raise CAExpired(f"the xDS CA expired on {self.expires:%Y-%m-%d}: replace it (README, Run on Kubernetes, "
                            "The CA: delete its Secret and restart the controller's replicas)")
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                .issuer_name(self._cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE)
                .not_valid_after(end)
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
