"""What the AWS build needs beyond the spec: the image, ASNs, existing VPCs, partner connection ids.

A module of its own, importing neither Pulumi nor a cloud SDK at run time, so
the target registry can name it and a stack program can read these options
from config without loading pulumi_aws unless it builds AWS.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pulumi


@dataclass(frozen=True, kw_only=True)
class ExistingNetwork:
    """An onboarded network's VPC that already exists (the usual case when onboarding)."""

    vpc_id: pulumi.Input[str]
    """The VPC id."""
    workload_route_table_ids: list[pulumi.Input[str]]
    """Route tables of the workloads, one per zone (zone-aligned with the fabric subnets)."""
    fabric_subnet_ids: list[pulumi.Input[str]]
    """Free subnets for the connector (the plan's connector subnets) or the TGW attachment, one per zone."""
    fabric_route_table_ids: list[pulumi.Input[str]] = field(default_factory=list)
    """Route tables of those subnets (they get the edge's CIDR via the TGW). Defaults to none."""


@dataclass(frozen=True, kw_only=True)
class AwsOptions:
    """What the AWS build needs beyond the spec."""

    image_id: pulumi.Input[str] | None = None
    """AMI of the Packer-built image (edges and connectors share it). Required when the spec has AWS edges or connectors."""
    instance_type: str = "c6in.large"
    """VM size of edges and connectors. Defaults to c6in.large."""
    transit_gateway_asn: int = 64512
    """Amazon-side ASN of each region's TGW. Defaults to 64512."""
    existing_networks: Mapping[str, ExistingNetwork] = field(default_factory=dict)
    """VPCs of onboarded networks that exist already, by network name. Defaults to none (the fabric builds them)."""
    hosted_connection_ids: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """dxcon ids a partner allocated, by circuit name (for `connection: hosted`). Defaults to none."""

    @classmethod
    def from_config(cls, config: pulumi.Config) -> AwsOptions:
        """Read the options from stack config (all optional): awsImageId, awsInstanceType,
        awsTransitGatewayAsn, awsHostedConnections {circuit: dxcon id} and
        awsExistingNetworks {network: {vpcId, workloadRouteTableIds, fabricSubnetIds, fabricRouteTableIds}}."""
        existing = config.get_object("awsExistingNetworks") or {}
        return cls(
            image_id=config.get("awsImageId"),
            instance_type=config.get("awsInstanceType") or "c6in.large",
            transit_gateway_asn=config.get_int("awsTransitGatewayAsn") or 64512,
            hosted_connection_ids=dict(config.get_object("awsHostedConnections") or {}),
            existing_networks={
                name: ExistingNetwork(
                    vpc_id=v["vpcId"], workload_route_table_ids=list(v["workloadRouteTableIds"]),
                    fabric_subnet_ids=list(v["fabricSubnetIds"]), fabric_route_table_ids=list(v.get("fabricRouteTableIds", [])),
                )
                for name, v in existing.items()
            },
        )
