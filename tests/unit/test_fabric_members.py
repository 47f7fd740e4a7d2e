"""fabric_members and each agent's share: an agent knows who speaks for every network it may exchange traffic with, and no more."""
from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from bench.aws_scale import fabric_spec
from components.loader import load_spec
from components.local.layout import build_layout
from components.plan import build_plan
from components.plan_models import Plan
from components.segmentation.members import fabric_members
from components.segmentation.resolve import resolve_rules
from components.spec import FabricSpec, validate_spec

FABRICS = Path(__file__).resolve().parents[2] / "stacks" / "fabrics"


def _members(fabric: str) -> dict[str, list[str]]:
    return {m.identity: [str(c) for c in m.cidrs] for m in fabric_members(load_spec(FABRICS / f"{fabric}.yaml"))}


def test_a_connector_speaks_for_its_network_and_an_edge_for_its_native_ones() -> None:
    assert _members("seed000_aws_azure") == {
        "spiffe://aws-azure-transit/edge-aws-use1": [],
        "spiffe://aws-azure-transit/edge-az-weu": ["172.18.40.0/24"],
        "spiffe://aws-azure-transit/connector-aws-app": ["10.30.40.0/24"],
    }


def test_every_local_agent_holds_its_own_entry_with_its_local_cidrs() -> None:
    layout = build_layout(load_spec(FABRICS / "architecture_example.yaml"), "t")
    for agent in layout.agents:
        own = next(m for m in agent.config.members if m.identity == agent.config.identity)
        assert all(any(c.subnet_of(o) for o in own.cidrs) for c in agent.config.local_cidrs)


def _tiers(networks: int) -> tuple[FabricSpec, Plan]:
    spec = validate_spec(fabric_spec(networks))
    return spec, build_plan(spec)


def test_an_agent_knows_only_the_members_its_policy_lets_it_exchange_traffic_with() -> None:
    """bench.aws_scale's tiers: web and app talk, app and db talk, web and db never; so web never hears of db."""
    spec, plan = _tiers(30)
    agents = {a.name: a for a in plan.agents}
    web = set(agents["connector-web-0"].members)
    assert "spiffe://scale/connector-web-0" in web
    app_2 = next(n for n in spec.networks if n.name == "app-2")  # native: its home edge speaks for it
    assert "spiffe://scale/connector-app-0" in web and _owner(plan, app_2.cidrs[0]) in web
    assert not {m for m in web if "/connector-db-" in m}, "web may exchange nothing with db"
    assert not {m for m in web if "/connector-web-" in m} - {"spiffe://scale/connector-web-0"}, "web-to-web is not permitted"
    assert len(web) < len(plan.members) / 2


def _owner(plan: Plan, address: IPv4Network) -> str | None:
    return next((m.identity for m in plan.members if any(address.subnet_of(c) for c in m.cidrs)), None)


@pytest.mark.parametrize("fabric", ["seed000_aws_azure", "architecture_example", "seed004_dx_er_cloud_router", "bench"])
def test_every_agent_on_a_permitted_flows_path_knows_whom_it_must_judge_or_pin(fabric: str) -> None:
    """For every pair of networks a permit rule connects: the ingress knows who delivers the destination, and the
    ingress's edge, the far edge and the deliverer know who speaks for the source (dataplane/trust.py)."""
    spec, plan = _tiers(30) if fabric == "bench" else (s := load_spec(FABRICS / f"{fabric}.yaml"), build_plan(s))
    agents = {a.identity: a for a in plan.agents}
    home = {a.identity: a.peers[0].identity for a in plan.agents if a.role == "connector"}
    checked = 0
    for rule in resolve_rules(spec):
        if rule.action != "permit":
            continue
        for src_net in spec.networks:
            for dst_net in spec.networks:
                src, dst = src_net.cidrs[0], dst_net.cidrs[0]
                if src_net is dst_net or not any(src.overlaps(c) for c in rule.src) or not any(dst.overlaps(c) for c in rule.dst):
                    continue
                sender, deliverer = _owner(plan, src), _owner(plan, dst)
                if sender is None or deliverer is None:
                    continue  # a network no agent speaks for never crosses the fabric
                path = [sender, home.get(sender, sender), home.get(deliverer, deliverer), deliverer]
                assert deliverer in agents[sender].members, f"{rule.name}: {sender} cannot pin {dst} to {deliverer}"
                for hop in path[1:]:
                    assert sender in agents[hop].members, f"{rule.name}: {hop} cannot judge {src} from {sender}"
                checked += 1
    assert checked or fabric == "seed004_dx_er_cloud_router"
