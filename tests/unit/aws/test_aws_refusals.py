"""What AWS would refuse mid-`pulumi up` is refused first, by `transit validate` and `transit plan`, with the field path.

Security-group and prefix-list quotas, and Direct Connect circuits: the
location's region, circuits doubled for redundancy on one VPC, circuits
reaching networks in two regions.
"""
from __future__ import annotations

from typing import Any

import yaml
from typer.testing import CliRunner

from components.aws.planning import build_aws_layout
from components.aws.quotas import AwsQuotas, quota_problems
from components.plan import build_plan
from components.targets import plan_fabric, plan_problems
from tests.unit.spec_helpers import example, spec_of
from transit_cli.main import app

PORTS = [1000 + 2 * i for i in range(31)]
"""31 ports no two of which merge into one range: 62 inbound rules, since the connector delivers from its own
address (`deliver_from: node`) and each port then admits the connector subnets too."""


def _many_ports(data: dict[str, Any], ports: list[int]) -> dict[str, Any]:
    data["policy"]["rules"].insert(0, {"name": "many", "from": "dc-fra", "to": "aws-app", "proto": "tcp", "ports": ports, "action": "permit"})
    return data


def _problems(data: dict[str, Any]) -> list[str]:
    return plan_problems(plan_fabric(spec_of(data)))


def test_a_security_group_over_60_inbound_rules_is_refused_naming_the_policy_rule_and_the_quota() -> None:
    problems = _problems(_many_ports(example(), PORTS))
    assert len(problems) == 1
    assert problems[0].startswith("policy.rules[many]: security group aws-app would hold 62 inbound rules")
    assert "AWS quota of 60 ingress rules per security group" in problems[0]


def test_60_rules_fit() -> None:
    assert _problems(_many_ports(example(), PORTS[:30])) == []


def test_a_prefix_list_reference_counts_its_max_entries() -> None:
    data = example()
    data["groups"]["sites"] = [f"192.168.{i}.0/25" for i in range(0, 62, 2)]  # 31 entries no two of which merge
    data["policy"]["rules"].insert(0, {"name": "sites-in", "from": "sites", "to": "aws-app", "proto": "tcp", "ports": [22, 80], "action": "permit"})
    plan = plan_fabric(spec_of(data))
    listed = [p for p in plan.sections["aws"].prefix_lists if len(p.cidrs) == 31]
    assert len(listed) == 1
    problems = plan_problems(plan)
    # 31 entries x 2 ports, and the connector subnets (one prefix-list entry) on those 2 ports: 64.
    assert len(problems) == 1 and "policy.rules[sites-in]: security group aws-app would hold 64 inbound rules" in problems[0]


def test_prefix_lists_over_the_region_quota_are_refused() -> None:
    data = example()
    for i in range(3):
        data["groups"][f"site-{i}"] = [f"192.168.{i}.0/24"]
        data["policy"]["rules"].insert(0, {"name": f"site-{i}", "from": f"site-{i}", "to": "aws-app", "proto": "tcp", "ports": [22], "action": "permit"})
    layout = build_aws_layout(spec_of(data), build_plan(spec_of(data)))
    assert len(layout.security.prefix_lists) >= 3
    problems = quota_problems(layout.security, AwsQuotas(prefix_lists_per_region=2))
    assert problems == [
        f"policy.rules: region us-east-1 would need {len(layout.security.prefix_lists)} managed prefix lists (one per distinct "
        "peer address set), over the AWS quota of 2 per region; use named groups so rules share peers, or raise the quota "
        "and set aws.quotas.prefix_lists_per_region"
    ]
    assert quota_problems(layout.security, AwsQuotas()) == []


def test_transit_validate_and_plan_refuse_a_spec_over_a_quota(tmp_path: Any) -> None:
    path = tmp_path / "fabric.yaml"
    path.write_text(yaml.safe_dump(_many_ports(example(), PORTS)))
    runner = CliRunner()
    for command in ("validate", "plan"):
        result = runner.invoke(app, [command, str(path)])
        assert result.exit_code == 1, result.output
        assert "policy.rules[many]: security group aws-app would hold 62 inbound rules" in result.output


