"""Compile the fabric's segmentation intent into the data plane's FilterPolicy.

The spec names endpoints (`any`, a network, a group of CIDRs and networks);
the data plane and the cloud rule compilers need addresses. This module does
that resolution once, so every enforcement point starts from the same reading
of the intent, and builds the FilterPolicy of each enforcement point:

- a connector enforces at ingress (interception) and at egress (delivery) for
  its network, so its scope is every flow from or to that network;
- an edge enforces for the networks it serves natively; as the far edge it
  checks every flow it delivers to them (egress) and every flow they send.

A point keeps the rules whose source or destination can overlap its scope.
A rule it drops has both ends outside the scope, so it can never match a
flow the point sees: the first-match result is the same for every flow in
scope, and the compiled tables stay small. `any` means every onboarded network
(spec_types.RESERVED_NAMES), never 0.0.0.0/0, so no compiled rule opens a
point to addresses outside the fabric. The compilers (data plane, AWS, Azure,
GCP) all start from `resolve_rules`; `components.policy_intent`, the
reference, resolves the same names on its own, and `transit check` compares
the two on every flow it samples. Never imports Pulumi.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, collapse_addresses

from components.spec import FabricSpec, Network, Rule
from components.spec_checks import home_edge
from components.spec_types import parse_port_range
from dataplane.config import Member
from dataplane.filter_model import FilterPolicy, FilterRule

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


def _overlaps(nets: tuple[IPv4Network, ...] | list[IPv4Network], scope: list[IPv4Network]) -> bool:
    return any(net.overlaps(other) for net in nets for other in scope)


def _filter_rule(rule: ResolvedRule) -> FilterRule:
    return FilterRule(
        name=rule.name,
        action=rule.action,  # type: ignore[arg-type]
        src=list(rule.src),
        dst=list(rule.dst),
        proto=rule.proto,  # type: ignore[arg-type]
        ports=list(rule.ports),
    )


def fabric_filter(spec: FabricSpec) -> FilterPolicy:
    """The whole policy as one FilterPolicy (what a point with no narrower scope enforces)."""
    return FilterPolicy(default=spec.policy.default, rules=[_filter_rule(r) for r in resolve_rules(spec)])


def scoped_filter(spec: FabricSpec, scope: list[IPv4Network]) -> FilterPolicy:
    """The rules that can match a flow from or to `scope`, in policy order."""
    rules = [_filter_rule(r) for r in resolve_rules(spec) if _overlaps(r.src, scope) or _overlaps(r.dst, scope)]
    return FilterPolicy(default=spec.policy.default, rules=rules)


def connector_filter(spec: FabricSpec, network: str) -> FilterPolicy:
    """Policy of the connector of `network` (ingress and egress of that network)."""
    return scoped_filter(spec, endpoint_cidrs(spec, network))


def served_networks(spec: FabricSpec, edge: str) -> list[Network]:
    """Networks whose home edge (as the plan chooses it) is `edge`."""
    return [network for network in spec.networks if (home := home_edge(spec, network)) is not None and home.name == edge]


def edge_scope(spec: FabricSpec, edge: str) -> list[IPv4Network]:
    """CIDRs of the networks an edge serves natively (no connector of their own)."""
    return [cidr for network in served_networks(spec, edge) if network.attach == "native" for cidr in network.cidrs]


def edge_filter(spec: FabricSpec, edge: str) -> FilterPolicy:
    """Policy of `edge` as the far edge of the networks it serves natively."""
    return scoped_filter(spec, edge_scope(spec, edge))


def fabric_members(spec: FabricSpec) -> list[Member]:
    """Every node that speaks for networks, with their CIDRs: the `members` of every agent of the fabric.

    A network with a connector is spoken for by `connector-<network>` (an
    on-prem one: the CIDRs its DC router announces, which the spec lists); a
    native network by its home edge, `edge-<edge>`. Edges without native
    networks are listed with no prefix: they relay, never originate or deliver.
    """
    owned: dict[str, list[IPv4Network]] = {f"spiffe://{spec.name}/edge-{edge.name}": [] for edge in spec.edges}
    for network in spec.networks:
        if network.attach == "native":
            home = home_edge(spec, network)
            if home is None:
                continue
            owner = f"spiffe://{spec.name}/edge-{home.name}"
        else:
            owner = f"spiffe://{spec.name}/connector-{network.name}"
        owned.setdefault(owner, []).extend(network.cidrs)
    return [Member(identity=identity, cidrs=cidrs) for identity, cidrs in owned.items()]
