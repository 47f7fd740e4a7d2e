"""A Network Load Balancer in front of agent VMs: tunnel (TCP) and probe (UDP) listeners.

Agents behind an autoscaling group have no stable address; peers dial this
load balancer instead. Internet-facing with one Elastic IP per zone (the public
path), or internal with one fixed private address per zone taken from the plan
(the private path over the TGW), so peers' AgentConfigs can name it before
anything exists.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.base import Common, child


@dataclass(frozen=True)
class TunnelLb:
    """The load balancer and the target groups an autoscaling group registers into."""

    load_balancer: aws.lb.LoadBalancer
    target_groups: list[aws.lb.TargetGroup]


def tunnel_lb(
    parent: pulumi.Resource,
    name: str,
    args: Common,
    role: str,
    vpc_id: pulumi.Input[str],
    mappings: list[dict[str, pulumi.Input[str]]],
    internal: bool,
    tunnel_port: int,
    probe_port: int,
) -> TunnelLb:
    """An NLB named `name` with TCP `tunnel_port` and UDP `probe_port` listeners, each to its own target group."""
    lb = aws.lb.LoadBalancer(
        name, load_balancer_type="network", internal=internal, enable_cross_zone_load_balancing=True,
        subnet_mappings=mappings, tags=args.tags(role, name), opts=child(parent),
    )
    groups = []
    for proto, port, kind in (("TCP", tunnel_port, "tunnel"), ("UDP", probe_port, "probe")):
        group = aws.lb.TargetGroup(
            f"{name}-tg-{kind}", port=port, protocol=proto, vpc_id=vpc_id, target_type="instance",
            health_check={"protocol": "TCP", "port": str(tunnel_port)},
            tags=args.tags(role, f"{name}-tg-{kind}"), opts=child(lb),
        )
        aws.lb.Listener(
            f"{name}-listener-{kind}", load_balancer_arn=lb.arn, port=port, protocol=proto,
            default_actions=[{"type": "forward", "target_group_arn": group.arn}],
            tags=args.tags(role, f"{name}-listener-{kind}"), opts=child(lb),
        )
        groups.append(group)
    return TunnelLb(lb, groups)
