"""What the AWS build needs beyond the spec: the image, ASNs, existing VPCs, partner connection ids.

A module of its own, importing neither Pulumi nor a cloud SDK at run time, so
the target registry can name it and a stack program can read these options
from config without loading pulumi_aws unless it builds AWS.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from components.aws.quotas import AwsQuotas
from components.fabric_ca import FabricCa

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
    """dxcon ids a partner allocated, by circuit name (for `connection: hosted`); one circuit each (a hosted
    connection carries one VIF). Defaults to none."""
    quotas: AwsQuotas = field(default_factory=AwsQuotas)
    """The account's security-group and prefix-list quotas the plan must fit. Defaults to AWS's defaults."""
    fabric_ca: FabricCa | None = None
    """The fabric CA that signs each edge's and connector's certificate (components.fabric_ca). Required when the spec has
    AWS edges or connectors."""
    parameter_kms_key_ids: Mapping[str, str] = field(default_factory=dict)
    """ARN of a customer-managed KMS key for the nodes' SecureString parameters, by region (keys are regional); each
    node's role may decrypt with it only its own parameters. Defaults to the AWS-managed aws/ssm key in every region."""

    @classmethod
    def from_config(cls, config: pulumi.Config) -> AwsOptions:
        """Read the options from stack config (all optional): awsImageId, awsInstanceType,
        awsTransitGatewayAsn, awsHostedConnections {circuit: dxcon id},
        awsExistingNetworks {network: {vpcId, workloadRouteTableIds, fabricSubnetIds, fabricRouteTableIds}} and
        awsQuotas {securityGroupRules, prefixListsPerRegion} (raised quotas), awsParameterKmsKeyIds {region: key ARN}, and the fabric CA
        (fabricCaCert, fabricCaKey as a secret)."""
        existing = config.get_object("awsExistingNetworks") or {}
        quotas = config.get_object("awsQuotas") or {}
        return cls(
            image_id=config.get("awsImageId"),
            instance_type=config.get("awsInstanceType") or "c6in.large",
            transit_gateway_asn=config.get_int("awsTransitGatewayAsn") or 64512,
            hosted_connection_ids=dict(config.get_object("awsHostedConnections") or {}),
            fabric_ca=FabricCa.from_config(config), parameter_kms_key_ids=dict(config.get_object("awsParameterKmsKeyIds") or {}),
            quotas=AwsQuotas(**{k: int(quotas[c]) for k, c in (("security_group_rules", "securityGroupRules"),
                                                             ("prefix_lists_per_region", "prefixListsPerRegion")) if c in quotas}),
            existing_networks={
                name: ExistingNetwork(
                    vpc_id=v["vpcId"], workload_route_table_ids=list(v["workloadRouteTableIds"]),
                    fabric_subnet_ids=list(v["fabricSubnetIds"]), fabric_route_table_ids=list(v.get("fabricRouteTableIds", [])),
                )
                for name, v in existing.items()
            },
        )
