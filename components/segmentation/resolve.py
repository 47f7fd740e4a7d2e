"""The rule resolver: the spec's named rule endpoints turned into addresses, once.

The spec names endpoints (`any`, a network, a group of CIDRs and networks);
every compiler needs addresses. Resolving here, once, means every
enforcement point starts from the same reading of the intent. `any` means
every onboarded network (spec_types.RESERVED_NAMES), never 0.0.0.0/0, so no
compiled rule opens a point to addresses outside the fabric. The compilers
(data plane, AWS, Azure, GCP) all start from `resolve_rules`;
`segmentation.intent`, the reference, resolves the same names on its own, and
`transit check` compares the two on every flow it samples. Never imports Pulumi.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, collapse_addresses

from components.spec import FabricSpec, Rule
from components.spec_types import parse_port_range

ANY = "any"


@dataclass(frozen=True)
class ResolvedRule:
    """A spec rule with its endpoints turned into address lists (never empty)."""

    index: int
    name: str
    action: str
    src: tuple[IPv4Network, ...]
    dst: tuple[IPv4Network, ...]
    proto: str
    ports: tuple[tuple[int, int], ...]
    src_name: str
    dst_name: str


def onboarded_space(spec: FabricSpec) -> list[IPv4Network]:
    """Every onboarded network's CIDRs, collapsed: what `any` stands for."""
    return list(collapse_addresses(cidr for network in spec.networks for cidr in network.cidrs))


def endpoint_cidrs(spec: FabricSpec, name: str) -> list[IPv4Network]:
    """Addresses a rule endpoint stands for: `any`, a network, a group or a literal CIDR."""
    if name == ANY:
        return onboarded_space(spec)
    networks = {network.name: network for network in spec.networks}
    if name in networks:
        return list(collapse_addresses(networks[name].cidrs))
    if name in spec.groups:
        out: list[IPv4Network] = []
        for member in spec.groups[name]:
            out.extend(networks[member].cidrs if member in networks else [IPv4Network(member)])
        return list(collapse_addresses(out))
    return [IPv4Network(name)]


def rule_ports(rule: Rule) -> tuple[tuple[int, int], ...]:
    """A rule's inclusive port ranges; empty means every port."""
    return tuple(parse_port_range(item) for item in rule.ports or ())


def resolve_rules(spec: FabricSpec) -> list[ResolvedRule]:
    """The ordered policy with every endpoint resolved to addresses."""
    return [
        ResolvedRule(
            index=index,
            name=rule.name,
            action=rule.action,
            src=tuple(endpoint_cidrs(spec, rule.from_)),
            dst=tuple(endpoint_cidrs(spec, rule.to)),
            proto=rule.proto,
            ports=rule_ports(rule),
            src_name=rule.from_,
            dst_name=rule.to,
        )
        for index, rule in enumerate(spec.policy.rules)
    ]


def endpoint_entries(spec: FabricSpec, name: str) -> tuple[IPv4Network, ...]:
    """The address entries an endpoint names, unmerged: `any` is every network's CIDRs, a group its members'.

    What a per-address compiler would explode (seed 002), so the AWS compiler counts its Cartesian product from these.
    """
    networks = {n.name: n for n in spec.networks}
    if name == ANY:
        return tuple(c for n in spec.networks for c in n.cidrs)
    if name in networks:
        return tuple(networks[name].cidrs)
    if name in spec.groups:
        return tuple(c for m in spec.groups[name] for c in (networks[m].cidrs if m in networks else [IPv4Network(m)]))
    return (IPv4Network(name),)
