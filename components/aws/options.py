"""What the AWS build needs beyond the spec: the image, ASNs, existing VPCs, partner connection ids.

A module of its own, importing neither Pulumi nor a cloud SDK at run time, so
the target registry can name it and a stack program can read these options
from config without loading pulumi_aws unless it builds AWS.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from components.aws.quotas import AwsQuotas
from components.fabric_ca import FabricCa

if TYPE_CHECKING:
    import pulumi


QUOTA_KEYS = (
    ("security_group_rules", "securityGroupRules"), ("prefix_lists_per_region", "prefixListsPerRegion"),
    ("elastic_ips_per_region", "elasticIpsPerRegion"), ("nat_gateways_per_zone", "natGatewaysPerZone"),
    ("internet_gateways_per_region", "internetGatewaysPerRegion"), ("endpoints_per_vpc", "endpointsPerVpc"),
)
"""AwsQuotas fields and their stack config keys under transit:awsQuotas."""

Egress = Literal["nat-gateway", "none"]
"""A connector's public fallback egress (docs/aws.md, "Egress")."""


@dataclass(frozen=True, kw_only=True)
class ExistingNetwork:
    """An onboarded network's VPC that already exists (the usual case when onboarding)."""

    vpc_id: pulumi.Input[str]
    """The VPC id."""
    workload_route_table_ids: list[pulumi.Input[str]]
    """Route tables of the workloads, one per zone (zone-aligned with the fabric subnets)."""
    fabric_subnet_ids: list[pulumi.Input[str]] = field(default_factory=list)
    """A native network's TGW attachment subnets, one per zone. Defaults to none: a connector creates its own subnets
    (appliance, GWLB, TGW attachment, egress) from the plan's addresses, which must be free in the VPC."""
    fabric_route_table_ids: list[pulumi.Input[str]] = field(default_factory=list)
    """Route tables of those subnets. Defaults to none."""
    egress: Egress = "none"
    """How the connector reaches the edges' Elastic IPs (the public fallback path). Valid values: `none` (the
    private path only: the fabric adds no internet gateway, NAT gateway or public route to a VPC it does not own),
    `nat-gateway` (a NAT gateway per zone in the connector's egress subnets, behind `internet_gateway_id`).
    Defaults to none."""
    internet_gateway_id: pulumi.Input[str] | None = None
    """With `egress: nat-gateway`: the VPC's internet gateway (a VPC has at most one). Defaults to none: the
    fabric creates and attaches one, which AWS refuses if the VPC already has one."""
    interface_endpoints: bool = True
    """Create the interface endpoints (ssm, ssmmessages, ec2messages, ec2) with private DNS in the VPC. Set false
    when the VPC already resolves those services privately (AWS refuses a second private DNS name for a service in
    one VPC); the connector VMs then keep HTTPS out to anywhere. Defaults to true."""


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
    """The account's quotas the plan must fit (security groups, prefix lists, Elastic IPs, NAT gateways, internet
    gateways, VPC endpoints). Defaults to AWS's defaults."""
    fabric_ca: FabricCa | None = None
    """The fabric CA that signs each edge's and connector's certificate (components.fabric_ca). Required when the spec has
    AWS edges or connectors."""
    parameter_kms_key_ids: Mapping[str, str] = field(default_factory=dict)
    """ARN of a customer-managed KMS key for the nodes' SecureString parameters, by region (keys are regional); each
    node's role may decrypt with it only its own parameters. Defaults to the AWS-managed aws/ssm key in every region."""

    def egress(self, network: str) -> Egress:
        """A connector's egress: an existing VPC's own setting (default none), `nat-gateway` in a VPC the fabric builds."""
        existing = self.existing_networks.get(network)
        return existing.egress if existing is not None else "nat-gateway"

    def interface_endpoints(self, network: str) -> bool:
        """Whether the connector of `network` creates the interface endpoints (always in a VPC the fabric builds)."""
        existing = self.existing_networks.get(network)
        return existing is None or existing.interface_endpoints

    def creates_internet_gateway(self, network: str) -> bool:
        """Whether the connector of `network` creates an internet gateway for its NAT gateways."""
        existing = self.existing_networks.get(network)
        return self.egress(network) == "nat-gateway" and (existing is None or existing.internet_gateway_id is None)

    @classmethod
    def from_config(cls, config: pulumi.Config) -> AwsOptions:
        """Read the options from stack config (all optional): awsImageId, awsInstanceType,
        awsTransitGatewayAsn, awsHostedConnections {circuit: dxcon id},
        awsExistingNetworks {network: {vpcId, workloadRouteTableIds, fabricSubnetIds, fabricRouteTableIds, egress,
        internetGatewayId, interfaceEndpoints}}, awsQuotas {securityGroupRules, prefixListsPerRegion,
        elasticIpsPerRegion, natGatewaysPerZone, internetGatewaysPerRegion, endpointsPerVpc} (raised quotas),
        awsParameterKmsKeyIds {region: key ARN}, and the fabric CA (fabricCaCert, fabricCaKey as a secret)."""
        existing = config.get_object("awsExistingNetworks") or {}
        quotas = config.get_object("awsQuotas") or {}
        return cls(
            image_id=config.get("awsImageId"),
            instance_type=config.get("awsInstanceType") or "c6in.large",
            transit_gateway_asn=config.get_int("awsTransitGatewayAsn") or 64512,
            hosted_connection_ids=dict(config.get_object("awsHostedConnections") or {}),
            fabric_ca=FabricCa.from_config(config), parameter_kms_key_ids=dict(config.get_object("awsParameterKmsKeyIds") or {}),
            quotas=AwsQuotas(**{k: int(quotas[c]) for k, c in QUOTA_KEYS if c in quotas}),
            existing_networks={
                name: ExistingNetwork(
                    vpc_id=v["vpcId"], workload_route_table_ids=list(v["workloadRouteTableIds"]),
                    fabric_subnet_ids=list(v.get("fabricSubnetIds", [])), fabric_route_table_ids=list(v.get("fabricRouteTableIds", [])),
                    egress=v.get("egress", "none"), internet_gateway_id=v.get("internetGatewayId"),
                    interface_endpoints=bool(v.get("interfaceEndpoints", True)),
                )
                for name, v in existing.items()
            },
        )
