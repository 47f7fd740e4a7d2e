"""The connector's own subnets and route tables in its VPC, from the plan's addresses (components.aws.subnets).

Per zone: the appliance subnet (VMs, internal NLB, interface endpoints), the
GWLB subnet (the load balancer's node and the zone's endpoint), the TGW
attachment subnet and, with `nat-gateway` egress, the egress subnet (the NAT
gateway). Each has a route table of its own, associated explicitly, so none
falls back to the VPC's main table (in a customer's VPC that table may route
anywhere): the GWLB and attachment tables keep only the local route, the
appliance table gets the edge's CIDRs (to the TGW) and the edges' Elastic
IPs (to the zone's NAT gateway), the egress table the default route to the
internet gateway. Children are named `<name>-<role>-<zone index>` and
`<name>-<role>-rt-<zone index>`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.aws.base import Common, child
from components.aws.subnets import ConnectorZoneSubnets


@dataclass
class ConnectorSubnets:
    """The ids of the connector's subnets and route tables, one per zone, by role."""

    subnets: dict[str, list[pulumi.Output[str]]] = field(default_factory=dict)
    route_tables: dict[str, list[pulumi.Output[str]]] = field(default_factory=dict)
    resources: list[pulumi.Resource] = field(default_factory=list)
    """Every subnet, table and association: what must exist before the VMs boot into them."""


def connector_subnets(
    parent: pulumi.Resource, name: str, args: Common, vpc_id: pulumi.Input[str], zones: Sequence[pulumi.Input[str]],
    planned: Sequence[ConnectorZoneSubnets], roles: Sequence[str],
) -> ConnectorSubnets:
    """Create the subnets of `roles` in each zone, each with its own route table."""
    out = ConnectorSubnets()
    for role in roles:
        for index, (zone, cidrs) in enumerate(zip(zones, planned)):
            subnet = aws.ec2.Subnet(
                f"{name}-{role}-{index}", vpc_id=vpc_id, cidr_block=getattr(cidrs, role), availability_zone=zone,
                map_public_ip_on_launch=False, tags=args.tags("connector", f"{name}-{role}-{index}"), opts=child(parent),
            )
            table = aws.ec2.RouteTable(
                f"{name}-{role}-rt-{index}", vpc_id=vpc_id, tags=args.tags("connector", f"{name}-{role}-rt-{index}"), opts=child(parent),
            )
            association = aws.ec2.RouteTableAssociation(
                f"{name}-{role}-rta-{index}", subnet_id=subnet.id, route_table_id=table.id, opts=child(subnet),
            )
            out.subnets.setdefault(role, []).append(subnet.id)
            out.route_tables.setdefault(role, []).append(table.id)
            out.resources += [subnet, table, association]
    return out
