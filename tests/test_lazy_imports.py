"""What `portico run` loads at start: libraries only some configurations need are
imported where they are used (issue 30 item 6: the process with no routes was 110 MiB)."""

from __future__ import annotations

import subprocess
import sys

STANDALONE = "import portico.cli, portico.standalone, portico.runtime, portico.admin"


def loaded(code: str, modules: tuple[str, ...]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", f"import sys; {code}; "
                          f"print(' '.join(m for m in {modules!r} if m in sys.modules))"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return out.split()


def test_standalone_without_tls_does_not_load_cryptography() -> None:
    assert loaded(STANDALONE, ("cryptography",)) == []


def test_certificates_and_keys_are_still_read() -> None:
    """(cryptography imported inside the functions that read them)"""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from portico.translator.secrets import key_pair_problem, valid_certificates
    from portico.translator.tlsoverlap import dns_names

    def pair(curve: ec.EllipticCurve) -> tuple[str, str]:
        key = ec.generate_private_key(curve)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.example")]), critical=False)
                .sign(key, hashes.SHA256()))
        return (cert.public_bytes(serialization.Encoding.PEM).decode(),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode())

    cert, key = pair(ec.SECP256R1())
    other_cert, other_key = pair(ec.SECP256K1())
    assert valid_certificates(cert) and not valid_certificates("nope")
    assert key_pair_problem(cert, key) == ""
    assert key_pair_problem(cert, other_key) == "tls.key does not match the certificate in tls.crt"
    assert key_pair_problem(other_cert, other_key) == \
        "the ECDSA curve secp256k1 is not supported (P-256, P-384 or P-521)"
    assert dns_names(cert) == ("a.example",)
