"""The one AgentConfig builder every target uses: the plan's agent plus the target's addresses.

The plan decides who an agent is, what it serves, whom it talks to, its
filter (components.plan_agents) and which of the fabric's members (which
identity speaks for which prefixes, components.segmentation.members) it must
know. A target adds only what it alone knows:
where each peer is reached (its private and public addresses, and ports when
they are not the agent's defaults), what this agent listens on, and where its
TLS material is. A peer the target gives no address is one that stack cannot
reach (a node of another target), so it is left out. A target whose routes
bring an agent only some destinations may narrow a peer's prefixes to them.
Never imports Pulumi.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from components.plan_models import AgentPlan
from dataplane.config import AgentConfig, GeneveSettings, ListenConfig, Member, PeerConfig, TlsPaths


@dataclass(frozen=True)
class PeerAddress:
    """Where one peer is reached, as its target knows it."""

    private: IPv4Address | str
    """Its address on the private path (backbone, TGW, circuit)."""
    public: IPv4Address | str | None = None
    """Its address on the public path (internet). Defaults to none (private only)."""
    tunnel_port: int | None = None
    """Its tunnel port. Defaults to the AgentConfig default."""
    probe_port: int | None = None
    """Its probe port. Defaults to the AgentConfig default."""
    cidrs: list[IPv4Network] | list[str] | None = None
    """Narrower prefixes than the plan's, when the target's routes bring only those. Defaults to the plan's."""


def agent_config(
    agent: AgentPlan,
    members: list[Member],
    addresses: Mapping[str, PeerAddress],
    tls: TlsPaths,
    *,
    listen: ListenConfig | None = None,
    flow_log: str | None = None,
    geneve: GeneveSettings | None = None,
) -> AgentConfig:
    """The AgentConfig of `agent`, with its share of the fabric's `members` (the plan's) and its peers placed at `addresses` (peer name -> address)."""
    wanted = set(agent.members)
    peers = []
    for peer in agent.peers:
        where = addresses.get(peer.name)
        if where is None:
            continue
        ports = {k: v for k, v in (("tunnel_port", where.tunnel_port), ("probe_port", where.probe_port)) if v is not None}
        peers.append(PeerConfig(
            name=peer.name, identity=peer.identity, private_addr=where.private, public_addr=where.public,  # type: ignore[arg-type]
            cidrs=peer.cidrs if where.cidrs is None else where.cidrs, **ports,  # type: ignore[arg-type]
        ))
    extra = {k: v for k, v in (("listen", listen), ("geneve", geneve)) if v is not None}
    return AgentConfig(
        name=agent.name, role=agent.role, identity=agent.identity, local_cidrs=agent.local_cidrs,  # type: ignore[arg-type]
        peers=peers, filter=agent.filter, tls=tls, members=[m for m in members if m.identity in wanted], flow_log=flow_log, **extra,  # type: ignore[arg-type]
    )
