"""What every AWS component shares: common args, tags, child options, user data.

One place so that every resource carries the same tags (fabric, environment,
role, Name) and every child is parented the same way.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pulumi

from components.aws.naming import check_name
from dataplane.boot_document import AwsSsm, document_json

ASSUME_EC2 = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)


@dataclass(frozen=True, kw_only=True)
class Common:
    """Args every AWS component takes: who owns the resources and how they are tagged."""

    fabric: str
    """Fabric name, tagged on every resource. Valid values: a DNS-safe name."""
    environment: str
    """Environment (stack) name, tagged on every resource. Valid values: a DNS-safe name."""
    extra_tags: dict[str, str] | None = None
    """More tags for every resource (cost centre, owner). Defaults to none."""

    def check_common(self) -> list[str]:
        """Problems with the shared fields, as messages."""
        return [p for p in (check_name("fabric", self.fabric), check_name("environment", self.environment)) if p]

    def tags(self, role: str, name: str) -> dict[str, str]:
        """Tags for one resource: fabric, environment, role and a readable Name."""
        return {
            **(self.extra_tags or {}),
            "Name": name,
            "transit:fabric": self.fabric,
            "transit:environment": self.environment,
            "transit:role": role,
        }

    def asg_tags(self, role: str, name: str) -> list[dict[str, Any]]:
        """The same tags in the autoscaling group's shape, propagated to the instances."""
        return [{"key": k, "value": v, "propagate_at_launch": True} for k, v in self.tags(role, name).items()]


HTTPS = 443
"""Agents call AWS APIs (SSM) over HTTPS at boot; their groups allow it out."""

SgRuleSpec = tuple[str, str, "int | None", str]
"""(direction, protocol, port or None for all ports, CIDR)."""


def inline_rules(rules: list[SgRuleSpec], direction: str) -> list[dict[str, Any]]:
    """A component's fixed security-group rules in the SecurityGroup's inline shape.

    Edges and connectors have a small fixed rule set that changes with the
    component, so it lives inline (one resource); the policy's rules, which
    change with the policy, are separate rule resources (Segmentation).
    """
    return [
        {
            "protocol": proto, "from_port": port if port is not None else 0, "to_port": port if port is not None else 0,
            "cidr_blocks": [cidr], "description": f"{proto}/{port if port is not None else 'all'} {cidr}",
        }
        for rule_direction, proto, port, cidr in rules
        if rule_direction == direction
    ]


def raise_problems(component: str, name: str, problems: list[str]) -> None:
    """Refuse to build anything when the args have problems; list them all."""
    if problems:
        raise ValueError(f"{component} {name!r}: " + "; ".join(problems))


def child(parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
    """Options for a child resource: parented, providers inherited from the parent."""
    return pulumi.ResourceOptions(parent=parent, **kwargs)


def parameter_prefix(fabric: str, environment: str, name: str) -> str:
    """The SSM path holding a node's `ca`, `cert` and `key` (docs/images.md); its role reads only there."""
    return f"/transit/{fabric}/{environment}/{name}"


def boot_user_data(agent_config_json: str, prefix: str) -> str:
    """The boot document (the AgentConfig, TLS files in SSM under `prefix`) as base64 user data.

    The image's boot step (dataplane/boot.py) reads it from IMDSv2 at boot.
    """
    document = document_json(agent_config_json, AwsSsm(store="aws-ssm", prefix=prefix))
    return base64.b64encode(document.encode()).decode()


def user_data(agent_config_json: pulumi.Input[str], prefix: str) -> pulumi.Output[str]:
    """`boot_user_data` of a launch template's AgentConfig JSON, once it is known."""
    return pulumi.Output.from_input(agent_config_json).apply(lambda text: boot_user_data(text, prefix))


def node_policy(fabric: str, environment: str, name: str, role: str, kms_key_arn: str | None = None) -> str:
    """Least privilege for an agent VM, and nothing else:

    - read its own SSM parameters (`ca`, `cert`, `key`, components/aws/parameters.py), under
      /transit/<fabric>/<environment>/<name>. With the AWS-managed `aws/ssm` key nothing more is needed
      (its key policy lets every principal of the account decrypt through SSM); with a customer-managed
      key (`kms_key_arn`), `kms:Decrypt` on that key, only through SSM and only for its own parameters
      (SSM encrypts each value with the encryption context PARAMETER_ARN);
    - turn off the source/destination check of instances tagged as this
      fabric's `role` in this environment: agents deliver streams from the
      original source address (AgentConfig.preserve_source), which EC2 drops
      while the check is on, and a launch template cannot turn it off.
    """
    path = parameter_prefix(fabric, environment, name)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadOwnParameters",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
            "Resource": [f"arn:aws:ssm:*:*:parameter{path}", f"arn:aws:ssm:*:*:parameter{path}/*"],
        },
    ]
    if kms_key_arn:
        statements.append({
            "Sid": "DecryptOwnParameters",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": kms_key_arn,
            "Condition": {
                "StringLike": {"kms:ViaService": "ssm.*.amazonaws.com", "kms:EncryptionContext:PARAMETER_ARN": f"arn:aws:ssm:*:*:parameter{path}/*"},
            },
        })
    statements.append({
        "Sid": "DisableSourceDestCheckOnOwnRole",
        "Effect": "Allow",
        "Action": ["ec2:ModifyInstanceAttribute"],
        "Resource": "arn:aws:ec2:*:*:instance/*",
        "Condition": {
            "StringEquals": {
                "ec2:ResourceTag/transit:fabric": fabric,
                "ec2:ResourceTag/transit:environment": environment,
                "ec2:ResourceTag/transit:role": role,
            }
        },
    })
    return json.dumps({"Version": "2012-10-17", "Statement": statements})
