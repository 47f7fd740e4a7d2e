"""An AWS Direct Connect circuit (seed 004 parts I and II).

The connection is either ordered here (dedicated port at a DX location) or
ordered by a partner and accepted here (hosted connection: seed 004's cloud
router provisions it, the customer accepts). On it: a private virtual
interface with the spec's VLAN, ASN, /31 or /30 peer addresses and the BGP MD5
key, which must arrive as a Pulumi secret and stays one in state; the VIF ends
on a DX gateway that is associated with the VPC's VGW (or a TGW), and the VGW
propagates the learned routes into the VPC's route tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from typing import Literal

import pulumi
import pulumi_aws as aws

from components.aws.base import Common, child, raise_problems

DEDICATED_BANDWIDTHS = {1000: "1Gbps", 10000: "10Gbps", 100000: "100Gbps", 400000: "400Gbps"}
"""Dedicated port speeds AWS sells, Mbps -> the API's spelling."""


@dataclass(frozen=True, kw_only=True)
class GatewayLink:
    """One association of the circuit's DX gateway with a VGW or TGW."""

    key: str
    """Name part of the association's children, e.g. the network name."""
    kind: Literal["vgw", "tgw"]
    """What is associated. Valid values: vgw (private VIF), tgw (transit VIF)."""
    gateway_id: pulumi.Input[str]
    """The VGW or TGW id."""
    allowed_prefixes: list[str] = field(default_factory=list)
    """Prefixes advertised to the circuit; required for `tgw`. Defaults to the VPC CIDR (vgw)."""
    propagate_route_table_ids: list[pulumi.Input[str]] = field(default_factory=list)
    """`vgw`: VPC route tables that receive the routes learned over BGP. Defaults to none."""
    region: str | None = None
    """The gateway's region when it is not the circuit's (a DX gateway is global). Defaults to the circuit's."""
    ready: list[pulumi.Resource] = field(default_factory=list)
    """What must exist first: the VGW's attachment to its VPC (AWS refuses to associate or propagate from an
    unattached VGW; `parent` gives no order). Defaults to none."""
    asn: int | None = None
    """`tgw`: the TGW's Amazon-side ASN, which must differ from the DX gateway's. Required for tgw."""

    def problems(self, dx_gateway_asn: int | None) -> list[str]:
        out = []
        if self.kind not in ("vgw", "tgw"):
            out.append(f"associations[{self.key}].kind {self.kind!r}: valid values are vgw, tgw")
        if self.kind == "tgw":
            if not self.allowed_prefixes:
                out.append(f"associations[{self.key}]: a TGW association needs allowed_prefixes")
            if self.propagate_route_table_ids:
                out.append(f"associations[{self.key}]: route propagation comes from a VGW; route a TGW through its route table")
            if self.asn is None or dx_gateway_asn is None:
                out.append(f"associations[{self.key}]: a TGW association needs asn (the TGW's) and dx_gateway_asn, which must differ")
            elif self.asn == dx_gateway_asn:
                out.append(f"associations[{self.key}].asn {self.asn} equals dx_gateway_asn; AWS needs distinct TGW and DX gateway ASNs")
        return out


