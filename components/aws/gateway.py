"""AWS-native attach points of one region: transit gateway, virtual private gateway, DX gateway.

The TGW gets its own route table with default association and propagation off,
so only what the fabric attaches and propagates is routed (no accidental
any-to-any between VPCs). The VGW carries a custom ASN (seed 004 part II) and is
attached to each VPC that a Direct Connect circuit serves; a DX gateway per
circuit is where its private VIF ends.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.aws.base import Common, child, raise_problems

ASN_RANGES = ((64512, 65534), (4200000000, 4294967294))
"""Amazon-side ASNs AWS accepts for a TGW, VGW or DX gateway (private ranges)."""


def _asn_problem(field: str, asn: int | None) -> str | None:
    if asn is None or any(low <= asn <= high for low, high in ASN_RANGES):
        return None
    return f"{field} {asn} must be a private ASN (64512-65534 or 4200000000-4294967294)"


@dataclass(frozen=True, kw_only=True)
class VpnGatewaySpec:
    """A VGW for one VPC (the VPC a Direct Connect circuit reaches)."""

    key: str
    """Name part of the VGW's children, e.g. the network name."""
    vpc_id: pulumi.Input[str]
    """The VPC the VGW is attached to."""
    asn: int
    """Custom Amazon-side ASN. Valid values: 64512-65534, 4200000000-4294967294."""


@dataclass(frozen=True, kw_only=True)
class DxGatewaySpec:
    """A Direct Connect gateway (global) that a circuit's private VIF ends on."""

    key: str
    """Name part, e.g. the circuit name."""
    asn: int
    """Amazon-side ASN: the circuit's peer ASN. Valid values: 64512-65534, 4200000000-4294967294."""


@dataclass(frozen=True, kw_only=True)
class GatewayArgs(Common):
    """Inputs of a region's gateways; each is optional, decided from the spec."""

    transit_gateway_asn: int | None = 64512
    """Amazon-side ASN of the TGW; None for no TGW. Defaults to 64512."""
    vpn_gateways: list[VpnGatewaySpec] = field(default_factory=list)
    """VGWs to create and attach. Defaults to none."""
    dx_gateways: list[DxGatewaySpec] = field(default_factory=list)
    """Direct Connect gateways to create. Defaults to none."""

    def problems(self) -> list[str]:
        out = self.check_common()
        asns = [("transit_gateway_asn", self.transit_gateway_asn)]
        asns += [(f"vpn_gateways[{v.key}].asn", v.asn) for v in self.vpn_gateways]
        asns += [(f"dx_gateways[{d.key}].asn", d.asn) for d in self.dx_gateways]
        out.extend(p for p in (_asn_problem(f, a) for f, a in asns) if p)
        for label, keys in (("vpn_gateways", [v.key for v in self.vpn_gateways]), ("dx_gateways", [d.key for d in self.dx_gateways])):
            if len(set(keys)) != len(keys):
                out.append(f"{label} keys must be unique")
        if self.transit_gateway_asn is None and not self.vpn_gateways and not self.dx_gateways:
            out.append("nothing to build: set transit_gateway_asn, vpn_gateways or dx_gateways")
        return out


class Gateway(pulumi.ComponentResource):
    """TGW with its route table, VGWs attached to VPCs, DX gateways: whichever the args ask for."""

    def __init__(self, name: str, args: GatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        raise_problems("Gateway", name, args.problems())
        super().__init__("transit:aws:Gateway", name, None, opts)
        self.transit_gateway: aws.ec2transitgateway.TransitGateway | None = None
        self.route_table: aws.ec2transitgateway.RouteTable | None = None
        if args.transit_gateway_asn is not None:
            self.transit_gateway = aws.ec2transitgateway.TransitGateway(
                f"{name}-tgw", amazon_side_asn=args.transit_gateway_asn, description=f"transit fabric {args.fabric} {name}",
                default_route_table_association="disable", default_route_table_propagation="disable",
                dns_support="enable", vpn_ecmp_support="enable",
                tags=args.tags("gateway", f"{name}-tgw"), opts=child(self),
            )
            self.route_table = aws.ec2transitgateway.RouteTable(
                f"{name}-tgw-rt", transit_gateway_id=self.transit_gateway.id,
                tags=args.tags("gateway", f"{name}-tgw-rt"), opts=child(self.transit_gateway),
            )
        self.vpn_gateways: dict[str, aws.ec2.VpnGateway] = {}
        self.vpn_gateway_attachments: dict[str, aws.ec2.VpnGatewayAttachment] = {}
        """By key: what a DX gateway association and route propagation must wait for (`depends_on`)."""
        for vgw in args.vpn_gateways:
            gateway = aws.ec2.VpnGateway(
                f"{name}-vgw-{vgw.key}", amazon_side_asn=str(vgw.asn), tags=args.tags("gateway", f"{name}-vgw-{vgw.key}"), opts=child(self),
            )
            self.vpn_gateway_attachments[vgw.key] = aws.ec2.VpnGatewayAttachment(
                f"{name}-vgw-{vgw.key}-attach", vpc_id=vgw.vpc_id, vpn_gateway_id=gateway.id, opts=child(gateway),
            )
            self.vpn_gateways[vgw.key] = gateway
        self.dx_gateways: dict[str, aws.directconnect.Gateway] = {
            dx.key: aws.directconnect.Gateway(
                f"{name}-dxgw-{dx.key}", name=f"{args.fabric}-{args.environment}-{dx.key}", amazon_side_asn=str(dx.asn),
                tags=args.tags("gateway", f"{name}-dxgw-{dx.key}"), opts=child(self),
            )
            for dx in args.dx_gateways
        }
        empty = pulumi.Output.from_input("")
        self.transit_gateway_id = self.transit_gateway.id if self.transit_gateway else empty
        self.transit_gateway_route_table_id = self.route_table.id if self.route_table else empty
        self.vpn_gateway_ids = pulumi.Output.from_input({k: g.id for k, g in self.vpn_gateways.items()})
        self.dx_gateway_ids = pulumi.Output.from_input({k: g.id for k, g in self.dx_gateways.items()})
        self.gateway_details = pulumi.Output.all(
            transit_gateway_id=self.transit_gateway_id, transit_gateway_route_table_id=self.transit_gateway_route_table_id,
            vpn_gateway_ids=self.vpn_gateway_ids, dx_gateway_ids=self.dx_gateway_ids,
        )
        self.register_outputs(
            {
                "transit_gateway_id": self.transit_gateway_id,
                "transit_gateway_route_table_id": self.transit_gateway_route_table_id,
                "vpn_gateway_ids": self.vpn_gateway_ids,
                "dx_gateway_ids": self.dx_gateway_ids,
                "gateway_details": self.gateway_details,
            }
        )
