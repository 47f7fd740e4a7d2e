"""The pure AWS layout: addresses agree with the plan, routes follow the policy, configs validate."""
from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from components.aws.agent_configs import connector_config, edge_config
from components.aws.naming import cidr_slug, split_cidr
from components.aws.planning import aws_section, build_aws_layout
from components.aws.subnets import ROLES, carve_connector, workload_subnets
from components.loader import load_spec
from components.plan import build_plan
from components.spec import validate_spec

FABRICS = Path(__file__).resolve().parents[3] / "stacks" / "fabrics"


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = load_spec(FABRICS / f"{name}.yaml")
    return spec, build_plan(spec)


def test_edge_layout_takes_the_plans_subnets_and_carves_attachments_from_its_gateway_quarter() -> None:
    spec, plan = _load("seed000_aws_azure")
    layout = build_aws_layout(spec, plan)
    edge = layout.edges[0]
    assert edge.zones == plan.edges[0].zones == ["us-east-1-zone1", "us-east-1-zone2"]
    assert edge.public_subnets == [s.cidr for s in plan.edges[0].subnets]
    assert edge.attachment_subnets == ["10.250.37.192/28", "10.250.37.208/28"]
    assert all(IPv4Network(a).subnet_of(IPv4Network(plan.edges[0].gateway_cidr)) for a in edge.attachment_subnets)
    assert edge.private_ips == ["10.250.37.4", "10.250.37.68"]


def test_connector_layout_separates_appliances_gwlb_attachment_and_egress_per_zone() -> None:
    spec, plan = _load("seed000_aws_azure")
    network = build_aws_layout(spec, plan).networks[0]
    zones = [(z.zone, z.appliance, z.gwlb, z.attachment, z.egress) for z in network.connector_subnets]
    assert zones == [
        ("us-east-1-zone1", "10.30.40.128/26", "10.30.40.96/28", "10.30.40.64/28", "10.30.40.32/28"),
        ("us-east-1-zone2", "10.30.40.192/26", "10.30.40.112/28", "10.30.40.80/28", "10.30.40.48/28"),
    ]
    # The appliances' subnets are what the TGW and the edge reach; the internal NLB takes .4 of each.
    assert network.fabric_subnets == ["10.30.40.128/26", "10.30.40.192/26"]
    assert network.endpoint_ips == ["10.30.40.132", "10.30.40.196"]
    # Workloads keep the front of the network (seed 000's 10.30.40.10 is in zone 1's), clear of every fabric subnet.
    assert network.workload_subnets == ["10.30.40.0/28", "10.30.40.16/28"]
    fabric = [IPv4Network(getattr(z, r)) for z in network.connector_subnets for r in ROLES]
    every = [*fabric, *map(IPv4Network, network.workload_subnets)]
    assert not any(a.overlaps(b) for i, a in enumerate(every) for b in every[i + 1:])
    assert all(s.subnet_of(IPv4Network("10.30.40.0/24")) for s in every)
    assert network.destinations == ["172.18.40.0/24"] and network.edge_cidrs == ["10.250.37.0/24"]
    with pytest.raises(ValueError, match="leaves no /28 per zone"):
        workload_subnets(IPv4Network("10.0.0.0/26"), 3, [IPv4Network("10.0.0.0/27")])


def test_the_appliance_subnet_holds_the_largest_fleet_a_spec_allows_beside_the_nlb_and_the_endpoints() -> None:
    [zone] = carve_connector(IPv4Network("10.0.0.0/25"), ["z1"])
    vms_at_max_size, nlb, interface_endpoints, reserved = 2 * 16, 1, 4, 5
    assert IPv4Network(zone.appliance).num_addresses >= vms_at_max_size + nlb + interface_endpoints + reserved
    # Three zones need 336 addresses: a /24 cannot hold them, a /23 can.
    with pytest.raises(ValueError, match="need 336"):
        carve_connector(IPv4Network("10.0.0.0/24"), ["z1", "z2", "z3"])
    assert len(carve_connector(IPv4Network("10.0.0.0/23"), ["z1", "z2", "z3"])) == 3


def test_routes_follow_the_policy_in_both_directions_and_only_there() -> None:
    base = {
        "name": "routes",
        "edges": [{"name": "use1", "cloud": "aws", "region": "us-east-1", "cidr": "10.250.0.0/24"}],
        "networks": [
            {"name": "a", "cloud": "aws", "region": "us-east-1", "cidrs": ["10.1.0.0/24"], "attach": "connector"},
            {"name": "b", "cloud": "aws", "region": "us-east-1", "cidrs": ["10.2.0.0/24"], "attach": "native"},
            {"name": "c", "cloud": "aws", "region": "us-east-1", "cidrs": ["10.3.0.0/24"], "attach": "native"},
        ],
        "policy": {"rules": [{"name": "b-to-a", "from": "b", "to": "a", "proto": "tcp", "ports": [443], "action": "permit"}]},
    }
    section = aws_section(validate_spec(base), build_plan(validate_spec(base)))
    assert section is not None
    assert {(r.network, r.destination, r.target) for r in section.routes} == {
        ("a", "10.2.0.0/24", "gwlb-endpoint"),
        ("b", "10.1.0.0/24", "transit-gateway"),
        ("tgw us-east-1", "10.1.0.0/24", "edge use1"),
    }
    denied = {**base, "policy": {"rules": [{"name": "nothing", "from": "b", "to": "a", "proto": "tcp", "ports": [443], "action": "deny"}]}}
    assert aws_section(validate_spec(denied), build_plan(validate_spec(denied))).routes == []  # type: ignore[union-attr]


