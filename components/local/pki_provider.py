"""FabricCa and NodeCertificate: the fabric's PKI, made by the stack.

The keys exist only as Pulumi secrets (encrypted in state) and in the agents'
private directories; `dataplane.pki` does the cryptography. Nothing here
touches the kernel, so `read` returns the stored state and `delete` forgets it.
"""
from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource

from components.local.provider_base import LocalProvider
from dataplane import pki

_OUTS = frozenset({"cert_pem", "key_pem"})


class FabricCaProvider(LocalProvider):
    """Makes one self-signed fabric CA; id is the fabric name."""

    OUTPUT_KEYS = _OUTS

    def create(self, props: dict[str, Any]) -> CreateResult:
        ca = pki.create_ca(props["fabric"], valid_days=int(props["valid_days"]))
        outs = {**props, "cert_pem": ca.cert_pem.decode(), "key_pem": ca.key_pem.decode()}
        return CreateResult(id_=props["fabric"], outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_=id_, outs=dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Nothing outside the state holds the CA."""


class NodeCertificateProvider(LocalProvider):
    """Issues one node certificate from the fabric CA; id is the identity."""

    OUTPUT_KEYS = _OUTS

    def create(self, props: dict[str, Any]) -> CreateResult:
        ca = pki.KeyPair(props["ca_cert_pem"].encode(), props["ca_key_pem"].encode())
        node = pki.issue(ca, props["identity"], valid_days=int(props["valid_days"]))
        outs = {**props, "cert_pem": node.cert_pem.decode(), "key_pem": node.key_pem.decode()}
        return CreateResult(id_=props["identity"], outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_=id_, outs=dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Nothing outside the state holds the certificate."""


_SECRET_OPTS = pulumi.ResourceOptions(additional_secret_outputs=["key_pem", "ca_key_pem"])


class FabricCa(Resource, module="local", name="FabricCa"):
    """The fabric CA: `cert_pem` in clear, `key_pem` a secret."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]

    def __init__(self, resource_name: str, *, fabric: str, valid_days: int = 3650,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"fabric": fabric, "valid_days": valid_days, "cert_pem": None, "key_pem": None}
        super().__init__(FabricCaProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, _SECRET_OPTS))


class NodeCertificate(Resource, module="local", name="NodeCertificate"):
    """A node certificate whose URI SAN is `identity`, signed by `ca`; `key_pem` is a secret."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]

    def __init__(self, resource_name: str, *, ca: FabricCa, identity: str, valid_days: int = 365,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"identity": identity, "valid_days": valid_days, "ca_cert_pem": ca.cert_pem,
                 "ca_key_pem": pulumi.Output.secret(ca.key_pem), "cert_pem": None, "key_pem": None}
        super().__init__(NodeCertificateProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, _SECRET_OPTS))
