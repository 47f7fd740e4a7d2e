"""fabric_members: every agent of a fabric is told who speaks for which networks."""
from __future__ import annotations

from pathlib import Path

from components.segmentation.members import fabric_members
from components.loader import load_spec
from components.local.layout import build_layout

FABRICS = Path(__file__).resolve().parents[2] / "stacks" / "fabrics"


def _members(fabric: str) -> dict[str, list[str]]:
    return {m.identity: [str(c) for c in m.cidrs] for m in fabric_members(load_spec(FABRICS / f"{fabric}.yaml"))}


def test_a_connector_speaks_for_its_network_and_an_edge_for_its_native_ones() -> None:
    assert _members("seed000_aws_azure") == {
        "spiffe://aws-azure-transit/edge-aws-use1": [],
        "spiffe://aws-azure-transit/edge-az-weu": ["172.18.40.0/24"],
        "spiffe://aws-azure-transit/connector-aws-app": ["10.30.40.0/24"],
    }


def test_every_local_agent_gets_the_same_members_and_its_own_entry_holds_its_local_cidrs() -> None:
    layout = build_layout(load_spec(FABRICS / "architecture_example.yaml"), "t")
    lists = {tuple(m.identity for m in agent.config.members) for agent in layout.agents}
    assert len(lists) == 1
    for agent in layout.agents:
        own = next(m for m in agent.config.members if m.identity == agent.config.identity)
        assert all(any(c.subnet_of(o) for o in own.cidrs) for c in agent.config.local_cidrs)
