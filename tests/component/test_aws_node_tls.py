"""The AWS bootstrap contract, component side: every node's SSM parameters exist, are secret, come first, boot a node.

Seed 000 built through the Fabric under Pulumi mocks (no AWS account here);
the certificate issuer runs for real (testbed.fake_cloud runs the program's
own dynamic provider), so the parameter values in the mock state are the real
PEMs the boot step would fetch. The last test serves exactly those values
through the loopback IMDSv2/SSM of tests/unit/boot and boots from the
connector's real user data, then holds the written files to the agent's own
credential checks.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pulumi.runtime import rpc

from tests.component.conftest import RECORDER, Graph, build_graph

from components.aws import Connector  # noqa: E402  (mocks are set in conftest first)
from components.aws.options import AwsOptions
from components.fabric import Fabric, FabricArgs
from components.fabric_ca import FabricCa
from components.loader import load_spec
from dataplane import pki
from dataplane.boot import boot
from dataplane.boot_document import ITEMS, parse_document
from dataplane.boot_sources import Aws, Http
from dataplane.config import TlsPaths
from dataplane.tls import build_contexts, own_credential_problems
from testbed.fake_cloud import TEST_CA_CERT, TEST_CA_KEY, fabric_ca
from tests.component.test_aws_components import _connector_args
from tests.unit.boot.metadata_server import aws_server

SEED_000 = Path(__file__).resolve().parents[2] / "stacks" / "fabrics" / "seed000_aws_azure.yaml"
PARAMETER = "aws:ssm/parameter:Parameter"
NODES = {"aws-use1": "spiffe://aws-azure-transit/edge-aws-use1", "aws-app-connector": "spiffe://aws-azure-transit/connector-aws-app"}
"""Seed 000's AWS nodes (the fleet's name) and the identities their certificates must carry."""


def _build(**aws: Any) -> Graph:
    spec = load_spec(SEED_000)

    def build() -> dict[str, Any]:
        options = AwsOptions(fabric_ca=fabric_ca(), image_id="ami-0edge", **aws)
        fabric = Fabric(spec.name, FabricArgs(spec=spec, environment="dev", clouds=["aws"], options={"aws": options}))
        return dict(fabric.outputs)

    return build_graph(build)


@pytest.fixture(scope="module")
def seed_000() -> Graph:
    return _build()


def _plain(value: Any) -> Any:
    return rpc.unwrap_rpc_secret(value) if rpc.is_rpc_secret(value) else value


def _document(graph: Graph, node: str) -> Any:
    return parse_document(base64.b64decode(graph.by_name[f"{node}-lt"].inputs["userData"]))


def test_every_node_has_its_three_secure_string_parameters_where_its_boot_document_points(seed_000: Graph) -> None:
    for node in NODES:
        document = _document(seed_000, node)
        params = {r.name: r for r in seed_000.of_type(PARAMETER) if r.name.startswith(f"{node}-param-")}
        assert sorted(params) == sorted(f"{node}-param-{item}" for item in ITEMS)
        for item in ITEMS:
            param = params[f"{node}-param-{item}"]
            assert param.inputs["name"] == document.secrets.name(item) == f"/transit/aws-azure-transit/dev/{node}/{item}"
            assert param.inputs["type"] == "SecureString" and param.inputs["tier"] == "Standard"
            assert "keyId" not in param.inputs  # the AWS-managed aws/ssm key
            assert seed_000.parent_of(param.name).name == node


def test_parameter_values_are_secrets_in_the_mock_state_and_the_certificate_is_the_nodes_own(seed_000: Graph) -> None:
    ca = x509.load_pem_x509_certificate(TEST_CA_CERT.encode())
    for node, identity in NODES.items():
        values = {item: seed_000.by_name[f"{node}-param-{item}"].inputs["value"] for item in ITEMS}
        assert all(rpc.is_rpc_secret(v) for v in values.values()), node
        cert_pem, key_pem = _plain(values["cert"]).encode(), _plain(values["key"]).encode()
        assert _plain(values["ca"]) == TEST_CA_CERT
        assert pki.identities(cert_pem) == [identity]
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(ca)
        assert serialization.load_pem_private_key(key_pem, password=None).public_key() == cert.public_key()
        # The instances are tagged with the serial they boot with: a re-issued certificate rolls the group.
        tags = seed_000.by_name[f"{node}-lt"].inputs["tagSpecifications"][0]["tags"]
        assert tags["transit:certificate-serial"] == pki.serial_hex(cert_pem)


def test_the_parameter_outputs_are_secret_outputs() -> None:
    outputs: dict[str, Any] = {}

    def build() -> dict[str, Any]:
        connector = Connector("payments", _connector_args())
        outputs["parameters"] = connector.fleet.tls.parameters
        outputs["key"] = connector.fleet.tls.certificate.key_pem
        return {}

    build_graph(build)

    @pulumi.runtime.test
    def secretness() -> Any:
        async def check() -> None:
            for param in outputs["parameters"]:
                assert await param.value.is_secret(), param
            assert await outputs["key"].is_secret()
            assert not await outputs["parameters"][0].name.is_secret()

        return pulumi.Output.from_input(check())

    secretness()


def test_launch_template_and_group_wait_for_every_parameter(seed_000: Graph) -> None:
    for node in NODES:
        for item in ITEMS:
            assert seed_000.waits_for(f"{node}-lt", f"{node}-param-{item}"), (node, item)
            assert seed_000.waits_for(f"{node}-asg", f"{node}-param-{item}"), (node, item)


def test_no_key_appears_anywhere_but_as_a_secret_and_never_in_an_output(seed_000: Graph) -> None:
    keys = [_plain(r.inputs["value"]) for r in seed_000.of_type(PARAMETER) if r.name.endswith("-param-key")] + [TEST_CA_KEY]

    assert seed_000.in_plain(lambda text: "PRIVATE KEY" in text or any(k.strip() in text for k in keys)) == []
    outputs = json.dumps(seed_000.values, default=str)
    assert "PRIVATE KEY" not in outputs and not any(k.strip() in outputs for k in keys)


def test_the_role_reads_exactly_its_parameters_and_decrypts_with_a_customer_key_only_its_own() -> None:
    arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    graph = _build(parameter_kms_key_ids={"us-east-1": arn})
    policy = json.loads(graph.by_name["aws-app-connector-role-policy"].inputs["policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["ReadOwnParameters"]["Resource"] == [
        "arn:aws:ssm:*:*:parameter/transit/aws-azure-transit/dev/aws-app-connector",
        "arn:aws:ssm:*:*:parameter/transit/aws-azure-transit/dev/aws-app-connector/*",
    ]
    decrypt = statements["DecryptOwnParameters"]
    assert decrypt["Action"] == ["kms:Decrypt"] and decrypt["Resource"] == arn
    assert decrypt["Condition"]["StringLike"]["kms:EncryptionContext:PARAMETER_ARN"] == (
        "arn:aws:ssm:*:*:parameter/transit/aws-azure-transit/dev/aws-app-connector/*"
    )
    assert all(r.inputs["keyId"] == arn for r in graph.of_type(PARAMETER))


def test_the_default_key_needs_no_kms_statement(seed_000: Graph) -> None:
    policy = json.loads(seed_000.by_name["aws-use1-role-policy"].inputs["policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["ReadOwnParameters", "DisableSourceDestCheckOnOwnRole"]


@pytest.mark.parametrize(
    ("aws", "message"),
    [
        ({"fabric_ca": None}, "aws.fabric_ca is required"),
        ({"fabric_ca": FabricCa(cert_pem=TEST_CA_CERT, key_pem=TEST_CA_KEY)}, "must be a Pulumi secret Output"),
        ({"fabric_ca": "leaf"}, "is not a CA certificate"),
        ({"fabric_ca": "huge"}, "an SSM parameter holds at most 8192"),
        ({"parameter_kms_key_ids": {"us-east-1": "arn:aws:kms:eu-west-1:1:key/x"}}, "give the ARN of a key in us-east-1"),
    ],
)
def test_a_missing_or_unusable_ca_or_key_is_refused_before_any_resource(aws: dict[str, Any], message: str) -> None:
    spec = load_spec(SEED_000)
    ca = pki.create_ca("other")

    def build() -> dict[str, Any]:
        options: dict[str, Any] = {"fabric_ca": fabric_ca(), **aws}
        if options["fabric_ca"] == "leaf":
            options["fabric_ca"] = FabricCa(cert_pem=pki.issue(ca, "spiffe://x/y").cert_pem.decode(), key_pem=pulumi.Output.secret("k"))
        if options["fabric_ca"] == "huge":
            options["fabric_ca"] = FabricCa(cert_pem=TEST_CA_CERT * 20, key_pem=pulumi.Output.secret("k"))
        Fabric(spec.name, FabricArgs(spec=spec, environment="dev", clouds=["aws"], options={"aws": AwsOptions(image_id="ami-1", **options)}))
        return {}

    with pytest.raises(ValueError, match=message):
        build_graph(build)
    assert RECORDER.registrations == []


def test_a_ca_chain_over_4096_bytes_goes_to_the_advanced_tier() -> None:
    spec = load_spec(SEED_000)
    chain = TEST_CA_CERT * 8  # about 5 KB: an RSA chain with intermediates gets there

    def build() -> dict[str, Any]:
        ca = FabricCa(cert_pem=chain, key_pem=pulumi.Output.secret(TEST_CA_KEY))
        Fabric(spec.name, FabricArgs(spec=spec, environment="dev", clouds=["aws"], options={"aws": AwsOptions(image_id="ami-1", fabric_ca=ca)}))
        return {}

    graph = build_graph(build)
    tiers = {r.name: r.inputs["tier"] for r in graph.of_type(PARAMETER)}
    assert tiers["aws-use1-param-ca"] == "Advanced" and tiers["aws-use1-param-cert"] == tiers["aws-use1-param-key"] == "Standard"


def test_the_parameters_the_components_create_boot_a_connector_the_agent_accepts(seed_000: Graph, tmp_path: Path) -> None:
    """Components -> SSM -> the image's boot step -> files the agent's own credential checks accept."""
    node, identity = "aws-app-connector", NODES["aws-app-connector"]
    user_data = base64.b64decode(seed_000.by_name[f"{node}-lt"].inputs["userData"])
    parameters = {r.inputs["name"]: _plain(r.inputs["value"]) for r in seed_000.of_type(PARAMETER) if r.name.startswith(f"{node}-param-")}
    server = aws_server(user_data, parameters)
    with server.running():
        document = boot(Aws(imds=server.url, ssm_endpoint=server.url, ec2_endpoint=server.url, http=Http(deadline=0.5)), tmp_path)
    tls = document.agent.tls
    files = TlsPaths(ca=tmp_path / tls.ca.relative_to("/"), cert=tmp_path / tls.cert.relative_to("/"), key=tmp_path / tls.key.relative_to("/"))
    assert document.agent.identity == identity
    assert own_credential_problems(files, identity) == []
    build_contexts(files)  # loads the chain, the key (it must match the certificate) and the CA as the agent does
