"""Fabric PKI: CA constraints, URI identities, private key files."""
from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509

from dataplane import pki


def test_node_certificate_carries_identity_and_chains_to_ca() -> None:
    ca = pki.create_ca("acme")
    node = pki.issue(ca, "spiffe://acme/edge-a")
    assert pki.identities(node.cert_pem) == ["spiffe://acme/edge-a"]
    cert = x509.load_pem_x509_certificate(node.cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(ca_cert)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_repr_never_shows_the_key() -> None:
    node = pki.issue(pki.create_ca("acme"), "spiffe://acme/n1")
    assert b"PRIVATE KEY" in node.key_pem
    assert "PRIVATE" not in repr(node) and "secret" in repr(node)


def test_key_file_is_private(tmp_path: Path) -> None:
    ca = pki.create_ca("acme")
    _, cert_path, key_path = pki.write_node_files(tmp_path / "n", ca.cert_pem, pki.issue(ca, "spiffe://acme/n"))
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert cert_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE")