def test_a_direct_connect_circuit_without_its_locations_region_is_refused() -> None:
    data = example()
    del data["circuits"][0]["region"]
    problems = _problems(data)
    assert len(problems) == 1 and problems[0].startswith("circuits[0].region: required for aws-direct-connect")


def test_the_circuit_lives_in_its_locations_region_not_its_networks() -> None:
    data = example()  # fra-dx at EqFA5 (eu-central-1) reaches aws-app in us-east-1
    layout = build_aws_layout(spec_of(data), build_plan(spec_of(data)))
    (circuit,) = layout.circuits
    assert (circuit.region, circuit.networks) == ("eu-central-1", ["aws-app"])
    gateways = {g.region: g for g in layout.gateways}
    assert gateways["us-east-1"].vpn_gateways == [("aws-app", 64512)] and gateways["us-east-1"].dx_gateways == []
    assert gateways["eu-central-1"].dx_gateways == [("fra-dx", 64512)] and not gateways["eu-central-1"].transit_gateway
    assert layout.regions == ["us-east-1", "eu-central-1"]


def _doubled(peer_asn: int = 64512) -> dict[str, Any]:
    data = example()
    bgp = {**data["circuits"][0]["bgp"], "peer_asn": peer_asn, "peering": ["10.0.0.2/31"], "md5_secret": "fraDx2Md5"}
    second = {**data["circuits"][0], "name": "fra-dx-2", "vlan": 102, "bgp": bgp}
    data["circuits"].insert(1, second)
    return data


def test_circuits_doubled_for_redundancy_share_one_dx_gateway_so_the_vgw_is_associated_once() -> None:
    spec = spec_of(_doubled())
    layout = build_aws_layout(spec, build_plan(spec))
    assert [(c.name, c.dx_gateway) for c in layout.circuits] == [("fra-dx", "fra-dx"), ("fra-dx-2", "fra-dx")]
    assert [g.dx_gateways for g in layout.gateways if g.dx_gateways] == [[("fra-dx", 64512)]]


def test_circuits_sharing_a_network_with_different_peer_asns_are_refused() -> None:
    problems = _problems(_doubled(peer_asn=64700))
    assert len(problems) == 1
    assert problems[0].startswith("circuits[1].bgp.peer_asn: fra-dx-2 and fra-dx both reach aws-app")
    assert "set it to 64512 as in circuits[0]" in problems[0]


def test_circuits_reaching_networks_in_two_regions_lay_out_a_vgw_in_each() -> None:
    data = example()
    data["networks"].append({"name": "aws-eu", "cloud": "aws", "region": "eu-central-1", "cidrs": ["10.31.0.0/24"],
                             "attach": "connector", "edge": "aws-use1"})
    data["circuits"][0]["attaches"] = ["aws-app", "aws-eu"]
    spec = spec_of(data)
    layout = build_aws_layout(spec, build_plan(spec))
    vgws = {g.region: g.vpn_gateways for g in layout.gateways}
    assert vgws == {"us-east-1": [("aws-app", 64512)], "eu-central-1": [("aws-eu", 64512)]}


def test_an_edge_whose_native_networks_reach_it_through_its_gwlb_gets_geneve_from_its_public_subnets() -> None:
    from components.aws.agent_configs import edge_config
    from components.segmentation.members import fabric_members

    data = example()
    data["networks"][0]["attach"] = "native"  # aws-app reaches az-app through the edge's GWLB
    data.pop("cloud_router")
    data["circuits"] = []  # (over the circuits, its routes would be BGP's, not the edge's)
    spec = spec_of(data)
    plan = plan_fabric(spec)
    layout = build_aws_layout(spec, plan)
    edge = layout.edges[0]
    assert edge.ingress_cidrs and edge.native_cidrs == ["10.30.40.0/24"]
    agent = next(a for a in plan.agents if a.name == "edge-aws-use1")
    config = edge_config(agent, fabric_members(spec), layout, edge, {})
    assert config.geneve is not None
    assert [str(c) for c in config.geneve.gwlb_cidrs] == edge.public_subnets
    assert [[str(c) for c in n.cidrs] for n in config.geneve.networks] == [["10.30.40.0/24"]]


