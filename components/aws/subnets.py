"""The AWS connector's subnets per zone, carved once in the plan: pure, no Pulumi.

AWS's documented Gateway Load Balancer and Transit Gateway layouts keep the
load balancer, the appliances and the TGW attachment in subnets of their own,
each with its own route table. Per zone the connector gets:

| role | size | holds | route table |
|---|---|---|---|
| appliance | /26 | the VMs (up to `max_size` = 2 x 16), the internal NLB, the interface endpoints | local; edge CIDRs -> TGW; edges' Elastic IPs -> the zone's NAT gateway |
| gwlb | /28 | the GWLB node and the zone's GWLB endpoint | local only |
| attachment | /28 | the TGW attachment's interface | local only |
| egress | /28 | the zone's NAT gateway (egress `nat-gateway`; reserved otherwise) | 0.0.0.0/0 -> internet gateway |

The /26 holds the largest fleet a spec allows (16 instances, so 32 VMs at
`max_size`) beside the NLB's and four interface endpoints' interfaces and
AWS's five reserved addresses (42 of 64), so no instance count is refused.
The egress /28 is reserved even when unused, so choosing an egress later
moves no address. Subnets are packed downward from the end of the connector
range (the network's `connector_cidr`, else its first CIDR), largest first,
so they are aligned without gaps and the front of the network stays free
for workloads.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

from components.aws.naming import MIN_SUBNET_PREFIX

APPLIANCE_PREFIX = 26
"""The appliance subnet: 64 addresses, room for 2 x 16 VMs, the NLB and the interface endpoints."""
ROLES = ("appliance", "gwlb", "attachment", "egress")
"""The connector's subnets in each zone, in carving order (largest first)."""
PREFIXES = {"appliance": APPLIANCE_PREFIX, "gwlb": MIN_SUBNET_PREFIX, "attachment": MIN_SUBNET_PREFIX, "egress": MIN_SUBNET_PREFIX}


@dataclass(frozen=True)
class ConnectorZoneSubnets:
    """One zone's connector subnets (CIDRs)."""

    zone: str
    appliance: str
    gwlb: str
    attachment: str
    egress: str


def connector_addresses(zones: int) -> int:
    """Addresses the connector's subnets take for `zones` zones."""
    return zones * sum(2 ** (32 - p) for p in PREFIXES.values())


def smallest_range(zones: int) -> int:
    """The prefix of the smallest CIDR that holds the connector's subnets for `zones` zones."""
    need, prefix = connector_addresses(zones), 32
    while 2 ** (32 - prefix) < need:
        prefix -= 1
    return prefix


def carve_connector(block: IPv4Network, zones: list[str]) -> list[ConnectorZoneSubnets]:
    """Pack every zone's subnets downward from the end of `block`, largest first; ValueError if they do not fit."""
    end = int(block.broadcast_address) + 1
    carved: dict[str, list[str]] = {role: [] for role in ROLES}
    for role in ROLES:
        size = 2 ** (32 - PREFIXES[role])
        for _ in zones:
            end -= size  # sizes only shrink, so `end` stays aligned for every later subnet
            if end < int(block.network_address):
                raise ValueError(
                    f"{block} holds {block.num_addresses} addresses; the AWS connector's subnets for {len(zones)} zones "
                    f"need {connector_addresses(len(zones))} (per zone a /{APPLIANCE_PREFIX} appliance subnet and /28 GWLB, "
                    f"TGW attachment and egress subnets)"
                )
            carved[role].append(str(IPv4Network((end, PREFIXES[role]))))
    # The first zone takes the lowest subnet of each role, so the layout reads in zone order.
    return [
        ConnectorZoneSubnets(zone=z, **{role: carved[role][len(zones) - 1 - i] for role in ROLES}) for i, z in enumerate(zones)
    ]


def workload_subnets(cidr: IPv4Network, zones: int, taken: list[IPv4Network]) -> list[str]:
    """One workload subnet per zone: the largest equal blocks of `cidr` that the fabric's subnets leave free, first ones first."""
    for prefix in range(cidr.prefixlen + max(0, (zones - 1).bit_length()), MIN_SUBNET_PREFIX + 1):
        free = [s for s in cidr.subnets(new_prefix=prefix) if not any(s.overlaps(t) for t in taken)]
        if len(free) >= zones:
            return [str(s) for s in free[:zones]]
    raise ValueError(f"{cidr} leaves no /{MIN_SUBNET_PREFIX} per zone for workloads beside the fabric's subnets ({zones} zones)")
