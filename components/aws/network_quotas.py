"""AWS quotas the layout's network resources must fit, checked before anything exists. Pure.

The connector's egress and endpoints add resources AWS counts per region, per
zone and per VPC: an Elastic IP and a NAT gateway per zone of every connector
with `nat-gateway` egress (beside one Elastic IP per zone of every edge's
NLB), an internet gateway per VPC that gets one, and per connector VPC four
interface endpoints (ssm, ssmmessages, ec2messages, ec2) plus one GWLB
endpoint per zone. AWS would refuse the one over the quota mid-`pulumi up`;
`transit validate`, `transit plan` and the build refuse it first, naming the
network and the quota to raise.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from components.aws.planning import AwsLayout
from components.aws.quotas import AwsQuotas

INTERFACE_SERVICES = ("ssm", "ssmmessages", "ec2messages", "ec2")
"""What a booting connector VM calls privately: SSM (its parameters, the agent's channel) and EC2 (its source/destination check)."""


def network_quota_problems(
    layout: AwsLayout, quotas: AwsQuotas, egress: Callable[[str], str], creates_igw: Callable[[str], bool],
    interface_endpoints: Callable[[str], bool],
) -> list[str]:
    """Every region, zone and VPC of `layout` over `quotas`, each naming the first network past the quota and the fix."""
    out: list[str] = []
    eips: Counter[str] = Counter({e.region: 0 for e in layout.edges})
    igws: Counter[str] = Counter()
    nats: Counter[tuple[str, int]] = Counter()
    for e in layout.edges:
        eips[e.region] += len(e.zones)  # the public NLB's Elastic IP per zone
        igws[e.region] += 1
    for n in layout.networks:
        if n.attach != "connector":
            continue
        path = f"networks[{n.index}]"
        endpoints = len(n.zones) + (len(INTERFACE_SERVICES) if interface_endpoints(n.name) else 0)
        if endpoints > quotas.endpoints_per_vpc:
            out.append(
                f"{path}: the connector's VPC would hold {endpoints} interface and GWLB endpoints, over the AWS quota of "
                f"{quotas.endpoints_per_vpc} per VPC; raise the quota and set aws.quotas.endpoints_per_vpc"
            )
        if egress(n.name) != "nat-gateway":
            continue
        eips[n.region] += len(n.zones)
        for zone in range(len(n.zones)):
            nats[(n.region, zone)] += 1
            if nats[(n.region, zone)] == quotas.nat_gateways_per_zone + 1:
                out.append(
                    f"{path}: its egress puts a NAT gateway in zone {n.zones[zone]}, which would then hold "
                    f"{nats[(n.region, zone)]}, over the AWS quota of {quotas.nat_gateways_per_zone} NAT gateways per "
                    "Availability Zone; set aws.existing_networks.<network>.egress to none where the private path is enough, "
                    "or raise the quota and set aws.quotas.nat_gateways_per_zone"
                )
        if eips[n.region] - len(n.zones) <= quotas.elastic_ips_per_region < eips[n.region]:
            out.append(
                f"{path}: its NAT gateways' Elastic IPs bring region {n.region} to {eips[n.region]} (one per zone of each "
                f"edge's NLB and of each connector's NAT gateways), over the AWS quota of {quotas.elastic_ips_per_region} "
                "Elastic IPs per region; set its egress to none, or raise the quota and set aws.quotas.elastic_ips_per_region"
            )
        if creates_igw(n.name):
            igws[n.region] += 1
            if igws[n.region] == quotas.internet_gateways_per_region + 1:
                out.append(
                    f"{path}: its internet gateway brings region {n.region} to {igws[n.region]} internet gateways, over the "
                    f"AWS quota of {quotas.internet_gateways_per_region} per region; name the VPC's own gateway "
                    "(aws.existing_networks.<network>.internet_gateway_id), or raise the quota and set "
                    "aws.quotas.internet_gateways_per_region"
                )
    for region, count in sorted(eips.items()):
        if count > quotas.elastic_ips_per_region and not any(f"region {region} to" in p and "Elastic IPs" in p for p in out):
            out.append(
                f"edges: the AWS edges' NLBs in region {region} need {count} Elastic IPs (one per zone), over the AWS quota "
                f"of {quotas.elastic_ips_per_region} per region; raise the quota and set aws.quotas.elastic_ips_per_region"
            )
    return out
