"""Fabric PKI: a CA per fabric and node certificates whose URI SAN is the identity.

The agent trusts exactly one thing: a chain to the fabric CA plus the expected
URI identity. ECDSA P-256 keeps handshakes cheap (time to first byte). The local
environment uses these helpers to mint its CA and one certificate per node.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key (the key is a secret: never log it)."""

    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:
        return f"KeyPair(cert={identities(self.cert_pem)!r}, key=<secret>)"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def create_ca(fabric: str, *, valid_days: int = 3650) -> KeyPair:
    """Make a self-signed fabric CA that may only sign end-entity certificates."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{fabric} fabric CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(ca: KeyPair, identity: str, *, valid_days: int = 365) -> KeyPair:
    """Issue a node certificate with `identity` as its only URI SAN, for client and server use."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    key = _new_key()
    now = _now()
    node = identity.rsplit("/", 1)[-1]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False  # type: ignore[arg-type]
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def identities(cert_pem: bytes) -> list[str]:
    """The URI SANs of a PEM certificate."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def serial_hex(cert_pem: bytes) -> str:
    """The certificate's serial number as the denylist writes it: upper-case hex, no leading zeros."""
    return format(x509.load_pem_x509_certificate(cert_pem).serial_number, "X")


def write_node_files(directory: str | Path, ca_cert_pem: bytes, node: KeyPair, *, stem: str = "node") -> tuple[Path, Path, Path]:
    """Write ca.pem, <stem>.pem and <stem>.key (mode 0600, created private) and return their paths."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    ca_path = folder / "ca.pem"
    cert_path = folder / f"{stem}.pem"
    key_path = folder / f"{stem}.key"
    ca_path.write_bytes(ca_cert_pem)
    cert_path.write_bytes(node.cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(node.key_pem)
    os.chmod(key_path, 0o600)
    return ca_path, cert_path, key_path
