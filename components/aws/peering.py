"""TGW peering between two regions: the private backbone between AWS edges in different regions.

The requester side asks, the accepter side (its own provider, its region)
accepts; each side associates the peering attachment with its fabric route
table and routes the other side's edge CIDRs over it (peering attachments
carry only static routes). Without it, edges in different regions only reach
each other over their public endpoints.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws

from components.aws.base import Common, child, raise_problems
from components.aws.naming import cidr_slug


@dataclass(frozen=True, kw_only=True)
class PeeringSide:
    """One region's end of the peering."""

    region: str
    """AWS region of this side's TGW."""
    transit_gateway_id: pulumi.Input[str]
    """This side's TGW."""
    route_table_id: pulumi.Input[str]
    """This side's fabric TGW route table (association and static routes)."""
    cidrs: list[str] = field(default_factory=list)
    """CIDRs behind this side (its edges), routed to it from the other side. Defaults to none."""


@dataclass(frozen=True, kw_only=True)
class TransitPeeringArgs(Common):
    """Inputs of one inter-region TGW peering."""

    requester: PeeringSide
    """The side that requests (built with the component's provider)."""
    accepter: PeeringSide
    """The side that accepts."""
    accepter_provider: pulumi.ProviderResource
    """AWS provider of the accepter's region."""

    def problems(self) -> list[str]:
        out = self.check_common()
        if self.requester.region == self.accepter.region:
            out.append("requester and accepter are in one region; peer TGWs of different regions")
        for cidr in [*self.requester.cidrs, *self.accepter.cidrs]:
            try:
                IPv4Network(cidr)
            except ValueError as exc:
                out.append(f"{cidr!r}: {exc}")
        return out


class TransitPeering(pulumi.ComponentResource):
    """A TGW peering attachment, its acceptance, associations and static routes on both sides."""

    def __init__(self, name: str, args: TransitPeeringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        raise_problems("TransitPeering", name, args.problems())
        super().__init__("transit:aws:TransitPeering", name, None, opts)
        req, acc = args.requester, args.accepter
        self.attachment = aws.ec2transitgateway.PeeringAttachment(
            f"{name}-attach", transit_gateway_id=req.transit_gateway_id, peer_transit_gateway_id=acc.transit_gateway_id,
            peer_region=acc.region, tags=args.tags("peering", f"{name}-attach"), opts=child(self),
        )
        accepted = aws.ec2transitgateway.PeeringAttachmentAccepter(
            f"{name}-accept", transit_gateway_attachment_id=self.attachment.id, tags=args.tags("peering", f"{name}-accept"),
            opts=child(self.attachment, provider=args.accepter_provider),
        )
        for side, remote, provider, after in (("requester", acc, None, accepted), ("accepter", req, args.accepter_provider, accepted)):
            this = req if side == "requester" else acc
            extra = {"provider": provider} if provider is not None else {}
            association = aws.ec2transitgateway.RouteTableAssociation(
                f"{name}-{side}-assoc", transit_gateway_attachment_id=self.attachment.id,
                transit_gateway_route_table_id=this.route_table_id, opts=child(self.attachment, depends_on=[after], **extra),
            )
            for cidr in remote.cidrs:
                aws.ec2transitgateway.Route(
                    f"{name}-{side}-route-{cidr_slug(cidr)}", destination_cidr_block=cidr,
                    transit_gateway_attachment_id=self.attachment.id, transit_gateway_route_table_id=this.route_table_id,
                    opts=child(association, depends_on=[after], **extra),
                )
        self.attachment_id = self.attachment.id
        self.register_outputs({"attachment_id": self.attachment_id, "regions": [req.region, acc.region]})
