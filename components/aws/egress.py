"""The connector's public fallback: a NAT gateway per zone to the edges' Elastic IPs (egress `nat-gateway`).

The private path to the edge runs over the TGW; when it fails, agents dial
the edge's Elastic IPs. Connector VMs have no public address, so each zone's
appliance route table sends exactly those addresses (/32 each, never
0.0.0.0/0) to the zone's NAT gateway (zone-local: a zone failure takes only
its own egress), which sits in the zone's egress subnet behind the VPC's
internet gateway. A VPC holds one internet gateway: the connector creates it
unless `internet_gateway_id` names the one the VPC has. Routing the fallback
through the TGW instead would share the private path's fate and reach the
edge's public addresses from inside its own VPC, which an internet gateway
does not translate for addresses of another VPC.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.aws.base import Common, child


@dataclass(frozen=True)
class NatEgress:
    """The NAT gateways (one per zone) and the routes that use them."""

    nat_gateways: list[aws.ec2.NatGateway]
    routes: list[aws.ec2.Route]


def nat_egress(
    parent: pulumi.Resource, name: str, args: Common, vpc_id: pulumi.Input[str], *, internet_gateway_id: pulumi.Input[str] | None,
    egress_subnet_ids: Sequence[pulumi.Input[str]], egress_route_table_ids: Sequence[pulumi.Input[str]],
    appliance_route_table_ids: Sequence[pulumi.Input[str]], destinations: Sequence[pulumi.Input[str]],
) -> NatEgress:
    """NAT gateway `<name>-nat-<zone>` per egress subnet; each zone's appliance table routes `destinations` (addresses) to it."""
    ready: list[pulumi.Resource] = []
    if internet_gateway_id is None:
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc_id, tags=args.tags("connector", f"{name}-igw"), opts=child(parent))
        internet_gateway_id, ready = igw.id, [igw]
    routes: list[aws.ec2.Route] = []
    nats = []
    for index, (subnet, public_table, table) in enumerate(zip(egress_subnet_ids, egress_route_table_ids, appliance_route_table_ids)):
        default = aws.ec2.Route(
            f"{name}-egress-rt-{index}-default", route_table_id=public_table, destination_cidr_block="0.0.0.0/0",
            gateway_id=internet_gateway_id, opts=child(parent, depends_on=ready),
        )
        eip = aws.ec2.Eip(f"{name}-nat-eip-{index}", domain="vpc", tags=args.tags("connector", f"{name}-nat-eip-{index}"), opts=child(parent))
        # AWS creates a NAT gateway in a VPC without a working internet gateway, but it forwards nothing: wait for both.
        nat = aws.ec2.NatGateway(
            f"{name}-nat-{index}", allocation_id=eip.id, subnet_id=subnet, connectivity_type="public",
            tags=args.tags("connector", f"{name}-nat-{index}"), opts=child(parent, depends_on=[*ready, default]),
        )
        nats.append(nat)
        routes += [
            aws.ec2.Route(
                f"{name}-appliance-rt-{index}-eip-{position}", route_table_id=table,
                destination_cidr_block=pulumi.Output.from_input(address).apply(lambda a: f"{a}/32"),
                nat_gateway_id=nat.id, opts=child(nat),
            )
            for position, address in enumerate(destinations)
        ]
    return NatEgress(nats, routes)
