"""SecurityPolicy authorization on the client certificate (principal.clientCertificate) by
real TLS requests through real Envoy: client certificates made here (URI SANs, DNS SANs,
a subject only; one of a CA the Gateway does not trust), a table of certificates × rules
→ 200/403 on a strict mTLS listener and on an AllowInsecureFallback one (where a
certificate of another CA is accepted by the handshake but verifies nothing)."""

from __future__ import annotations

import datetime
import http.client
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import free_port, gateway_address, start, stop, wait_for, write_atomically

pytestmark = pytest.mark.timeout(180)
NS = "shop"
HOST = "mtls.example.com"


@dataclass
class Issuer:
    """A CA of client certificates (cryptography: trustme makes no URI SANs)."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def make(cls, name: str) -> Issuer:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, tmp: Path, label: str, subject: list[tuple[x509.ObjectIdentifier, str]],
              uris: tuple[str, ...] = (), dns: tuple[str, ...] = ()) -> Path:
        """A client certificate and its key, in one PEM file (for ssl's load_cert_chain)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(o, v) for o, v in subject]))
                   .issuer_name(self.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        names = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        path = tmp / f"{label}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return path


@dataclass
class Env:
    dir: Path
    ip: str
    strict: int  # port of the mTLS listener
    fallback: int  # port of the AllowInsecureFallback one
    server_ca: trustme.CA
    certs: dict[str, Path]

    def status(self, port: int, cert: str | None, path: str) -> Any:
        """The answer's status, or "refused" when the handshake fails."""
        ctx = ssl.create_default_context()
        self.server_ca.configure_trust(ctx)
        if cert is not None:
            ctx.load_cert_chain(self.certs[cert])
        try:
            with socket.create_connection((self.ip, port), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname=HOST) as s:
                conn = http.client.HTTPConnection(HOST)
                conn.sock = s
                conn.request("GET", path, headers={"Host": HOST})
                resp = conn.getresponse()
                resp.read()
                return resp.status
        except (ssl.SSLError, ConnectionError, http.client.HTTPException):
            return "refused"


RULES = [
    {"name": "orders-service", "action": "Allow", "operation": {"paths": ["/m/orders/*"]},
     "principal": {"clientCertificate": {"names": [{"value": "spiffe://shop.example/sa/orders"}]}}},
    {"name": "no-interns", "action": "Deny",
     "principal": {"clientCertificate": {"names": [{"type": "RegularExpression", "value": ".*OU=interns.*"}]}}},
    {"name": "billing", "action": "Allow",
     "principal": {"clientCertificate": {"names": [{"type": "Suffix", "value": ".billing.internal"}]}}},
    {"name": "carol", "action": "Allow",
     "principal": {"clientCertificate": {"names": [{"type": "Prefix", "value": "CN=carol,"}]}}},
    {"name": "any-verified", "action": "Allow", "operation": {"paths": ["/m/health"]},
     "principal": {"clientCertificate": {}}},
]
# (listener, certificate, path) -> status: the first matching rule decides, else Deny
TABLE: list[tuple[str, str | None, str, Any]] = [
    ("strict", "orders", "/m/orders/1", 200),  # its URI SAN
    ("strict", "orders", "/m/other", 403),  # orders-service is for /m/orders/* only
    ("strict", "billing", "/m/other", 200),  # a DNS SAN (no URI SAN)
    ("strict", "carol", "/m/other", 200),  # no SAN: the subject, RFC 2253
    ("strict", "intern", "/m/other", 403),  # no-interns comes before billing
    ("strict", "dave", "/m/other", 403),  # verified, no rule names it
    ("strict", "dave", "/m/health", 200),  # any verified certificate
    ("strict", None, "/m/health", "refused"),  # the handshake wants a certificate
    ("strict", "rogue", "/m/orders/1", "refused"),  # another CA's
    ("fallback", "orders", "/m/orders/1", 200),
    ("fallback", None, "/m/health", 403),  # no certificate: none verified
    ("fallback", "rogue", "/m/orders/1", 403),  # the right URI SAN, an untrusted CA: not verified
    ("fallback", "rogue", "/m/health", 403),
    ("fallback", "dave", "/m/health", 200),
]


def manifests(env: Env, echo_port: int, client_ca: Issuer) -> list[dict[str, Any]]:
    import base64

    server = env.server_ca.issue_cert(HOST)
    listener = [{"name": name, "port": port, "protocol": "HTTPS", "hostname": HOST,
                 "tls": {"certificateRefs": [{"name": "server-cert"}]}} for name, port in (("strict", 443),
                                                                                        ("fallback", 8443))]
    validation = {"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "client-ca"}]}
    return [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portico"},
         "spec": {"controllerName": "portico.dev/gateway-controller"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": "server-cert", "namespace": NS},
         "data": {"tls.crt": base64.b64encode(b"".join(b.bytes() for b in server.cert_chain_pems)).decode(),
                  "tls.key": base64.b64encode(server.private_key_pem.bytes()).decode()}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "client-ca", "namespace": NS},
         "data": {"ca.crt": client_ca.pem()}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
         "spec": {"gatewayClassName": "portico", "listeners": listener,
                  "tls": {"frontend": {"default": {"validation": validation}, "perPort": [
                      {"port": 8443, "tls": {"validation": {**validation, "mode": "AllowInsecureFallback"}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
         "spec": {"ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web", "namespace": NS, "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.0.1"]}],
         "ports": [{"name": "http", "port": echo_port, "protocol": "TCP"}]},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "m", "namespace": NS},
         "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [HOST],
                  "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/m"}}],
                             "backendRefs": [{"name": "web", "port": 80}]}]}},
        {"apiVersion": "gateway.portico.dev/v1alpha1", "kind": "SecurityPolicy",
         "metadata": {"name": "m", "namespace": NS},
         "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "m"}],
                  "authorization": {"defaultAction": "Deny", "rules": RULES}}},
    ]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("mtls")
    (tmp / "manifests").mkdir()
    client_ca, rogue_ca = Issuer.make("clients"), Issuer.make("rogue")
    cn, org, ou = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME
    certs = {
        "orders": client_ca.issue(tmp, "orders", [(cn, "orders")], uris=("spiffe://shop.example/sa/orders",),
                                  dns=("orders.internal",)),
        "billing": client_ca.issue(tmp, "billing", [(cn, "billing")], dns=("pay.billing.internal",)),
        "carol": client_ca.issue(tmp, "carol", [(org, "Shop"), (cn, "carol")]),
        "intern": client_ca.issue(tmp, "intern", [(ou, "interns"), (cn, "ian")], dns=("ian.billing.internal",)),
        "dave": client_ca.issue(tmp, "dave", [(cn, "dave")]),
        "rogue": rogue_ca.issue(tmp, "rogue", [(cn, "orders")], uris=("spiffe://shop.example/sa/orders",)),
    }
    echo_port, admin, offset = free_port(), free_port(), free_port() - 8443
    echo = start(["echo", "--port", str(echo_port), "--name", "web"], tmp / "echo.log")
    env = Env(tmp / "manifests", "", 443 + offset, 8443 + offset, trustme.CA(), certs)
    write_atomically(env.dir / "all.yaml", manifests(env, echo_port, client_ca))
    proc = start(["run", str(env.dir), "--admin-address", f"127.0.0.1:{admin}", "--port-offset", str(offset),
                  "--state-dir", str(tmp / "state")], tmp / "portico.log")

    try:
        env.ip = gateway_address(admin)
        yield env
    finally:
        stop(proc)
        stop(echo)


def test_the_subject_is_read_as_rfc_2253(env: Env) -> None:
    """(The "carol" rule's prefix is what Envoy reads as the subject: most specific first.)"""
    cert = x509.load_pem_x509_certificate(env.certs["carol"].read_bytes())
    assert cert.subject.rfc4514_string() == "CN=carol,O=Shop"


def test_client_certificate_rules_table(env: Env) -> None:
    wait_for("the mTLS listener", lambda: env.status(env.strict, "dave", "/m/health") == 200, 30)
    wait_for("the fallback listener", lambda: env.status(env.fallback, "dave", "/m/health") == 200, 30)
    ports = {"strict": env.strict, "fallback": env.fallback}
    got = [env.status(ports[listener], cert, path) for listener, cert, path, _ in TABLE]
    assert got == [expected for *_, expected in TABLE]
