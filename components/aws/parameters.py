"""What a node's boot step reads from SSM: `<prefix>/ca`, `<prefix>/cert`, `<prefix>/key`, all SecureString.

The image's boot step (dataplane/boot_sources.py `Aws.secrets`) fetches these
three parameters with `GetParameters WithDecryption` under the prefix its boot
document names (base.parameter_prefix), which is also the only path the node's
role may read (base.node_policy). A VM that boots before they exist fails its
boot step, so the fleet's launch template and autoscaling group wait for them
(`depends_on`). The node's certificate is issued here by the program
(components.node_certificates) from the fabric CA in stack config; every value
goes in as a Pulumi secret, so no key is ever in plain state, a log or an
output, and all three are SecureString (the certificate and CA are not secret,
but one type keeps one read path and one IAM/KMS story).

Tier: Standard holds 4,096 bytes and costs nothing; Advanced holds 8 KB and is
charged per parameter and month. A P-256 node certificate and key are under
1 KB, so `cert` and `key` are Standard; `ca` is Standard unless the CA chain
in config is longer than 4,096 bytes (an RSA chain with intermediates can be),
then Advanced, decided from its length, which is known before anything is
created. Intelligent-Tiering would decide the same per request, but
pulumi-aws has forced it to Standard (pulumi/pulumi-aws#5595), so the tier
is chosen here. Encryption: the AWS-managed `aws/ssm` key by default, which
every principal of the account may decrypt with, so the role's SSM
statement is the whole gate; or a customer-managed key (`key_id`), which the
role may use only for its own parameters (base.node_policy).
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.base import Common, child, parameter_prefix
from components.aws.parameter_tier import ca_tier
from components.fabric_ca import FabricCa
from components.node_certificates import NodeCertificate
from dataplane.boot_document import ITEMS


@dataclass(frozen=True, kw_only=True)
class NodeTlsArgs:
    """Who a node is and what signs its certificate: enough to create the parameters its boot step reads."""

    identity: str
    """Its URI identity, spiffe://<fabric>/<agent>, the certificate's only URI SAN (the plan's AgentPlan.identity)."""
    ca: FabricCa
    """The fabric CA (stack config transit:fabricCaCert, transit:fabricCaKey)."""
    kms_key_id: str | None = None
    """Customer-managed KMS key ARN for the SecureStrings. Defaults to the AWS-managed aws/ssm key."""


@dataclass(frozen=True)
class NodeParameters:
    """The node's certificate and its three parameters, in ITEMS order (ca, cert, key)."""

    certificate: NodeCertificate
    parameters: list[aws.ssm.Parameter]


def node_parameters(parent: pulumi.Resource, name: str, args: Common, role: str, tls: NodeTlsArgs) -> NodeParameters:
    """Issue the node's certificate and create `<name>-param-{ca,cert,key}` under `parent`, at the node's prefix."""
    certificate = NodeCertificate(f"{name}-cert", identity=tls.identity, ca=tls.ca, opts=child(parent))
    values = {"ca": pulumi.Output.secret(tls.ca.cert_pem), "cert": pulumi.Output.secret(certificate.cert_pem),
              "key": pulumi.Output.secret(certificate.key_pem)}
    prefix = parameter_prefix(args.fabric, args.environment, name)
    encryption = {"key_id": tls.kms_key_id} if tls.kms_key_id else {}
    parameters = [
        aws.ssm.Parameter(
            f"{name}-param-{item}", name=f"{prefix}/{item}", type="SecureString", value=values[item],
            tier=ca_tier(tls.ca.cert_pem) if item == "ca" else "Standard",
            description=f"transit {role} {name}: {item} (read at boot, docs/images.md)",
            tags=args.tags(role, f"{name}-param-{item}"), opts=child(parent), **encryption,
        )
        for item in ITEMS
    ]
    return NodeParameters(certificate, parameters)
