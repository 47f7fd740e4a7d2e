"""Which destinations each AWS route table sends where: pure route selection.

A connector network routes only what the policy lets it reach (or be reached
from: replies must take the same path) to its GWLB endpoint, never 0.0.0.0/0,
so traffic the policy denies anyway never leaves the VPC. A native network
sends the same destinations to the transit gateway. A destination that a
Direct Connect circuit reaches (through the cloud router's VRF, seed 004) gets
no static route: the VGW propagates the BGP-learned route, and a static route
would win over it and pull the traffic off the circuit. Destinations are whole
remote network CIDRs, merged only where the merge is exact (no route ever
captures an address outside the fabric). Nothing here imports Pulumi.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Network, collapse_addresses
from typing import Literal

from components.segmentation.intervals import AddressSet, Box

Target = Literal["gwlb-endpoint", "transit-gateway", "circuit-propagated"]

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


def reachability(networks: list[NetworkAddresses], boxes: list[Box]) -> dict[str, list[NetworkAddresses]]:
    """For every network, the other networks a permitted flow can go to or come from.

    One pass over the boxes: which networks each box's sources and destinations
    touch; then a network reaches the destinations of the boxes whose sources
    touch it, and the sources of the boxes whose destinations touch it.
    """
    sets = [AddressSet.from_cidrs(n.cidrs) for n in networks]
    touches = [
        ({i for i, a in enumerate(sets) if box.src & a}, {i for i, a in enumerate(sets) if box.dst & a}) for box in boxes
    ]
    out: dict[str, list[NetworkAddresses]] = {}
    for i, network in enumerate(networks):
        peers: set[int] = set()
        for srcs, dsts in touches:
            if i in srcs:
                peers |= dsts
            if i in dsts:
                peers |= srcs
        peers.discard(i)
        out[network.name] = [networks[j] for j in sorted(peers)]
    return out


def reachable_destinations(
    network: NetworkAddresses, others: list[NetworkAddresses], boxes: list[Box]
) -> list[IPv4Network]:
    """Remote CIDRs that a permitted flow can go to or come from, exactly merged."""
    everyone = [network, *(o for o in others if o.name != network.name)]
    return list(collapse_addresses(c for other in reachability(everyone, boxes)[network.name] for c in other.cidrs))


def network_routes(
    network: NetworkAddresses,
    attach: str,
    reachable: list[NetworkAddresses],
    via_circuit: frozenset[str] = frozenset(),
) -> list[AwsRoute]:
    """The routes one onboarded AWS network's workload route tables get, given what it reaches.

    `via_circuit` names the networks a circuit reaches from this one; their
    routes are listed as `circuit-propagated` and never created statically.
    """
    out = []
    for target, group in (
        (TARGET_BY_ATTACH[attach], [o for o in reachable if o.name not in via_circuit]),
        ("circuit-propagated", [o for o in reachable if o.name in via_circuit]),
    ):
        out += [AwsRoute(network.name, cidr, target) for cidr in _collapsed(tuple(c for o in group for c in o.cidrs))]  # type: ignore[arg-type]
    return out


@lru_cache(maxsize=4096)
def _collapsed(cidrs: tuple[IPv4Network, ...]) -> tuple[str, ...]:
    """Exact merge of a destination set; networks of one tier share theirs, so it is computed once."""
    return tuple(str(c) for c in collapse_addresses(cidrs))
