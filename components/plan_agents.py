"""The plan's agents: every transit-agent's identity, scope, peers and filter, pure.

One reading for every target: an edge delivers to the networks it serves
natively and talks to every other edge (for the networks homed there) and to
its connectors (for their networks); a connector serves its network and sends
everything remote to its home edge. Each agent's filter is its scoped share of
the policy, resolved and compiled once per fabric, and its members are those
the policy lets exchange traffic with what it serves or relays (an edge
relays for its connectors). Targets add only addresses,
ports and where TLS material comes from (components.agents). Never imports
Pulumi.
"""
from __future__ import annotations

from collections.abc import Sequence

from components.segmentation.agent_filters import edge_scope, scoper
from components.segmentation.members import member_scoper
from components.segmentation.resolve import endpoint_cidrs, resolve_rules
from components.plan_models import AgentPeerPlan, AgentPlan
from components.spec import FabricSpec, Network
from components.spec_checks import home_edge
from dataplane.config import Member


def identity(spec: FabricSpec, name: str) -> str:
    """The URI an agent's certificate carries: spiffe://<fabric>/<agent name>."""
    return f"spiffe://{spec.name}/{name}"


def plan_agents(spec: FabricSpec, members: Sequence[Member]) -> list[AgentPlan]:
    """Every agent of the fabric (edges in spec order, then connectors in spec order), given the fabric's `members`."""
    rules = resolve_rules(spec)
    scoped = scoper(spec, rules)
    needed = member_scoper(spec, members, rules)
    homes = {n.name: home.name for n in spec.networks if (home := home_edge(spec, n)) is not None}
    homed: dict[str, list[Network]] = {e.name: [] for e in spec.edges}
    for network in spec.networks:
        homed[homes[network.name]].append(network)
    edges = [
        AgentPlan(
            name=f"edge-{edge.name}", role="edge", node=edge.name, identity=identity(spec, f"edge-{edge.name}"),
            local_cidrs=[str(c) for n in homed[edge.name] if n.attach == "native" for c in n.cidrs],
            peers=[
                AgentPeerPlan(name=f"edge-{other.name}", identity=identity(spec, f"edge-{other.name}"),
                              cidrs=[str(c) for n in homed[other.name] for c in n.cidrs])
                for other in spec.edges
                if other.name != edge.name
            ] + [
                AgentPeerPlan(name=f"connector-{n.name}", identity=identity(spec, f"connector-{n.name}"),
                              cidrs=[str(c) for c in n.cidrs])
                for n in homed[edge.name]
                if n.attach == "connector"
            ],
            filter=scoped(edge_scope(spec, edge.name)),
            members=needed(
                [c for n in homed[edge.name] for c in n.cidrs],
                [identity(spec, f"edge-{edge.name}")] + [identity(spec, f"connector-{n.name}") for n in homed[edge.name] if n.attach == "connector"],
            ),
        )
        for edge in spec.edges
    ]
    connectors = [
        AgentPlan(
            name=f"connector-{n.name}", role="connector", node=n.name, identity=identity(spec, f"connector-{n.name}"),
            local_cidrs=[str(c) for c in n.cidrs],
            peers=[
                AgentPeerPlan(name=f"edge-{homes[n.name]}", identity=identity(spec, f"edge-{homes[n.name]}"),
                              cidrs=[str(c) for other in spec.networks if other.name != n.name for c in other.cidrs])
            ],
            filter=scoped(endpoint_cidrs(spec, n.name)),
            members=needed(list(n.cidrs), [identity(spec, f"connector-{n.name}")]),
        )
        for n in spec.networks
        if n.attach == "connector"
    ]
    return edges + connectors

