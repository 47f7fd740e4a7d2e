"""A fake AWS account for Pulumi mocks: computed outputs per resource type and answers to the data calls.

Shared by the component tests (tests/component/conftest.py) and bench/aws_scale.py,
so both build the same program against the same account. Mocks stand in for the
cloud, which cannot be reached here.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
from pulumi.dynamic import ResourceProvider
from pulumi.runtime import rpc

from components.fabric_ca import FabricCa
from components.node_certificates import NodeCertificateProvider


class FakeCloud(pulumi.runtime.Mocks):
    """Ids are `<name>-id`; computed outputs are faked per resource type."""

    COMPUTED: dict[str, Callable[[str], dict[str, Any]]] = {
        "aws:ec2/eip:Eip": lambda n: {"publicIp": f"203.0.113.{sum(map(ord, n)) % 250 + 1}", "allocationId": f"{n}-alloc"},
        "aws:ec2/vpcEndpointService:VpcEndpointService": lambda n: {"serviceName": f"com.amazonaws.vpce.mock.{n}"},
        "aws:lb/loadBalancer:LoadBalancer": lambda n: {"dnsName": f"{n}.elb.mock"},
        "aws:ec2/launchTemplate:LaunchTemplate": lambda n: {"latestVersion": 3},
        "aws:directconnect/connectionConfirmation:ConnectionConfirmation": lambda n: {},
        # A hosted connection read back (Connection.get): the partner's VLAN.
        "aws:directconnect/connection:Connection": lambda n: {"vlanId": FakeCloud.HOSTED_VLAN},
    }
    HOSTED_VLAN = 101
    """The VLAN the partner set on every hosted connection (the example fabrics' circuits use 101)."""

    DYNAMIC: dict[str, ResourceProvider] = {"pulumi-python:dynamic/pki:NodeCertificate": NodeCertificateProvider()}
    """Dynamic providers of the program's own (the certificate issuer, dataplane.pki), run for real as the engine would."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ in self.DYNAMIC:
            # The engine hands a dynamic provider plain values; the mock monitor still wraps secrets.
            props = {k: rpc.unwrap_rpc_secret(v) if rpc.is_rpc_secret(v) else v for k, v in args.inputs.items() if k != "__provider"}
            provider = self.DYNAMIC[args.typ]
            failures = provider.check({}, props).failures
            if failures:
                raise ValueError("; ".join(f"{f.property}: {f.reason}" for f in failures))
            created = provider.create(props)
            return created.id, dict(created.outs or {})
        outputs = {**args.inputs, "arn": f"arn:aws:mock::123456789012:{args.name}"}
        outputs.update(self.COMPUTED.get(args.typ, lambda n: {})(args.name))
        return (f"{args.name}-id" if args.custom else "", outputs)

    ZONE_LETTERS = "abc"
    """Zones every mocked region has, as region + letter (a test may give a region other names)."""

    CALLS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "aws:index/getAvailabilityZones:getAvailabilityZones": lambda a: {
            "names": [f"{a['region']}{letter}" for letter in FakeCloud.ZONE_LETTERS], "id": a["region"],
        },
        "aws:index/getCallerIdentity:getCallerIdentity": lambda a: {
            "accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/ci", "userId": "AIDA", "id": "123456789012",
        },
    }

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return self.CALLS.get(args.token, lambda a: {})(dict(args.args))


def _fixed_ca() -> tuple[str, str]:
    """The mocked fabrics' CA: a P-256 key from a constant and a deterministically signed certificate, identical in every
    run (so the mock-graph goldens pin it). A test fixture only: its key is public."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.derive_private_key(0x7E57_CA, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mocked fabric CA (test fixture)")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(0x7E57)
        .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)).not_valid_after(dt.datetime(2046, 1, 1, tzinfo=dt.timezone.utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


TEST_CA_CERT, TEST_CA_KEY = _fixed_ca()


def fabric_ca() -> FabricCa:
    """The fixture CA as a stack would hold it: the certificate in clear, the key a secret Output (call inside a program)."""
    return FabricCa(cert_pem=TEST_CA_CERT, key_pem=pulumi.Output.secret(TEST_CA_KEY))
