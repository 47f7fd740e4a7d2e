"""What each circuit provider sells and how it numbers a BGP peering.

Lookup tables, not `if provider == ...` branches: the spec checks and the plan
read the same facts from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Provider = Literal["aws-direct-connect", "azure-expressroute", "gcp-interconnect"]
Connection = Literal["hosted", "dedicated"]

# Bandwidths in Mbps, per provider and connection type.
BANDWIDTHS_MBPS: dict[tuple[str, str], tuple[int, ...]] = {
    # AWS Direct Connect hosted connections (AllocateHostedConnection `bandwidth`):
    # https://docs.aws.amazon.com/directconnect/latest/APIReference/API_AllocateHostedConnection.html
    # "50Mbps, 100Mbps, 200Mbps, 300Mbps, 400Mbps, 500Mbps, 1Gbps, 2Gbps, 5Gbps, 10Gbps, and 25Gbps"
    ("aws-direct-connect", "hosted"): (50, 100, 200, 300, 400, 500, 1000, 2000, 5000, 10000, 25000),
    # AWS Direct Connect dedicated connections: 1, 10, 100 and 400 Gbps ports.
    # https://docs.aws.amazon.com/directconnect/latest/UserGuide/dedicated_connection.html
    ("aws-direct-connect", "dedicated"): (1000, 10000, 100000, 400000),
    # Azure ExpressRoute circuits through a connectivity provider:
    # https://learn.microsoft.com/en-us/azure/expressroute/expressroute-faqs
    # ("50 Mbps, 100 Mbps, 200 Mbps, 500 Mbps, 1 Gbps, 2 Gbps, 5 Gbps, 10 Gbps")
    ("azure-expressroute", "hosted"): (50, 100, 200, 500, 1000, 2000, 5000, 10000),
    # ExpressRoute Direct ports are 10 or 100 Gbps; circuits on them are
    # 1, 2, 5, 10 Gbps (10G port) and 5, 10, 40, 100 Gbps (100G port):
    # https://learn.microsoft.com/en-us/azure/expressroute/expressroute-erdirect-about
    ("azure-expressroute", "dedicated"): (1000, 2000, 5000, 10000, 40000, 100000),
    # GCP Partner Interconnect VLAN attachment capacities (InterconnectAttachment `bandwidth`,
    # BPS_50M .. BPS_50G): https://cloud.google.com/compute/docs/reference/rest/v1/interconnectAttachments
    ("gcp-interconnect", "hosted"): (50, 100, 200, 300, 400, 500, 1000, 2000, 5000, 10000, 20000, 50000),
    # GCP Dedicated Interconnect circuits are 10 or 100 Gbps:
    # https://cloud.google.com/network-connectivity/docs/interconnect/concepts/dedicated-overview
    ("gcp-interconnect", "dedicated"): (10000, 100000),
}


@dataclass(frozen=True)
class PeeringRule:
    """The peering subnets a provider accepts and who gets which address.

    `customer_host` and `provider_host` index the subnet's addresses
    (0 = network address): a /31 has no network or broadcast address.
    """

    cloud: str
    count: int
    prefixes: tuple[int, ...]
    customer_host: dict[int, int]
    provider_host: dict[int, int]
    within: str | None
    describe: str
    reserved_customer_asns: tuple[int, ...] = ()
    fixed_peer_asn: int | None = None


PEERING_RULES: dict[str, PeeringRule] = {
    # Seed 004: the cloud router (customer) takes 10.0.0.0 of 10.0.0.0/31 and
    # AWS 10.0.0.1; on a /30 the customer takes the first usable address.
    "aws-direct-connect": PeeringRule(
        cloud="aws",
        count=1,
        prefixes=(30, 31),
        customer_host={31: 0, 30: 1},
        provider_host={31: 1, 30: 2},
        within=None,
        describe="exactly one /30 or /31 subnet",
    ),
    # Azure private peering: a primary and a secondary /30 (no /31, seed 004);
    # Microsoft takes the second usable address, the customer the first.
    # https://learn.microsoft.com/en-us/azure/expressroute/expressroute-routing
    "azure-expressroute": PeeringRule(
        cloud="azure",
        count=2,
        prefixes=(30,),
        customer_host={30: 1},
        provider_host={30: 2},
        within=None,
        describe="exactly two /30 subnets (primary, then secondary); /31 is refused by Azure",
        reserved_customer_asns=(65515, 65516, 65517, 65518, 65519, 65520),
        fixed_peer_asn=12076,
    ),
    # GCP VLAN attachments use a link-local /29 (or /30); Cloud Router takes the
    # first usable address and the customer router the second.
    # https://cloud.google.com/compute/docs/reference/rest/v1/interconnectAttachments (candidateSubnets)
    "gcp-interconnect": PeeringRule(
        cloud="gcp",
        count=1,
        prefixes=(29, 30),
        customer_host={29: 2, 30: 2},
        provider_host={29: 1, 30: 1},
        within="169.254.0.0/16",
        describe="exactly one /29 or /30 subnet inside 169.254.0.0/16",
    ),
}

PROVIDER_CLOUD: dict[str, str] = {name: rule.cloud for name, rule in PEERING_RULES.items()}


def format_mbps(mbps: int) -> str:
    """Write 50 as '50 Mbps' and 10000 as '10 Gbps'."""
    return f"{mbps // 1000} Gbps" if mbps >= 1000 and mbps % 1000 == 0 else f"{mbps} Mbps"
