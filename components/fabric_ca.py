"""The fabric CA that signs every cloud node's certificate, as a platform team holds it: in stack config.

`transit:fabricCaCert` holds the CA certificate (PEM; the issuing CA first,
then any CA above it), `transit:fabricCaKey` its private key as a Pulumi
secret (`pulumi config set --secret`), so the key is encrypted in the stack
file and in state and never a plain value of the program. `transit ca create`
makes a new pair with `dataplane.pki` (ECDSA P-256, path length 0). The
certificate is checked here, before any resource exists; the key is checked
against it where it is used (components.node_certificates), the only place its
value is read. Never imports Pulumi (the stack config reader is passed in).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509

CERT_CONFIG = "fabricCaCert"
"""Stack config key (under `transit:`) of the fabric CA certificate, PEM."""
KEY_CONFIG = "fabricCaKey"
"""Stack config key (under `transit:`) of the fabric CA private key, PEM, set with --secret."""
HOW = f"set transit:{CERT_CONFIG} (the CA certificate) and transit:{KEY_CONFIG} with --secret (its key); `transit ca create` makes a pair"


@dataclass(frozen=True)
class FabricCa:
    """The fabric CA: its certificate in clear, its key a Pulumi secret Output (never a plain string)."""

    cert_pem: str
    """The CA certificate, PEM (the issuing CA first, then any CA above it): what every agent trusts."""
    key_pem: Any
    """The CA private key: a Pulumi secret Output (pulumi.Config().require_secret)."""

    @classmethod
    def from_config(cls, config: Any) -> FabricCa | None:
        """The CA from stack config, or None when neither key is set (a problem for a target that needs it)."""
        cert = config.get(CERT_CONFIG)
        key = config.get_secret(KEY_CONFIG)
        return None if cert is None and key is None else cls(cert_pem=cert or "", key_pem=key)

    def problems(self) -> list[str]:
        """What is wrong with the certificate (and whether a key is given at all), checked before anything is created."""
        if self.key_pem is None or isinstance(self.key_pem, str):
            return [f"fabric CA: the key must be a Pulumi secret Output, never a plain string; {HOW}"]
        return cert_problems(self.cert_pem)


def cert_problems(cert_pem: str) -> list[str]:
    """Why `cert_pem` cannot be the fabric CA: not a PEM certificate, not a CA, or not valid now."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        return [f"transit:{CERT_CONFIG}: not a PEM certificate; {HOW}"]
    issuing = chain[0]
    try:
        ca = issuing.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca = False
    out = []
    if not ca:
        out.append(f"transit:{CERT_CONFIG}: {issuing.subject.rfc4514_string()} is not a CA certificate (basicConstraints CA:TRUE)")
    now = dt.datetime.now(dt.timezone.utc)
    if not issuing.not_valid_before_utc <= now <= issuing.not_valid_after_utc:
        out.append(f"transit:{CERT_CONFIG}: {issuing.subject.rfc4514_string()} is valid only from {issuing.not_valid_before_utc:%Y-%m-%d} to {issuing.not_valid_after_utc:%Y-%m-%d}")
    return out