@dataclass(frozen=True, kw_only=True)
class CircuitArgs(Common):
    """Inputs of one Direct Connect circuit and its private VIF."""

    connection: Literal["dedicated", "hosted"]
    """How the connection comes to be. Valid values: dedicated (ordered here), hosted (accepted from a partner)."""
    vlan: int
    """802.1Q VLAN of the private VIF. Valid values: 1-4094."""
    customer_asn: int
    """Our side's BGP ASN (the customer router or cloud router)."""
    customer_address: str
    """Our side's peer address with prefix, e.g. 10.0.0.0/31."""
    amazon_address: str
    """AWS's peer address with prefix, e.g. 10.0.0.1/31 (same /31 or /30)."""
    md5_key: pulumi.Output[str]
    """BGP MD5 key: a Pulumi secret Output (config.require_secret); a plain string is refused."""
    dx_gateway_id: pulumi.Input[str]
    """DX gateway the VIF ends on (from Gateway)."""
    associations: list[GatewayLink] = field(default_factory=list)
    """The VGWs or TGWs this circuit associates its DX gateway with; all vgw (private VIF) or all tgw (transit
    VIF). Defaults to none: another circuit ending on the same DX gateway made them (redundant circuits)."""
    dx_gateway_asn: int | None = None
    """The DX gateway's Amazon-side ASN; required with tgw associations (it must differ from each TGW's)."""
    location: str | None = None
    """`dedicated`: DX location code, e.g. EqFA5. Required for dedicated."""
    bandwidth_mbps: int | None = None
    """`dedicated`: port speed. Valid values: 1000, 10000, 100000, 400000."""
    hosted_connection_id: pulumi.Input[str] | None = None
    """`hosted`: the dxcon id the partner allocated to this account. Required for hosted. The partner fixed
    its VLAN: the build reads it from the connection and refuses a `vlan` that differs."""
    mtu: int = 1500
    """VIF MTU. Valid values: 1500, 9001 (private VIF) or 1500, 8500 (transit VIF). Defaults to 1500."""

    def problems(self) -> list[str]:
        out = self.check_common()
        if not 1 <= self.vlan <= 4094:
            out.append(f"vlan {self.vlan} must be 1-4094")
        if not 1 <= self.customer_asn <= 4294967294:
            out.append(f"customer_asn {self.customer_asn} is out of range")
        out.extend(_peer_problems(self.customer_address, self.amazon_address))
        if not isinstance(self.md5_key, pulumi.Output):
            out.append("md5_key must be a Pulumi secret Output (pulumi.Config().require_secret(...)), never a plain string")
        if self.connection == "dedicated":
            if not self.location:
                out.append("a dedicated connection needs location (the DX location code)")
            if self.bandwidth_mbps not in DEDICATED_BANDWIDTHS:
                out.append(f"bandwidth_mbps {self.bandwidth_mbps} is not a dedicated port speed; valid values: {sorted(DEDICATED_BANDWIDTHS)}")
            if self.hosted_connection_id is not None:
                out.append("hosted_connection_id is for connection: hosted")
        elif self.connection == "hosted":
            if self.hosted_connection_id is None:
                out.append("a hosted connection needs hosted_connection_id (the dxcon id the partner allocated)")
        else:
            out.append(f"connection {self.connection!r}: valid values are dedicated, hosted")
        for link in self.associations:
            out.extend(link.problems(self.dx_gateway_asn))
        if len({link.key for link in self.associations}) != len(self.associations):
            out.append("association keys must be unique")
        if len({link.kind for link in self.associations}) > 1:
            out.append("associations mix vgw and tgw; a DX gateway with a private VIF cannot associate a TGW (that needs a transit VIF)")
        mtus = (1500, 8500) if self.transit else (1500, 9001)
        if self.mtu not in mtus:
            out.append(f"mtu {self.mtu}: valid values for a {'transit' if self.transit else 'private'} VIF are {', '.join(map(str, mtus))}")
        return out

    @property
    def transit(self) -> bool:
        """Whether the VIF is a transit VIF (TGW associations) rather than a private one (VGWs)."""
        return any(link.kind == "tgw" for link in self.associations)


def _peer_problems(customer: str, amazon: str) -> list[str]:
    """Both addresses in one /30 or /31, distinct, usable hosts."""
    try:
        ours, theirs = IPv4Interface(customer), IPv4Interface(amazon)
    except ValueError as exc:
        return [f"peer addresses: {exc}"]
    out = []
    if ours.network.prefixlen not in (30, 31):
        out.append(f"customer_address {customer} must be in a /30 or /31")
    if ours.network != theirs.network:
        out.append(f"customer_address {customer} and amazon_address {amazon} must share one subnet")
    if ours.ip == theirs.ip:
        out.append("customer_address and amazon_address must differ")
    if ours.network.prefixlen == 30:
        for label, iface in (("customer_address", ours), ("amazon_address", theirs)):
            if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
                out.append(f"{label} {iface} is the /30's network or broadcast address")
    return out


