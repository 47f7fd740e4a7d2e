"""The program's certificate issuer and the fabric CA checks, run for real (dataplane.pki does the cryptography)."""
from __future__ import annotations

import pytest
from cryptography import x509
from pulumi.runtime import rpc

from components.fabric_ca import cert_problems
from components.node_certificates import NodeCertificateProvider
from dataplane import pki

CA = pki.create_ca("acme")
PROPS = {"identity": "spiffe://acme/edge-a", "valid_days": 365, "ca_cert_pem": CA.cert_pem.decode(), "ca_key_pem": CA.key_pem.decode()}


def test_issues_a_certificate_for_the_identity_signed_by_the_ca_and_never_echoes_the_ca_key() -> None:
    created = NodeCertificateProvider().create(dict(PROPS))
    cert = x509.load_pem_x509_certificate(created.outs["cert_pem"].encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(CA.cert_pem))
    assert pki.identities(created.outs["cert_pem"].encode()) == ["spiffe://acme/edge-a"]
    assert created.id == created.outs["serial"] == pki.serial_hex(created.outs["cert_pem"].encode())
    assert CA.key_pem.decode() not in str(created.outs)


def test_a_ca_key_that_is_not_the_certificates_fails_the_check_the_engine_runs_before_preview_and_up() -> None:
    wrong = {**PROPS, "ca_key_pem": pki.create_ca("other").key_pem.decode()}
    [failure] = NodeCertificateProvider().check({}, wrong).failures
    assert failure.property == "ca_key_pem" and "does not belong to its certificate" in failure.reason
    assert NodeCertificateProvider().check({}, dict(PROPS)).failures == []
    assert NodeCertificateProvider().check({}, {**PROPS, "ca_key_pem": rpc.UNKNOWN}).failures == []  # unknown in a preview
    with pytest.raises(ValueError, match="does not belong to its certificate"):
        NodeCertificateProvider().create(wrong)


def test_a_new_identity_or_ca_replaces_and_a_certificate_near_its_end_is_renewed() -> None:
    provider = NodeCertificateProvider()
    olds = provider.create(dict(PROPS)).outs
    assert not provider.diff("1", olds, dict(PROPS)).changes
    assert provider.diff("1", olds, {**PROPS, "identity": "spiffe://acme/edge-b"}).replaces == ["identity"]
    assert provider.diff("1", olds, {**PROPS, "ca_cert_pem": pki.create_ca("acme").cert_pem.decode()}).replaces == ["ca_cert_pem"]
    short = provider.create({**PROPS, "valid_days": 10}).outs
    assert provider.diff("1", short, {**PROPS, "valid_days": 10}).replaces == ["cert_pem"]


def test_the_fabric_ca_must_be_a_ca_certificate_valid_now() -> None:
    assert cert_problems(CA.cert_pem.decode()) == []
    assert "not a PEM certificate" in cert_problems("nope")[0]
    assert "is not a CA certificate" in cert_problems(pki.issue(CA, "spiffe://acme/x").cert_pem.decode())[0]
