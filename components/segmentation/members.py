"""Who speaks for which prefixes: the `members` every agent of a fabric is given.

Segmentation judges flows by address; the data plane trusts an address only
from the identity that owns it (docs/security.md). A network with a
connector is spoken for by `connector-<network>` (an on-prem one: the CIDRs
its DC router announces, which the spec lists); a native network by its
home edge, `edge-<edge>`. Edges without native networks are listed with no
prefix: they relay, never originate or deliver. Never imports Pulumi.
"""
from __future__ import annotations

from ipaddress import IPv4Network

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