def test_any_instance_count_the_spec_allows_fits_and_only_a_range_too_small_to_carve_is_refused() -> None:
    data = example()
    data["networks"][0]["instances"] = 16  # max_size 32: the /26 appliance subnets hold them
    assert _problems(data) == []
    data["edges"][0]["zones"] = 3  # three zones need 336 addresses; aws-app is a /24
    problems = _problems(data)
    assert len(problems) == 1 and problems[0].startswith("networks[0].cidrs[0]: 10.30.40.0/24 holds 256 addresses")
    assert "set connector_cidr to a free /23 or larger" in problems[0] and "edge aws-use1" in problems[0]
    data["networks"][0]["cidrs"] = ["10.30.40.0/24", "10.30.42.0/23"]
    data["networks"][0]["connector_cidr"] = "10.30.42.0/23"  # a secondary VPC CIDR for the fabric
    [problem] = _problems(data)  # it carves; three zones of NAT gateways then meet the next quota (below)
    assert "Elastic IPs per region" in problem
    data["networks"][0]["connector_cidr"] = "10.30.42.0/24"
    assert _problems(data)[0].startswith("networks[0].connector_cidr: 10.30.42.0/24 holds 256 addresses")


def test_connector_egress_and_endpoints_are_counted_against_the_regions_quotas() -> None:
    from components.aws.network_quotas import network_quota_problems
    from components.aws.options import AwsOptions, ExistingNetwork

    data = example()
    data["edges"][0]["zones"] = 3
    data["networks"][0]["cidrs"] = ["10.30.40.0/23"]
    layout = build_aws_layout(spec_of(data), plan_fabric(spec_of(data)))
    built = AwsOptions()  # the fabric builds the VPC: a NAT gateway per zone, each with an Elastic IP

    def problems(options: AwsOptions) -> list[str]:
        return network_quota_problems(
            layout, options.quotas, options.egress, options.creates_internet_gateway, options.interface_endpoints,
        )

    [eips] = problems(built)  # the edge's NLB takes 3, the connector's NAT gateways 3
    assert eips.startswith("networks[0]: its NAT gateways' Elastic IPs bring region us-east-1 to 6")
    assert "AWS quota of 5 Elastic IPs per region" in eips and "aws.quotas.elastic_ips_per_region" in eips
    raised = AwsOptions(quotas=AwsQuotas(elastic_ips_per_region=6))
    assert problems(raised) == []
    tight = AwsOptions(quotas=AwsQuotas(elastic_ips_per_region=6, nat_gateways_per_zone=0, internet_gateways_per_region=1,
                                        endpoints_per_vpc=6))
    found = problems(tight)
    assert [p.split(",")[0] for p in found] == [
        "networks[0]: the connector's VPC would hold 7 interface and GWLB endpoints",
        "networks[0]: its egress puts a NAT gateway in zone us-east-1-zone1",
        "networks[0]: its egress puts a NAT gateway in zone us-east-1-zone2",
        "networks[0]: its egress puts a NAT gateway in zone us-east-1-zone3",
        "networks[0]: its internet gateway brings region us-east-1 to 2 internet gateways",
    ]
    # An existing VPC adds nothing public unless asked, and may already resolve the services privately.
    private = AwsOptions(quotas=tight.quotas, existing_networks={"aws-app": ExistingNetwork(
        vpc_id="vpc-1", workload_route_table_ids=["rtb-1", "rtb-2", "rtb-3"], interface_endpoints=False)})
    assert problems(private) == []


def test_client_delivery_behind_more_than_one_connector_vm_is_refused() -> None:
    data = example()
    data["networks"][0]["deliver_from"] = "client"
    [problem] = _problems(data)
    assert problem.startswith("networks[0].deliver_from: client keeps replies on the delivering VM only with one connector VM")
    data["networks"][0]["instances"] = 1
    assert _problems(data) == []
