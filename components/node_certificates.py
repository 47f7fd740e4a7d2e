"""NodeCertificate: a cloud node's key and certificate, issued by the stack program from the fabric CA.

A Pulumi dynamic resource, so a node's key is made once, kept in state as a
secret and re-issued only when its identity or the CA changes, or when the
certificate is within `RENEW_DAYS` of expiry (the next `pulumi up` replaces it,
and the serial it exposes rolls the VMs that booted with the old one).
`dataplane.pki` does the cryptography, the same code the `local` target and
the tests use, so the agent's own checks (one URI SAN, chain to the fabric CA)
hold by construction. The CA key arrives as a secret input and is never
echoed into outputs; the node key leaves only as the secret output `key_pem`.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, ResourceProvider
from pulumi.runtime import rpc

from components.fabric_ca import FabricCa
from dataplane import pki

RENEW_DAYS = 30
"""A certificate this close to its end is replaced on the next `pulumi up`."""
_KEPT = ("identity", "ca_cert_pem", "valid_days")
"""The inputs a certificate depends on (the CA key follows the CA certificate)."""


MISMATCH = "the fabric CA key (transit:fabricCaKey) does not belong to its certificate (transit:fabricCaCert)"


def _issuing_ca(props: dict[str, Any]) -> pki.KeyPair:
    """The CA that signs (the first certificate of the chain) with its key; ValueError when the key is not its own."""
    issuing = x509.load_pem_x509_certificates(props["ca_cert_pem"].encode())[0]
    try:
        key = serialization.load_pem_private_key(props["ca_key_pem"].encode(), password=None)
    except ValueError:
        raise ValueError("the fabric CA key (transit:fabricCaKey) is not a PEM private key without a passphrase") from None
    if key.public_key() != issuing.public_key():
        raise ValueError(MISMATCH)
    return pki.KeyPair(issuing.public_bytes(serialization.Encoding.PEM), props["ca_key_pem"].encode())


class NodeCertificateProvider(ResourceProvider):
    """Issues one node certificate; its id is the certificate's serial."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """Run by the engine before every preview and update: a CA key that is not the certificate's fails there."""
        if any(not isinstance(news.get(k), str) or news[k] == rpc.UNKNOWN for k in ("ca_cert_pem", "ca_key_pem")):
            return CheckResult(news, [])  # a CA from another resource's output is not known in a preview: create checks it
        try:
            _issuing_ca(news)
        except ValueError as exc:
            return CheckResult(news, [CheckFailure("ca_key_pem", str(exc))])
        return CheckResult(news, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        node = pki.issue(_issuing_ca(props), props["identity"], valid_days=int(props["valid_days"]))
        serial = pki.serial_hex(node.cert_pem)
        outs = {k: props[k] for k in _KEPT}
        return CreateResult(id_=serial, outs={**outs, "cert_pem": node.cert_pem.decode(), "key_pem": node.key_pem.decode(), "serial": serial})

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in _KEPT if olds.get(k) != news.get(k)]
        if not changed and _expiring(olds.get("cert_pem")):
            changed = ["cert_pem"]
        return DiffResult(changes=bool(changed), replaces=changed, stables=[], delete_before_replace=False)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_=id_, outs=dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Nothing outside the state holds the certificate (its parameters are their own resources)."""


def _expiring(cert_pem: str | None) -> bool:
    if not cert_pem:
        return False
    end = x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc
    return end - dt.datetime.now(dt.timezone.utc) < dt.timedelta(days=RENEW_DAYS)


class NodeCertificate(Resource, module="pki", name="NodeCertificate"):
    """A node certificate whose only URI SAN is `identity`, signed by the fabric CA; `key_pem` is a secret."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    serial: pulumi.Output[str]

    def __init__(
        self, resource_name: str, *, identity: str, ca: FabricCa, valid_days: int = 365, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props = {
            "identity": identity, "valid_days": valid_days, "ca_cert_pem": ca.cert_pem, "ca_key_pem": pulumi.Output.secret(ca.key_pem),
            "cert_pem": None, "key_pem": None, "serial": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["key_pem", "ca_key_pem"])
        super().__init__(NodeCertificateProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret))
        # The engine marks key_pem secret (additional_secret_outputs); say so in the program too, whatever engine runs it.
        self.key_pem = pulumi.Output.secret(self.key_pem)
