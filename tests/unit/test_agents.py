"""One AgentConfig builder: the plan's agents, placed by each target at its own addresses."""
from __future__ import annotations

from pathlib import Path

import pytest

from components.agents import PeerAddress, agent_config
from components.aws.agent_configs import connector_config, edge_config
from components.aws.planning import build_aws_layout
from components.segmentation.agent_filters import connector_filter, edge_filter
from components.loader import load_spec
from components.local.layout import build_layout
from components.plan import build_plan
from dataplane.config import TlsPaths

FABRICS = Path(__file__).resolve().parents[2] / "stacks" / "fabrics"
TLS = TlsPaths(ca="/t/ca.pem", cert="/t/node.pem", key="/t/node.key")


@pytest.mark.parametrize("fabric", ["seed000_aws_azure", "seed004_dx_er_cloud_router", "architecture_example"])
def test_the_plan_agents_carry_the_shared_policy_compilers_filters(fabric: str) -> None:
    spec = load_spec(FABRICS / f"{fabric}.yaml")
    agents = {a.name: a for a in build_plan(spec).agents}
    for network in spec.networks:
        if network.attach == "connector":
            assert agents[f"connector-{network.name}"].filter == connector_filter(spec, network.name)
    for edge in spec.edges:
        assert agents[f"edge-{edge.name}"].filter == edge_filter(spec, edge.name)


def test_local_and_aws_agents_are_the_same_plan_agent_at_different_addresses() -> None:
    spec = load_spec(FABRICS / "seed000_aws_azure.yaml")
    plan = build_plan(spec)
    agents = {a.name: a for a in plan.agents}
    layout = build_aws_layout(spec, plan)
    aws = {
        "edge-aws-use1": edge_config(agents["edge-aws-use1"], plan.members, layout, layout.edges[0], {"aws-use1": "203.0.113.7"}),
        "connector-aws-app": connector_config(agents["connector-aws-app"], plan.members, layout, layout.networks[0], {"aws-use1": "203.0.113.7"}),
    }
    local = {a.config.name: a.config for a in build_layout(spec, "t", plan).agents}
    for name, config in aws.items():
        same = ("name", "role", "identity", "local_cidrs", "filter", "members")
        assert config.model_dump(include=set(same)) == local[name].model_dump(include=set(same)), name
        assert str(config.tls.ca).startswith("/etc/transit/tls") and str(local[name].tls.ca).startswith("/run/transit/")
    # The AWS edge reaches only AWS peers; the local edge reaches every edge of the fabric.
    assert [p.name for p in aws["edge-aws-use1"].peers] == ["connector-aws-app"]
    assert [p.name for p in local["edge-aws-use1"].peers] == ["edge-az-weu", "connector-aws-app"]


def test_a_peer_the_target_cannot_address_is_left_out_and_a_narrower_prefix_list_wins() -> None:
    spec = load_spec(FABRICS / "architecture_example.yaml")
    agent = next(a for a in build_plan(spec).agents if a.role == "connector")
    [home] = agent.peers
    config = agent_config(agent, [], {}, TLS)
    assert config.peers == [] and config.filter == agent.filter
    narrowed = agent_config(agent, [], {home.name: PeerAddress(private="10.0.0.1", cidrs=["172.18.40.0/24"])}, TLS)
    assert [str(c) for c in narrowed.peers[0].cidrs] == ["172.18.40.0/24"]
    assert narrowed.peers[0].tunnel_port == 7443  # no port given: the agent's default
    whole = agent_config(agent, [], {home.name: PeerAddress(private="10.0.0.1", tunnel_port=8443)}, TLS)
    assert [str(c) for c in whole.peers[0].cidrs] == home.cidrs and whole.peers[0].tunnel_port == 8443


def test_transit_check_never_builds_the_local_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.checks import points
    from components.local import layout

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("transit check built the local layout")

    monkeypatch.setattr(layout._Builder, "build", refuse)  # every way of making a layout ends here
    names = [p.name for p in points.build_points(load_spec(FABRICS / "architecture_example.yaml"))]
    assert names[0] == "intent" and "aws:security-groups" in names and "dataplane:edge-az-weu" in names