class Circuit(pulumi.ComponentResource):
    """A DX connection (ordered or accepted), its private VIF, the DXGW association, VGW propagation."""

    def __init__(self, name: str, args: CircuitArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        raise_problems("Circuit", name, args.problems())
        super().__init__("transit:aws:Circuit", name, None, opts)
        if args.connection == "dedicated":
            assert args.bandwidth_mbps is not None
            self.connection: pulumi.CustomResource = aws.directconnect.Connection(
                f"{name}-dxcon", name=f"{args.fabric}-{args.environment}-{name}", location=args.location,
                bandwidth=DEDICATED_BANDWIDTHS[args.bandwidth_mbps], tags=args.tags("circuit", f"{name}-dxcon"), opts=child(self),
            )
            connection_id: pulumi.Input[str] = self.connection.id
        else:
            self.connection = aws.directconnect.ConnectionConfirmation(
                f"{name}-dxcon-accept", connection_id=args.hosted_connection_id, opts=child(self),
            )
            connection_id = self.connection.connection_id  # type: ignore[attr-defined]
        vif_type = aws.directconnect.TransitVirtualInterface if args.transit else aws.directconnect.PrivateVirtualInterface
        self.vif = vif_type(
            f"{name}-vif", connection_id=connection_id, name=f"{args.fabric}-{args.environment}-{name}",
            vlan=self._vlan(name, args), address_family="ipv4", bgp_asn=args.customer_asn,
            customer_address=args.customer_address, amazon_address=args.amazon_address,
            bgp_auth_key=pulumi.Output.secret(args.md5_key), dx_gateway_id=args.dx_gateway_id, mtu=args.mtu,
            tags=args.tags("circuit", f"{name}-vif"),
            opts=child(self.connection, additional_secret_outputs=["bgp_auth_key"]),
        )
        self.associations: list[aws.directconnect.GatewayAssociation] = []
        self.propagations: list[aws.ec2.VpnGatewayRoutePropagation] = []
        for link in args.associations:
            association = aws.directconnect.GatewayAssociation(
                f"{name}-dxgw-assoc-{link.key}", dx_gateway_id=args.dx_gateway_id, associated_gateway_id=link.gateway_id,
                allowed_prefixes=link.allowed_prefixes or None, region=link.region, opts=child(self, depends_on=link.ready),
            )
            self.associations.append(association)
            self.propagations += [
                aws.ec2.VpnGatewayRoutePropagation(
                    f"{name}-propagate-{link.key}-{index}", vpn_gateway_id=link.gateway_id, route_table_id=table, region=link.region,
                    opts=child(association, depends_on=link.ready),
                )
                for index, table in enumerate(link.propagate_route_table_ids)
            ]
        self.vif_id = self.vif.id
        self.connection_id = pulumi.Output.from_input(connection_id)
        self.circuit_details = pulumi.Output.all(
            connection_id=self.connection_id, vif_id=self.vif.id, dx_gateway_id=args.dx_gateway_id,
            associated_gateway_ids=[link.gateway_id for link in args.associations],
        ).apply(
            lambda d: {
                **d, "vlan": args.vlan, "customer_asn": args.customer_asn,
                "customer_address": args.customer_address, "amazon_address": args.amazon_address,
            }
        )
        self.register_outputs({"connection_id": self.connection_id, "vif_id": self.vif_id, "circuit_details": self.circuit_details})

    def _vlan(self, name: str, args: CircuitArgs) -> pulumi.Input[int]:
        """The VIF's VLAN: the spec's for a dedicated port; for a hosted connection the partner's, read from the
        connection, and refused (before the VIF exists) when the spec says otherwise."""
        if args.connection == "dedicated":
            return args.vlan
        hosted = aws.directconnect.Connection.get(f"{name}-dxcon-hosted", id=args.hosted_connection_id, opts=child(self))  # type: ignore[arg-type]

        def agree(vlan: int | None) -> int:
            if vlan is not None and vlan != args.vlan:
                raise ValueError(
                    f"Circuit {name!r}: the partner set VLAN {vlan} on hosted connection {args.hosted_connection_id}, "
                    f"the spec says {args.vlan}; set the circuit's vlan to {vlan}"
                )
            return args.vlan

        return hosted.vlan_id.apply(agree)
