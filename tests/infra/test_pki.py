"""Which xDS certificates the CA keeps (`CertificateAuthority.keeps`): the rule that lets a
restarted controller or a new leader reuse a Gateway's certificate, and renews it in the
last third of its lifetime."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509

from portico.infra.pki import LEAF_LIFETIME, CAExpired, CertificateAuthority, KeyPair

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


def test_a_fresh_certificate_of_this_ca_for_this_gateway_is_kept() -> None:
    ca = CertificateAuthority.create()
    issued = datetime.datetime.now(datetime.UTC)  # not NOW: collection may be minutes before this test runs
    pair = ca.issue_client("apps/gw")
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    assert cert.not_valid_after_utc - issued == pytest.approx(LEAF_LIFETIME, abs=datetime.timedelta(minutes=1))
    assert ca.keeps(pair, group="apps/gw")
    assert not ca.keeps(pair, group="apps/other")  # names another Gateway
    assert not CertificateAuthority.create().keeps(pair, group="apps/gw")  # another CA's
    other_key = ca.issue_client("apps/gw").key_pem
    assert not ca.keeps(KeyPair(pair.cert_pem, other_key), group="apps/gw")  # not its key
    assert not ca.keeps(KeyPair(b"garbage", pair.key_pem), group="apps/gw")


def test_renewed_in_the_last_third_of_its_lifetime() -> None:
    ca = CertificateAuthority.create()
    pair = ca.issue_client("apps/gw")
    assert ca.keeps(pair, group="apps/gw", now=NOW + 59 * DAY)
    assert not ca.keeps(pair, group="apps/gw", now=NOW + 61 * DAY)
    assert not ca.keeps(pair, group="apps/gw", now=NOW + 91 * DAY)  # expired


def test_a_server_certificate_must_name_every_name() -> None:
    ca = CertificateAuthority.create()
    pair = ca.issue_server(["portico-xds.portico-system.svc", "localhost"], ["127.0.0.1"])
    assert ca.keeps(pair, dns_names=["portico-xds.portico-system.svc"])
    assert not ca.keeps(pair, dns_names=["portico-xds.other.svc"])


def test_no_leaf_outlives_the_ca() -> None:
    ca = CertificateAuthority.create(ca_lifetime=10 * DAY)
    cert = x509.load_pem_x509_certificate(ca.issue_client("apps/gw").cert_pem)
    assert cert.not_valid_after_utc == ca.expires
    with pytest.raises(CAExpired, match="expired"):
        ca.issue_client("apps/gw", now=NOW + 11 * DAY)
