"""Interface VPC endpoints a booting connector VM needs, so it reaches AWS's APIs without the internet.

The boot step reads the node's TLS files from SSM Parameter Store and turns
off the instance's source/destination check through EC2; the SSM agent talks
to `ssmmessages` and `ec2messages`. One interface endpoint per service
(`com.amazonaws.<region>.<service>`), with an interface in each zone's
appliance subnet and private DNS on, so the SDK's default names resolve to
them inside the VPC (the VPC needs DNS support and DNS hostnames, which the
fabric's own VPCs have). Private DNS is VPC-wide: once it is on, every
instance in the VPC (the workloads' SSM agents too) resolves these services
to these endpoints, so their security group admits HTTPS from the network's
CIDRs, not the appliance subnets alone, and nothing else. A VPC that already
has its own endpoints for these services sets `interfaceEndpoints: false`
(AWS refuses a second private-DNS endpoint for one service in a VPC).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.base import HTTPS, Common, child, inline_rules
from components.aws.network_quotas import INTERFACE_SERVICES


@dataclass(frozen=True)
class InterfaceEndpoints:
    """The endpoints' security group and the endpoints, one per service."""

    security_group: aws.ec2.SecurityGroup
    endpoints: list[aws.ec2.VpcEndpoint]


def interface_endpoints(
    parent: pulumi.Resource, name: str, args: Common, vpc_id: pulumi.Input[str], region: str,
    subnet_ids: Sequence[pulumi.Input[str]], client_cidrs: Sequence[str],
) -> InterfaceEndpoints:
    """`<name>-vpce-<service>` for each of INTERFACE_SERVICES in `subnet_ids`, reachable on HTTPS from `client_cidrs` only."""
    group = aws.ec2.SecurityGroup(
        f"{name}-vpce-sg", vpc_id=vpc_id, description=f"transit connector {name}: HTTPS to the interface endpoints from its network",
        ingress=inline_rules([("ingress", "tcp", HTTPS, c) for c in client_cidrs], "ingress"), egress=[],
        tags=args.tags("connector", f"{name}-vpce-sg"), opts=child(parent),
    )
    endpoints = [
        aws.ec2.VpcEndpoint(
            f"{name}-vpce-{service}", vpc_id=vpc_id, service_name=f"com.amazonaws.{region}.{service}", vpc_endpoint_type="Interface",
            private_dns_enabled=True, subnet_ids=list(subnet_ids), security_group_ids=[group.id],
            tags=args.tags("connector", f"{name}-vpce-{service}"), opts=child(parent),
        )
        for service in INTERFACE_SERVICES
    ]
    return InterfaceEndpoints(group, endpoints)
