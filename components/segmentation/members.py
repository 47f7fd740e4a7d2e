"""Who speaks for which prefixes: the fabric's `members`, and the share of them each agent is given.

Segmentation judges flows by address; the data plane trusts an address only
from the identity that owns it (docs/security.md). A network with a
connector is spoken for by `connector-<network>` (an on-prem one: the CIDRs
its DC router announces, which the spec lists); a native network by its
home edge, `edge-<edge>`. Edges without native networks are listed with no
prefix: they relay, never originate or deliver.

An agent looks members up for two things only (dataplane/trust.py): the
owner of a stream's source, when it reads the header of a stream it delivers
or relays, and the owner of a destination, when it pins an end-to-end
session it originates. Both are flows through its scope (the prefixes it
serves and those it relays for) that the policy permits, so an agent needs
only the members whose prefixes the policy lets exchange traffic with its
scope; the fabric-wide list in every config grew with the square of the
fabric. Leaving a member out can only turn an accept into a refusal, never
the reverse: each prefix has one owner, so what is kept resolves as before.
Never imports Pulumi.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Network

from components.segmentation.cidrs import overlaps
from components.segmentation.resolve import ResolvedRule, resolve_rules
from components.spec import FabricSpec
from components.spec_checks import home_edge
from dataplane.config import Member


def fabric_members(spec: FabricSpec) -> list[Member]:
    """Every node that speaks for networks, with their CIDRs, in spec order (edges first)."""
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


def member_scoper(
    spec: FabricSpec, members: Sequence[Member], rules: Sequence[ResolvedRule] | None = None
) -> Callable[[list[IPv4Network], Iterable[str]], list[str]]:
    """`needed(scope, always)`: the identities an agent whose traffic runs through `scope` must know, in `members` order.

    A member is needed when some permit rule lets its prefixes send to the
    scope or receive from it (ports and earlier denies ignored: a superset of
    the flows the policy permits, never fewer), or when it is in `always` (the
    agent itself, the connectors an edge relays for). The policy's default is
    deny, so nothing else can reach or leave the scope.
    """
    permits = [r for r in (resolve_rules(spec) if rules is None else rules) if r.action == "permit"]
    talking = [(m.identity, m.cidrs) for m in members if m.cidrs]
    # Per rule, once: the members on each side.
    sides = [
        (r.src, r.dst, {i for i, cidrs in talking if overlaps(cidrs, r.src)}, {i for i, cidrs in talking if overlaps(cidrs, r.dst)})
        for r in permits
    ]
    order = [m.identity for m in members]

    def needed(scope: list[IPv4Network], always: Iterable[str]) -> list[str]:
        wanted = set(always)
        for src, dst, senders, receivers in sides:
            if overlaps(dst, scope):
                wanted |= senders
            if overlaps(src, scope):
                wanted |= receivers
        return [identity for identity in order if identity in wanted]

    return needed
