"""A native attachment: an application VPC joined to its region's transit gateway, no VMs of ours.

The VPC's attachment subnets (one /28 per zone, from the plan) hold the TGW
attachment; it is associated with the fabric's TGW route table and propagates
the VPC's CIDRs into it, so the edge can deliver to the network. Each workload
route table sends the destinations the policy lets the network reach to the
TGW, never 0.0.0.0/0.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws

from components.aws.base import Common, child, raise_problems
from components.aws.naming import cidr_slug


@dataclass(frozen=True, kw_only=True)
class AttachmentArgs(Common):
    """Inputs of one application VPC's native attachment."""

    vpc_id: pulumi.Input[str]
    """The application VPC."""
    network_cidrs: list[str]
    """The application network's CIDRs (the TGW learns them by propagation)."""
    subnet_ids: list[pulumi.Input[str]]
    """The attachment subnets, one per zone."""
    route_table_ids: list[pulumi.Input[str]]
    """Workload route tables that get the routes to the TGW."""
    destination_cidrs: list[str]
    """Remote CIDRs the policy lets this network reach (the plan's routes)."""
    transit_gateway_id: pulumi.Input[str]
    """The region's transit gateway."""
    transit_gateway_route_table_id: pulumi.Input[str]
    """The fabric's TGW route table to associate with and propagate to."""

    def problems(self) -> list[str]:
        out = self.check_common()
        for cidr in [*self.network_cidrs, *self.destination_cidrs]:
            try:
                IPv4Network(cidr)
            except ValueError as exc:
                out.append(f"{cidr!r}: {exc}")
        if not self.network_cidrs:
            out.append("network_cidrs is empty")
        if not self.subnet_ids:
            out.append("subnet_ids is empty")
        if "0.0.0.0/0" in self.destination_cidrs:
            out.append("destination_cidrs holds 0.0.0.0/0; route only the remote CIDRs the policy reaches")
        return out


class Attachment(pulumi.ComponentResource):
    """Joins one application VPC to the fabric through its region's transit gateway."""

    def __init__(self, name: str, args: AttachmentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        raise_problems("Attachment", name, args.problems())
        # Before it was its own component, a native attachment was a Connector in mode "native": the alias keeps
        # the identities (URNs) of stacks built then, so nothing is replaced (children inherit the parent's alias).
        moved = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="transit:aws:Connector")])
        super().__init__("transit:aws:Attachment", name, None, pulumi.ResourceOptions.merge(opts, moved))
        self.tgw_attachment = aws.ec2transitgateway.VpcAttachment(
            f"{name}-tgw-attach", transit_gateway_id=args.transit_gateway_id, vpc_id=args.vpc_id, subnet_ids=args.subnet_ids,
            transit_gateway_default_route_table_association=False, transit_gateway_default_route_table_propagation=False,
            tags=args.tags("native", f"{name}-tgw-attach"), opts=child(self),
        )
        aws.ec2transitgateway.RouteTableAssociation(
            f"{name}-tgw-assoc", transit_gateway_attachment_id=self.tgw_attachment.id,
            transit_gateway_route_table_id=args.transit_gateway_route_table_id, opts=child(self.tgw_attachment),
        )
        # The edge delivers to a native network: the fabric route table learns its CIDRs.
        aws.ec2transitgateway.RouteTablePropagation(
            f"{name}-tgw-prop", transit_gateway_attachment_id=self.tgw_attachment.id,
            transit_gateway_route_table_id=args.transit_gateway_route_table_id, opts=child(self.tgw_attachment),
        )
        self.routes = [
            aws.ec2.Route(
                f"{name}-route-{index}-{cidr_slug(cidr)}", route_table_id=table, destination_cidr_block=cidr,
                transit_gateway_id=args.transit_gateway_id, opts=child(self, depends_on=[self.tgw_attachment]),
            )
            for index, table in enumerate(args.route_table_ids)
            for cidr in args.destination_cidrs
        ]
        self.tgw_attachment_id = self.tgw_attachment.id
        self.attachment_details = pulumi.Output.all(
            vpc_id=args.vpc_id, mode="native", tgw_attachment_id=self.tgw_attachment_id, endpoint_ids=[],
            destination_cidrs=list(args.destination_cidrs),
        )
        self.register_outputs({"tgw_attachment_id": self.tgw_attachment_id, "attachment_details": self.attachment_details})
