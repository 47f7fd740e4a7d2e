"""Which destinations each AWS route table sends where: pure route selection.

A connector network routes only what the policy lets it reach (or be reached
from: replies must take the same path) to its GWLB endpoint, never 0.0.0.0/0,
so traffic the policy denies anyway never leaves the VPC. A native network
sends the same destinations to the transit gateway. Destinations are whole
remote network CIDRs, merged only where the merge is exact (no route ever
captures an address outside the fabric). Nothing here imports Pulumi.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, collapse_addresses
from typing import Literal

from components.aws.space import AddressSet, Box

Target = Literal["gwlb-endpoint", "transit-gateway"]

TARGET_BY_ATTACH: dict[str, Target] = {"connector": "gwlb-endpoint", "native": "transit-gateway"}
"""Where an onboarded AWS network sends remote destinations, by its `attach` mode."""


@dataclass(frozen=True)
class NetworkAddresses:
    """An onboarded network's name and CIDRs (any cloud)."""

    name: str
    cidrs: tuple[IPv4Network, ...]


@dataclass(frozen=True)
class AwsRoute:
    """One route: in the route tables of `network`, send `destination` to `target`."""

    network: str
    destination: str
    target: Target


def reachable_destinations(
    network: NetworkAddresses, others: list[NetworkAddresses], boxes: list[Box]
) -> list[IPv4Network]:
    """Remote CIDRs that a permitted flow can go to or come from, exactly merged."""
    own = AddressSet.from_cidrs(network.cidrs)
    out: list[IPv4Network] = []
    for other in others:
        if other.name == network.name:
            continue
        remote = AddressSet.from_cidrs(other.cidrs)
        if any(_talks(box, own, remote) for box in boxes):
            out.extend(other.cidrs)
    return list(collapse_addresses(out))


def _talks(box: Box, own: AddressSet, remote: AddressSet) -> bool:
    return bool((box.src & own and box.dst & remote) or (box.src & remote and box.dst & own))


def network_routes(
    network: NetworkAddresses, attach: str, others: list[NetworkAddresses], boxes: list[Box]
) -> list[AwsRoute]:
    """The routes one onboarded AWS network's workload route tables get."""
    target = TARGET_BY_ATTACH[attach]
    return [AwsRoute(network.name, str(cidr), target) for cidr in reachable_destinations(network, others, boxes)]