def test_seed_004_leaves_the_circuit_destination_to_bgp() -> None:
    spec, plan = _load("seed004_dx_er_cloud_router")
    layout = build_aws_layout(spec, plan)
    assert [(r.destination, r.target) for r in layout.routes] == [("10.6.0.0/16", "circuit-propagated")]
    assert layout.networks[0].destinations == []
    circuit = layout.circuits[0]
    assert (circuit.vlan, circuit.customer_asn, circuit.peer_asn) == (101, 65000, 64512)
    assert (circuit.customer_address, circuit.amazon_address) == ("10.0.0.0/31", "10.0.0.1/31")
    assert circuit.region == "eu-central-1" and circuit.networks == ["aws-vpc"]


def test_groups_keep_rules_far_below_the_cartesian_count() -> None:
    nets = [
        {"name": f"{tier}-{i}", "cloud": "aws", "region": "us-east-1", "cidrs": [f"10.{t}.{i}.0/24"], "attach": "native"}
        for t, tier in enumerate(["web", "app"], start=1)
        for i in range(20)
    ]
    spec = validate_spec(
        {
            "name": "tiers",
            "edges": [{"name": "use1", "cloud": "aws", "region": "us-east-1", "cidr": "10.250.0.0/24"}],
            "networks": nets,
            "groups": {"web": [n["name"] for n in nets[:20]], "app": [n["name"] for n in nets[20:]]},
            "policy": {"rules": [{"name": "web-to-app", "from": "web", "to": "app", "proto": "tcp", "ports": [8080], "action": "permit"}]},
        }
    )
    section = aws_section(spec, build_plan(spec))
    assert section is not None
    assert section.rules_cartesian == 2 * 20 * 20
    assert section.rules_emitted == 40
    assert [p.name for p in section.prefix_lists] == ["app", "web"]


def test_cloud_agent_configs_name_load_balancers_not_vms() -> None:
    spec, plan = _load("seed000_aws_azure")
    layout = build_aws_layout(spec, plan)
    agents = {a.name: a for a in plan.agents}
    edge = edge_config(agents["edge-aws-use1"], plan.members, layout, layout.edges[0], {"aws-use1": "203.0.113.7"})
    assert [(p.name, str(p.private_addr)) for p in edge.peers] == [("connector-aws-app", "10.30.40.132")]
    connector = connector_config(agents["connector-aws-app"], plan.members, layout, layout.networks[0], {"aws-use1": "203.0.113.7"})
    peer = connector.peers[0]
    assert (str(peer.private_addr), str(peer.public_addr), peer.tunnel_port) == ("10.250.37.4", "203.0.113.7", 8443)
    assert [str(c) for c in peer.cidrs] == ["172.18.40.0/24"]
    assert str(connector.listen.metrics.host) == "0.0.0.0"  # type: ignore[union-attr]


def test_naming_helpers() -> None:
    assert cidr_slug("10.30.40.0/24") == "10-30-40-0-24"
    assert [str(s) for s in split_cidr("10.0.0.0/24", 3)] == ["10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/26"]
    with pytest.raises(ValueError):
        split_cidr("10.0.0.0/27", 4)


def test_the_tgw_sends_what_native_networks_reach_to_their_edge() -> None:
    spec = validate_spec(
        {
            "name": "t",
            "edges": [
                {"name": "use1", "cloud": "aws", "region": "us-east-1", "cidr": "10.250.1.0/24"},
                {"name": "euw1", "cloud": "aws", "region": "eu-west-1", "cidr": "10.250.2.0/24"},
            ],
            "networks": [
                {"name": "shop", "cloud": "aws", "region": "us-east-1", "cidrs": ["10.1.0.0/24"], "attach": "connector"},
                {"name": "erp", "cloud": "aws", "region": "eu-west-1", "cidrs": ["10.2.0.0/24"], "attach": "native"},
                {"name": "crm", "cloud": "aws", "region": "eu-west-1", "cidrs": ["10.3.0.0/24"], "attach": "native"},
            ],
            "policy": {"rules": [{"name": "all", "from": "any", "to": "any", "proto": "tcp", "ports": [443], "action": "permit"}]},
        }
    )
    section = aws_section(spec, build_plan(spec))
    assert section is not None
    tgw = [(r.network, r.destination, r.target) for r in section.routes if r.network.startswith("tgw ")]
    # erp and crm reach shop through euw1; they reach each other directly over the TGW, so that is not routed to the edge.
    assert tgw == [("tgw eu-west-1", "10.1.0.0/24", "edge euw1")]
    layout = build_aws_layout(spec, build_plan(spec))
    assert {e.name: e.ingress_cidrs for e in layout.edges} == {"use1": [], "euw1": ["10.1.0.0/24"]}


def test_transit_plan_shows_the_connector_subnets_per_zone() -> None:
    from components.aws.target import tables
    from components.targets import plan_fabric

    spec = load_spec(FABRICS / "seed000_aws_azure.yaml")
    section = plan_fabric(spec).sections["aws"]
    [(_, columns, rows)] = [t for t in tables(section) if t[0].startswith("aws connector subnets")]  # type: ignore[arg-type]
    assert columns == ["network", "zone", "subnet", "cidr"]
    assert rows[:2] == [["aws-app", "us-east-1-zone1", "appliance", "10.30.40.128/26"], ["aws-app", "us-east-1-zone1", "gwlb", "10.30.40.96/28"]]
    assert len(rows) == 8
