"""The fleet of transit VMs behind an edge or a connector: role, policy, instance profile, launch template, autoscaling group.

One shape for both (Azure's scale set and GCP's managed instance group mirror
it): the VMs boot the Packer image with the AgentConfig in user data (IMDSv2
only), read their TLS files from their own SSM path (created here first,
components/aws/parameters.py; the template and the group wait for them), may
read nothing else, and are replaced by a rolling instance refresh when the
launch template changes, which includes a new certificate: its serial is an
instance tag. Children are created under the caller, named `<name>-role`,
`-role-policy`, `-profile`, `-cert`, `-param-{ca,cert,key}`, `-lt`, `-asg`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from components.aws.base import ASSUME_EC2, Common, child, node_policy, parameter_prefix, user_data
from components.aws.parameters import NodeParameters, NodeTlsArgs, node_parameters


CERT_SERIAL_TAG = "transit:certificate-serial"
"""Instance tag naming the certificate serial a VM boots with: a re-issued certificate changes the template, which
rolls the group (VMs read SSM only at boot), and the denylist can name the serial (docs/security.md)."""


@dataclass(frozen=True)
class Fleet:
    """The fleet's resources, for outputs and wiring."""

    role: aws.iam.Role
    instance_profile: aws.iam.InstanceProfile
    launch_template: aws.ec2.LaunchTemplate
    asg: aws.autoscaling.Group
    tls: NodeParameters


def fleet(
    parent: pulumi.Resource,
    name: str,
    args: Common,
    role: Literal["edge", "connector"],
    *,
    image_id: pulumi.Input[str],
    instance_type: str,
    agent_config_json: pulumi.Input[str],
    security_group_id: pulumi.Input[str],
    public_ip: bool,
    subnet_ids: Sequence[pulumi.Input[str]],
    instances: int,
    target_group_arns: Sequence[pulumi.Input[str]],
    tls: NodeTlsArgs,
    depends_on: Sequence[pulumi.Resource] = (),
) -> Fleet:
    """Create the fleet under `parent`: `instances` VMs (up to twice that) in `subnet_ids`, registered with the target groups,
    after the SSM parameters their boot step reads."""
    iam_role = aws.iam.Role(f"{name}-role", assume_role_policy=ASSUME_EC2, tags=args.tags(role, f"{name}-role"), opts=child(parent))
    aws.iam.RolePolicy(
        f"{name}-role-policy", role=iam_role.id, policy=node_policy(args.fabric, args.environment, name, role, tls.kms_key_id),
        opts=child(iam_role),
    )
    node_tls = node_parameters(parent, name, args, role, tls)
    profile = aws.iam.InstanceProfile(f"{name}-profile", role=iam_role.name, tags=args.tags(role, f"{name}-profile"), opts=child(iam_role))
    # A public VM takes its security group on the interface that asks for the public address; a private one on the template.
    network = (
        {"network_interfaces": [{"device_index": 0, "associate_public_ip_address": "true", "security_groups": [security_group_id]}]}
        if public_ip
        else {"vpc_security_group_ids": [security_group_id]}
    )
    template = aws.ec2.LaunchTemplate(
        f"{name}-lt", image_id=image_id, instance_type=instance_type, iam_instance_profile={"arn": profile.arn},
        metadata_options={"http_tokens": "required", "http_endpoint": "enabled"},
        user_data=user_data(agent_config_json, parameter_prefix(args.fabric, args.environment, name)), update_default_version=True,
        tag_specifications=[{"resource_type": "instance", "tags": {**args.tags(role, f"{name}-vm"), CERT_SERIAL_TAG: node_tls.certificate.serial}}],
        tags=args.tags(role, f"{name}-lt"), opts=child(parent, depends_on=node_tls.parameters), **network,  # type: ignore[arg-type]
    )
    asg = aws.autoscaling.Group(
        f"{name}-asg", vpc_zone_identifiers=list(subnet_ids), min_size=instances, max_size=2 * instances,
        desired_capacity=instances, health_check_type="ELB", health_check_grace_period=120,
        # The template's number, not "$Latest": a new version (new agent config) then changes the group, which
        # starts the instance refresh; "$Latest" never changes, so running VMs would keep the old config.
        launch_template={"id": template.id, "version": template.latest_version.apply(str)}, target_group_arns=list(target_group_arns),
        instance_refresh={"strategy": "Rolling", "preferences": {"min_healthy_percentage": 50}},
        tags=args.asg_tags(role, f"{name}-vm"), opts=child(parent, depends_on=[*node_tls.parameters, *depends_on]),
    )
    return Fleet(role=iam_role, instance_profile=profile, launch_template=template, asg=asg, tls=node_tls)
