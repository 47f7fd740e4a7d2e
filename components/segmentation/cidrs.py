"""CIDR containment shared by every compiler: which parts of a rule end a scope holds."""
from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, collapse_addresses


def within(nets: Iterable[IPv4Network], scope: Iterable[IPv4Network]) -> list[IPv4Network]:
    """The parts of `nets` inside `scope`, collapsed (CIDRs either nest or are disjoint)."""
    scope = list(scope)
    out: list[IPv4Network] = []
    for net in nets:
        for other in scope:
            if net.subnet_of(other):
                out.append(net)
            elif other.subnet_of(net):
                out.append(other)
    return list(collapse_addresses(out))


def overlaps(nets: Iterable[IPv4Network], scope: Iterable[IPv4Network]) -> bool:
    """True when some address is in both."""
    scope = list(scope)
    return any(net.overlaps(other) for net in nets for other in scope)
