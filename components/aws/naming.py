"""Stable names and address helpers for AWS children: pure, no Pulumi.

Child names come from spec names and positions (zone index, CIDR text), never
from cloud ids, so a resource keeps its identity across runs.
"""
from __future__ import annotations

import re
from ipaddress import IPv4Network

_NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")

MIN_SUBNET_PREFIX = 28
"""AWS refuses subnets smaller than /28."""


def check_name(field: str, value: str) -> str | None:
    """A problem message when `value` is not a DNS-safe name, else None."""
    if not _NAME_RE.match(value):
        return f"{field} {value!r} must be 1-63 lowercase letters, digits and hyphens, starting with a letter"
    return None


def cidr_slug(cidr: str | IPv4Network) -> str:
    """A CIDR as a name part: 10.30.40.0/24 -> 10-30-40-0-24."""
    return str(cidr).replace(".", "-").replace("/", "-")


def split_cidr(cidr: str | IPv4Network, parts: int) -> list[IPv4Network]:
    """Cut a CIDR into `parts` equal subnets (rounded up to a power of two), first ones first."""
    network = IPv4Network(cidr)
    bits = max(0, (parts - 1).bit_length())
    if network.prefixlen + bits > MIN_SUBNET_PREFIX:
        raise ValueError(f"{network} is too small to cut into {parts} subnets of /{MIN_SUBNET_PREFIX} or larger")
    return list(network.subnets(prefixlen_diff=bits))[:parts]


def endpoint_ip(subnet: str | IPv4Network) -> str:
    """The fixed private address of a load balancer in a subnet: the first one AWS does not reserve (.4)."""
    return str(IPv4Network(subnet)[4])
