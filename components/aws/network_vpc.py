"""An application VPC built by the fabric, for a network that has no VPC yet (greenfield).

Onboarding usually finds the VPC already there (pass its ids to `Connector`
instead). When the fabric creates it, the layout is: a workload subnet and
route table per zone (where applications run; these tables get the fabric's
routes) and, for a native network, a /28 TGW attachment subnet per zone with
its own route table. A connector lays out its own subnets (Connector).
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws

from components.aws.base import Common, child, raise_problems
from components.aws.options import ExistingNetwork


@dataclass(frozen=True, kw_only=True)
class NetworkVpcArgs(Common):
    """Inputs of a fabric-built application VPC."""

    cidrs: list[str]
    """The network's CIDRs: the first is the VPC's primary block, the others are added."""
    zones: list[pulumi.Input[str]]
    """Availability zone names, one per zone (e.g. us-east-1a, us-east-1b; the Fabric reads them from
    aws.get_availability_zones)."""
    workload_subnets: list[str]
    """One workload subnet CIDR per zone."""
    fabric_subnets: list[str]
    """One TGW attachment subnet CIDR per zone for a native network; empty for a connector network (the Connector
    creates its own subnets)."""

    def problems(self) -> list[str]:
        out = self.check_common()
        if not self.cidrs:
            out.append("cidrs is empty")
        if len(self.zones) != len(self.workload_subnets) or not self.zones or len(self.fabric_subnets) not in (0, len(self.zones)):
            out.append("zones and workload_subnets need one entry per zone, fabric_subnets one per zone or none")
        try:
            blocks = [IPv4Network(c) for c in self.cidrs]
            subnets = [IPv4Network(c) for c in [*self.workload_subnets, *self.fabric_subnets]]
        except ValueError as exc:
            return [*out, str(exc)]
        for subnet in subnets:
            if not any(subnet.subnet_of(b) for b in blocks):
                out.append(f"subnet {subnet} is outside the network's cidrs")
        for i, a in enumerate(subnets):
            for b in subnets[i + 1:]:
                if a.overlaps(b):
                    out.append(f"subnets {a} and {b} overlap")
        return out


class NetworkVpc(pulumi.ComponentResource):
    """VPC, per-zone workload (and attachment) subnets, one route table per subnet."""

    def __init__(self, name: str, args: NetworkVpcArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        raise_problems("NetworkVpc", name, args.problems())
        super().__init__("transit:aws:NetworkVpc", name, None, opts)
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc", cidr_block=args.cidrs[0], enable_dns_hostnames=True, enable_dns_support=True,
            tags=args.tags("network", f"{name}-vpc"), opts=child(self),
        )
        extra = [
            aws.ec2.VpcIpv4CidrBlockAssociation(f"{name}-cidr-{i}", vpc_id=self.vpc.id, cidr_block=cidr, opts=child(self.vpc))
            for i, cidr in enumerate(args.cidrs[1:], start=1)
        ]
        ids: dict[str, list[pulumi.Output[str]]] = {"workload": [], "fabric": []}
        tables: dict[str, list[pulumi.Output[str]]] = {"workload": [], "fabric": []}
        for index, zone in enumerate(args.zones):
            planned = [("workload", args.workload_subnets[index])] + [("fabric", c) for c in args.fabric_subnets[index:index + 1]]
            for role, cidr in planned:
                subnet = aws.ec2.Subnet(
                    f"{name}-{role}-{index}", vpc_id=self.vpc.id, cidr_block=cidr, availability_zone=zone,
                    tags=args.tags("network", f"{name}-{role}-{index}"), opts=child(self.vpc, depends_on=extra),
                )
                table = aws.ec2.RouteTable(
                    f"{name}-{role}-rt-{index}", vpc_id=self.vpc.id, tags=args.tags("network", f"{name}-{role}-rt-{index}"),
                    opts=child(self.vpc),
                )
                aws.ec2.RouteTableAssociation(f"{name}-{role}-rta-{index}", subnet_id=subnet.id, route_table_id=table.id, opts=child(subnet))
                ids[role].append(subnet.id)
                tables[role].append(table.id)
        self.vpc_id = self.vpc.id
        self.workload_subnet_ids = ids["workload"]
        self.workload_route_table_ids = tables["workload"]
        self.fabric_subnet_ids = ids["fabric"]
        self.fabric_route_table_ids = tables["fabric"]
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "workload_subnet_ids": pulumi.Output.all(*self.workload_subnet_ids),
                "workload_route_table_ids": pulumi.Output.all(*self.workload_route_table_ids),
                "fabric_subnet_ids": pulumi.Output.all(*self.fabric_subnet_ids),
                "fabric_route_table_ids": pulumi.Output.all(*self.fabric_route_table_ids),
            }
        )

    def as_network(self) -> ExistingNetwork:
        """The ids the fabric wires, in the same shape as a VPC that already exists."""
        return ExistingNetwork(
            vpc_id=self.vpc_id, workload_route_table_ids=self.workload_route_table_ids,
            fabric_subnet_ids=self.fabric_subnet_ids, fabric_route_table_ids=self.fabric_route_table_ids,
        )
