"""Transparent ingress to agent VMs: a Gateway Load Balancer, its GENEVE target group,
an endpoint service and one GWLB endpoint per zone.

Route tables send traffic to the endpoint of their own zone; the GWLB hands it
to a healthy VM in GENEVE (UDP 6081), which the agent decapsulates. Used by the
connector (traffic from its application VPC) and by the edge (traffic the TGW
sends it from native networks).
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.base import Common, child

GENEVE_PORT = 6081


@dataclass(frozen=True)
class GwlbIngress:
    """The GWLB, the target group the VMs' autoscaling group registers into, the service and the endpoints."""

    gwlb: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    service: aws.ec2.VpcEndpointService
    endpoints: list[aws.ec2.VpcEndpoint]


def gwlb_ingress(
    parent: pulumi.Resource,
    name: str,
    args: Common,
    role: str,
    vpc_id: pulumi.Input[str],
    subnet_ids: list[pulumi.Input[str]],
    health_port: int,
) -> GwlbIngress:
    """A GWLB named `<name>-gwlb` in `subnet_ids`, with one endpoint per subnet (zone), health-checked on /healthz."""
    gwlb = aws.lb.LoadBalancer(
        f"{name}-gwlb", load_balancer_type="gateway", subnets=subnet_ids, enable_cross_zone_load_balancing=True,
        tags=args.tags(role, f"{name}-gwlb"), opts=child(parent),
    )
    target_group = aws.lb.TargetGroup(
        f"{name}-tg", port=GENEVE_PORT, protocol="GENEVE", vpc_id=vpc_id, target_type="instance",
        health_check={"protocol": "HTTP", "port": str(health_port), "path": "/healthz", "interval": 10,
                      "healthy_threshold": 2, "unhealthy_threshold": 2},
        tags=args.tags(role, f"{name}-tg"), opts=child(gwlb),
    )
    aws.lb.Listener(
        f"{name}-listener", load_balancer_arn=gwlb.arn,
        default_actions=[{"type": "forward", "target_group_arn": target_group.arn}],
        tags=args.tags(role, f"{name}-listener"), opts=child(gwlb),
    )
    # An endpoint service admits no one until principals are allowed, not even its own account: allow exactly
    # this account, whose endpoints below connect to it (no acceptance step needed for them).
    caller = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=parent))
    service = aws.ec2.VpcEndpointService(
        f"{name}-svc", acceptance_required=False, gateway_load_balancer_arns=[gwlb.arn],
        allowed_principals=[pulumi.Output.all(caller.arn, caller.account_id).apply(lambda a: f"arn:{a[0].split(':')[1]}:iam::{a[1]}:root")],
        tags=args.tags(role, f"{name}-svc"), opts=child(gwlb),
    )
    endpoints = [
        aws.ec2.VpcEndpoint(
            f"{name}-gwlbe-{index}", vpc_id=vpc_id, service_name=service.service_name, vpc_endpoint_type="GatewayLoadBalancer",
            subnet_ids=[subnet], tags=args.tags(role, f"{name}-gwlbe-{index}"), opts=child(service),
        )
        for index, subnet in enumerate(subnet_ids)
    ]
    return GwlbIngress(gwlb, target_group, service, endpoints)
