"""Each agent's FilterPolicy: the rules its scope can see, in policy order.

- a connector enforces at ingress (interception) and at egress (delivery) for
  its network, so its scope is every flow from or to that network;
- an edge enforces for the networks it serves natively; as the far edge it
  checks every flow it delivers to them (egress) and every flow they send.

A point keeps the rules whose source or destination can overlap its scope.
A rule it drops has both ends outside the scope, so it can never match a
flow the point sees: the first-match result is the same for every flow in
scope, and the compiled tables stay small. `segmentation.nftables` turns a
FilterPolicy into the document the agent installs. Never imports Pulumi.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import IPv4Network

from components.segmentation.cidrs import overlaps
from components.segmentation.resolve import ResolvedRule, endpoint_cidrs, resolve_rules
from components.spec import FabricSpec, Network
from components.spec_checks import home_edge
from dataplane.filter_model import FilterPolicy, FilterRule


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


def scoper(spec: FabricSpec, rules: Sequence[ResolvedRule] | None = None) -> Callable[[list[IPv4Network]], FilterPolicy]:
    """`scoped_filter` for many scopes of one fabric: the rules (default: the spec's) are resolved and converted once."""
    compiled = [(r, _filter_rule(r)) for r in (resolve_rules(spec) if rules is None else rules)]

    def scoped(scope: list[IPv4Network]) -> FilterPolicy:
        kept = [f for r, f in compiled if overlaps(r.src, scope) or overlaps(r.dst, scope)]
        return FilterPolicy(default=spec.policy.default, rules=kept)

    return scoped


def scoped_filter(spec: FabricSpec, scope: list[IPv4Network], rules: Sequence[ResolvedRule] | None = None) -> FilterPolicy:
    """The rules (default: the spec's, resolved) that can match a flow from or to `scope`, in policy order."""
    return scoper(spec, rules)(scope)


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
