"""The AWS side of seeds 000 and 004, built through the Fabric under Pulumi mocks, graph asserted."""
from __future__ import annotations

import base64
import json
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import rpc

from tests.component.conftest import RECORDER, FakeCloud, Graph, build_graph

from testbed.fake_cloud import fabric_ca
from components.aws.options import AwsOptions  # noqa: E402  (mocks are set in conftest first)
from components.fabric import Fabric, FabricArgs
from components.loader import load_spec
from components.targets import plan_fabric
from components.spec import validate_spec
from dataplane.boot_document import parse_document

TAGGED_TYPES = {
    "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/routeTable:RouteTable", "aws:ec2/securityGroup:SecurityGroup",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    "aws:ec2/launchTemplate:LaunchTemplate", "aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup",
    "aws:ec2/vpcEndpoint:VpcEndpoint", "aws:ec2/vpcEndpointService:VpcEndpointService", "aws:iam/role:Role",
    "aws:ec2transitgateway/transitGateway:TransitGateway", "aws:ec2transitgateway/vpcAttachment:VpcAttachment",
    "aws:ec2/eip:Eip", "aws:ec2/managedPrefixList:ManagedPrefixList", "aws:ec2/vpnGateway:VpnGateway",
    "aws:directconnect/privateVirtualInterface:PrivateVirtualInterface", "aws:directconnect/gateway:Gateway",
}
MD5 = "abcdefgh"
FABRICS = Path(__file__).resolve().parents[2] / "stacks" / "fabrics"
SEED_000 = FABRICS / "seed000_aws_azure.yaml"
SEED_004 = FABRICS / "seed004_dx_er_cloud_router.yaml"


def _seed_000() -> Graph:
    spec = load_spec(SEED_000)

    def build() -> dict[str, Any]:
        fabric = Fabric(spec.name, FabricArgs(spec=spec, environment="dev", clouds=["aws"], options={"aws": AwsOptions(fabric_ca=fabric_ca(), image_id="ami-0edge")}))
        return {"rules_emitted": fabric.outputs["aws_rules_emitted"], "not_built": fabric.outputs["not_built"]}

    return build_graph(build)


def _seed_004() -> Graph:
    spec = load_spec(SEED_004)

    def build() -> dict[str, Any]:
        secrets = {"fraDxMd5": pulumi.Output.secret(MD5), "fraErMd5": pulumi.Output.secret("erkey")}
        options = AwsOptions(fabric_ca=fabric_ca(), image_id="ami-0edge", hosted_connection_ids={"fra-dx": "dxcon-fgabc123"})
        fabric = Fabric(spec.name, FabricArgs(spec=spec, environment="dev", secrets=secrets, clouds=["aws"], options={"aws": options}))
        return {"not_built": fabric.outputs["not_built"], "external": fabric.outputs["external"]}

    return build_graph(build)


@pytest.fixture(scope="module")
def seed_000() -> Graph:
    return _seed_000()


@pytest.fixture(scope="module")
def seed_004() -> Graph:
    return _seed_004()


def _only(graph: Graph, type_: str) -> list[Any]:
    return graph.of_type(type_)


def test_a_cloud_without_a_builder_is_an_error_naming_it_and_nothing_is_created() -> None:
    spec = load_spec(SEED_000)

    def build() -> dict[str, Any]:
        Fabric(spec.name, FabricArgs(spec=spec, environment="dev", options={"aws": AwsOptions(fabric_ca=fabric_ca(), image_id="ami-0edge")}))
        return {}

    with pytest.raises(NotImplementedError, match=r"\['azure'\].*components/azure/build.py"):
        build_graph(build)
    assert RECORDER.registrations == []


def test_missing_image_or_secret_fails_before_any_resource() -> None:
    spec = load_spec(SEED_004)

    def build() -> dict[str, Any]:
        Fabric(spec.name, FabricArgs(spec=spec, environment="dev", clouds=["aws"], options={"aws": AwsOptions()}))
        return {}

    with pytest.raises(ValueError) as info:
        build_graph(build)
    message = str(info.value)
    assert "image_id is required" in message and "fraDxMd5" in message and "hosted_connection_ids" in message
    assert RECORDER.registrations == []


def test_seed_000_every_child_is_named_from_the_spec_and_parented_under_the_fabric(seed_000: Graph) -> None:
    fabric = seed_000.by_name["aws-azure-transit"]
    assert fabric.type == "transit:index:Fabric" and fabric.parent.endswith("pulumi:pulumi:Stack::transit-test")
    for reg in seed_000.all:
        if reg is fabric:
            continue
        chain, node = [], reg
        while node is not None and node is not fabric:
            chain.append(node.name)
            node = seed_000.by_urn.get(node.parent)
        assert node is fabric, f"{reg.name} ({reg.type}) is not under the Fabric"
    expected = {
        "aws-use1": "transit:aws:Edge", "aws-app-connector": "transit:aws:Connector", "aws-azure-transit-us-east-1": "transit:aws:Gateway",
        "aws-azure-transit-us-east-1-seg": "transit:aws:Segmentation",
    }
    for name, type_ in expected.items():
        assert seed_000.by_name[name].type == type_
    assert seed_000.parent_of("aws-app-connector-gwlbe-0").name == "aws-app-connector-svc"
    assert seed_000.parent_of("aws-app-connector-svc").name == "aws-app-connector-gwlb"
    assert seed_000.parent_of("aws-use1-public-0").name == "aws-use1-vpc"
    assert seed_000.values["not_built"] == ["azure"]


def test_seed_000_everything_taggable_carries_fabric_environment_and_role(seed_000: Graph, seed_004: Graph) -> None:
    tagged = [r for r in [*seed_000.all, *seed_004.all] if r.type in TAGGED_TYPES]
    assert len(tagged) > 40
    for reg in tagged:
        tags = reg.inputs.get("tags") or {}
        assert tags.get("transit:fabric") in ("aws-azure-transit", "dx-er-cloud-router"), reg.name
        assert tags.get("transit:environment") == "dev" and tags.get("transit:role"), reg.name
    for provider in seed_000.of_type("pulumi:providers:aws"):
        # Provider inputs travel JSON-encoded.
        assert json.loads(provider.inputs["defaultTags"]) == {"tags": {"transit:fabric": "aws-azure-transit", "transit:environment": "dev"}}
    for asg in seed_000.of_type("aws:autoscaling/group:Group"):
        keys = {t["key"]: t for t in asg.inputs["tags"]}
        assert keys["transit:fabric"]["propagateAtLaunch"] is True


def test_seed_000_connector_gwlb_geneve_endpoints_and_routes(seed_000: Graph) -> None:
    gwlb = seed_000.by_name["aws-app-connector-gwlb"]
    assert gwlb.inputs["loadBalancerType"] == "gateway"
    assert gwlb.inputs["subnets"] == ["aws-app-connector-gwlb-0-id", "aws-app-connector-gwlb-1-id"]
    tg = seed_000.by_name["aws-app-connector-tg"]
    assert (tg.inputs["protocol"], tg.inputs["port"]) == ("GENEVE", 6081)
    assert tg.inputs["healthCheck"]["path"] == "/healthz" and tg.inputs["healthCheck"]["port"] == "9108"
    listener = seed_000.by_name["aws-app-connector-listener"]
    assert listener.inputs["defaultActions"][0]["targetGroupArn"].endswith(":aws-app-connector-tg")
    svc = seed_000.by_name["aws-app-connector-svc"]
    assert svc.inputs["gatewayLoadBalancerArns"] == ["arn:aws:mock::123456789012:aws-app-connector-gwlb"]
    for zone in (0, 1):
        endpoint = seed_000.by_name[f"aws-app-connector-gwlbe-{zone}"]
        assert endpoint.inputs["vpcEndpointType"] == "GatewayLoadBalancer"
        assert endpoint.inputs["serviceName"] == "com.amazonaws.vpce.mock.aws-app-connector-svc"
        assert endpoint.inputs["subnetIds"] == [f"aws-app-connector-gwlb-{zone}-id"]
    routes = [r for r in seed_000.of_type("aws:ec2/route:Route") if r.name.startswith("aws-app-connector-route-")]
    assert sorted((r.inputs["routeTableId"], r.inputs["destinationCidrBlock"], r.inputs["vpcEndpointId"]) for r in routes) == [
        ("aws-app-workload-rt-0-id", "172.18.40.0/24", "aws-app-connector-gwlbe-0-id"),
        ("aws-app-workload-rt-1-id", "172.18.40.0/24", "aws-app-connector-gwlbe-1-id"),
    ]
    asg = seed_000.by_name["aws-app-connector-asg"]
    assert asg.inputs["targetGroupArns"][0].endswith(":aws-app-connector-tg")
    edge_routes = [r for r in seed_000.of_type("aws:ec2/route:Route") if r.name.startswith("aws-app-connector-edge-route-")]
    assert {(r.inputs["routeTableId"], r.inputs["destinationCidrBlock"], r.inputs["transitGatewayId"]) for r in edge_routes} == {
        ("aws-app-connector-appliance-rt-0-id", "10.250.37.0/24", "aws-azure-transit-us-east-1-tgw-id"),
        ("aws-app-connector-appliance-rt-1-id", "10.250.37.0/24", "aws-azure-transit-us-east-1-tgw-id"),
    }
    # The fabric built aws-app's VPC, so the public fallback leaves through its own NAT gateways, to the edge's
    # Elastic IPs only.
    nat_routes = {(r.inputs["routeTableId"], r.inputs["natGatewayId"]) for r in seed_000.of_type("aws:ec2/route:Route") if r.inputs.get("natGatewayId")}
    assert nat_routes == {(f"aws-app-connector-appliance-rt-{z}-id", f"aws-app-connector-nat-{z}-id") for z in (0, 1)}


def test_seed_000_edge_vms_boot_with_their_agent_config_and_least_privilege(seed_000: Graph) -> None:
    lt = seed_000.by_name["aws-use1-lt"]
    assert lt.inputs["imageId"] == "ami-0edge" and lt.inputs["metadataOptions"]["httpTokens"] == "required"
    config = parse_document(base64.b64decode(lt.inputs["userData"])).agent
    assert config.role == "edge" and config.identity == "spiffe://aws-azure-transit/edge-aws-use1"
    assert [str(p.private_addr) for p in config.peers] == ["10.30.40.132"]
    connector = parse_document(base64.b64decode(seed_000.by_name["aws-app-connector-lt"].inputs["userData"])).agent
    edge_peer = connector.peers[0]
    assert str(edge_peer.private_addr) == "10.250.37.4"
    assert str(edge_peer.public_addr) == FakeCloud.COMPUTED["aws:ec2/eip:Eip"]("aws-use1-eip-0")["publicIp"]
    assert connector.filter.evaluate("10.30.40.9", "172.18.40.10", "tcp", 443)[0] == "permit"
    assert connector.filter.evaluate("10.30.40.9", "172.18.40.10", "tcp", 22)[0] == "deny"
    policy = {s["Sid"]: s for s in json.loads(seed_000.by_name["aws-use1-role-policy"].inputs["policy"])["Statement"]}
    assert set(policy) == {"ReadOwnParameters", "DisableSourceDestCheckOnOwnRole"}
    assert set(policy["ReadOwnParameters"]["Action"]) == {"ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"}
    assert all("/transit/aws-azure-transit/dev/aws-use1" in r for r in policy["ReadOwnParameters"]["Resource"])
    assert policy["DisableSourceDestCheckOnOwnRole"]["Action"] == ["ec2:ModifyInstanceAttribute"]
    assert policy["DisableSourceDestCheckOnOwnRole"]["Condition"]["StringEquals"] == {
        "ec2:ResourceTag/transit:fabric": "aws-azure-transit", "ec2:ResourceTag/transit:environment": "dev",
        "ec2:ResourceTag/transit:role": "edge",
    }
    sg = seed_000.by_name["aws-use1-sg"]
    assert {(r["protocol"], r["fromPort"], r["toPort"]) for r in sg.inputs["ingress"]} == {("tcp", 8443, 8443), ("udp", 8444, 8444)}
    assert {(r["protocol"], r["fromPort"]) for r in sg.inputs["egress"]} == {("tcp", 8443), ("udp", 8444), ("tcp", 443)}
    connector_sg = seed_000.by_name["aws-app-connector-sg"]
    geneve = [r for r in connector_sg.inputs["ingress"] if r["protocol"] == "udp" and r["fromPort"] == 6081]
    assert sorted(c for r in geneve for c in r["cidrBlocks"]) == ["10.30.40.112/28", "10.30.40.96/28"]  # the GWLB subnets


def test_seed_000_edge_public_endpoints_and_tgw_attachment(seed_000: Graph) -> None:
    nlb = seed_000.by_name["aws-use1-nlb"]
    assert nlb.inputs["loadBalancerType"] == "network" and nlb.inputs["internal"] is False
    assert [m["allocationId"] for m in nlb.inputs["subnetMappings"]] == ["aws-use1-eip-0-id", "aws-use1-eip-1-id"]
    private = seed_000.by_name["aws-use1-nlb-private"]
    assert [m["privateIpv4Address"] for m in private.inputs["subnetMappings"]] == ["10.250.37.4", "10.250.37.68"]
    attach = seed_000.by_name["aws-use1-tgw-attach"]
    assert attach.inputs["transitGatewayId"] == "aws-azure-transit-us-east-1-tgw-id"
    assert attach.inputs["subnetIds"] == ["aws-use1-attach-0-id", "aws-use1-attach-1-id"]
    for kind in ("assoc", "prop"):
        reg = seed_000.by_name[f"aws-use1-tgw-{kind}"]
        assert reg.inputs["transitGatewayRouteTableId"] == "aws-azure-transit-us-east-1-tgw-rt-id"
        assert reg.inputs["transitGatewayAttachmentId"] == "aws-use1-tgw-attach-id"
    tgw = seed_000.by_name["aws-azure-transit-us-east-1-tgw"]
    assert tgw.inputs["amazonSideAsn"] == 64512 and tgw.inputs["defaultRouteTableAssociation"] == "disable"


def test_seed_000_segmentation_uses_prefix_lists_not_addresses(seed_000: Graph) -> None:
    web = seed_000.by_name["aws-azure-transit-us-east-1-seg-pl-az-web"]
    assert web.inputs["entries"] == [{"cidr": "172.18.40.0/26"}] and web.inputs["maxEntries"] == 1
    sg = seed_000.by_name["aws-azure-transit-us-east-1-seg-sg-aws-app"]
    assert sg.inputs["vpcId"] == "aws-app-vpc-id"
    rules = [r for r in seed_000.all if r.name.startswith("aws-azure-transit-us-east-1-seg-rule-")]
    assert sorted(
        (r.type.split(":")[-1], r.inputs["ipProtocol"], r.inputs.get("fromPort"), r.inputs.get("toPort"), r.inputs["prefixListId"])
        for r in rules
    ) == [
        ("SecurityGroupEgressRule", "icmp", -1, -1, "aws-azure-transit-us-east-1-seg-pl-az-app-id"),
        ("SecurityGroupEgressRule", "tcp", 443, 443, "aws-azure-transit-us-east-1-seg-pl-az-web-id"),
        ("SecurityGroupEgressRule", "tcp", 8000, 8080, "aws-azure-transit-us-east-1-seg-pl-az-web-id"),
    ]
    assert all(r.inputs["securityGroupId"] == "aws-azure-transit-us-east-1-seg-sg-aws-app-id" for r in rules)
    assert all("cidrIpv4" not in r.inputs for r in rules)
    assert seed_000.values["rules_emitted"] == 3


def test_seed_004_hosted_connection_vif_and_dx_gateway_match_the_spec(seed_004: Graph) -> None:
    accept = seed_004.by_name["fra-dx-dxcon-accept"]
    assert accept.type == "aws:directconnect/connectionConfirmation:ConnectionConfirmation"
    assert accept.inputs["connectionId"] == "dxcon-fgabc123"
    vif = seed_004.by_name["fra-dx-vif"]
    assert vif.inputs["vlan"] == 101 and vif.inputs["bgpAsn"] == 65000
    assert (vif.inputs["customerAddress"], vif.inputs["amazonAddress"]) == ("10.0.0.0/31", "10.0.0.1/31")
    assert vif.inputs["addressFamily"] == "ipv4" and vif.inputs["connectionId"] == "dxcon-fgabc123"
    assert vif.inputs["dxGatewayId"] == "dx-er-cloud-router-eu-central-1-dxgw-fra-dx-id"
    assert rpc.is_rpc_secret(vif.inputs["bgpAuthKey"]) and rpc.unwrap_rpc_secret(vif.inputs["bgpAuthKey"]) == MD5
    dxgw = seed_004.by_name["dx-er-cloud-router-eu-central-1-dxgw-fra-dx"]
    assert dxgw.inputs["amazonSideAsn"] == "64512"


def test_seed_004_vgw_association_and_route_propagation(seed_004: Graph) -> None:
    vgw = seed_004.by_name["dx-er-cloud-router-eu-central-1-vgw-aws-vpc"]
    assert vgw.inputs["amazonSideAsn"] == "64512"
    attach = seed_004.by_name["dx-er-cloud-router-eu-central-1-vgw-aws-vpc-attach"]
    assert (attach.inputs["vpcId"], attach.inputs["vpnGatewayId"]) == ("aws-vpc-vpc-id", "dx-er-cloud-router-eu-central-1-vgw-aws-vpc-id")
    assoc = seed_004.by_name["fra-dx-dxgw-assoc-aws-vpc"]
    assert assoc.inputs["dxGatewayId"] == "dx-er-cloud-router-eu-central-1-dxgw-fra-dx-id"
    assert assoc.inputs["associatedGatewayId"] == "dx-er-cloud-router-eu-central-1-vgw-aws-vpc-id"
    props = seed_004.of_type("aws:ec2/vpnGatewayRoutePropagation:VpnGatewayRoutePropagation")
    assert sorted((p.inputs["routeTableId"], p.inputs["vpnGatewayId"]) for p in props) == [
        ("aws-vpc-workload-rt-0-id", "dx-er-cloud-router-eu-central-1-vgw-aws-vpc-id"),
        ("aws-vpc-workload-rt-1-id", "dx-er-cloud-router-eu-central-1-vgw-aws-vpc-id"),
    ]


def test_seed_004_circuit_destinations_are_left_to_bgp_and_it_says_what_it_did_not_build(seed_004: Graph) -> None:
    attach = seed_004.by_name["aws-vpc-attach-tgw-attach"]
    assert attach.inputs["vpcId"] == "aws-vpc-vpc-id"
    # 10.6.0.0/16 is learned over the circuit; a static route to the TGW would win and bypass the circuit.
    assert [r.name for r in seed_004.of_type("aws:ec2/route:Route") if r.name.startswith("aws-vpc-attach-route-")] == []
    section = plan_fabric(load_spec(SEED_004)).sections["aws"]
    assert section is not None
    assert [(r.network, r.destination, r.target) for r in section.routes] == [("aws-vpc", "10.6.0.0/16", "circuit-propagated")]
    assert seed_004.values["not_built"] == ["azure"]
    assert {e["kind"] for e in seed_004.values["external"]} == {"cloud-router"}


def test_seed_004_md5_key_appears_nowhere_but_as_a_secret(seed_004: Graph) -> None:
    assert seed_004.in_plain(lambda text: MD5 in text) == []


def test_route_destinations_are_whole_remote_networks_never_a_default_route(seed_000: Graph, seed_004: Graph) -> None:
    for graph in (seed_000, seed_004):
        for route in graph.of_type("aws:ec2/route:Route"):
            if "-route-" in route.name and "edge-route" not in route.name:
                assert IPv4Network(route.inputs["destinationCidrBlock"]).prefixlen > 0


def test_an_aws_connector_homed_at_an_azure_edge_is_refused_before_anything_exists() -> None:
    data = yaml.safe_load(SEED_000.read_text())
    data["networks"][0]["edge"] = "az-weu"
    spec = validate_spec(data)

    def build() -> dict[str, Any]:
        Fabric(spec.name, FabricArgs(spec=spec, environment="dev", clouds=["aws"], options={"aws": AwsOptions(fabric_ca=fabric_ca(), image_id="ami-0edge")}))
        return {}

    with pytest.raises(ValueError, match="homed at az-weu, which is not an AWS edge"):
        build_graph(build)
    assert RECORDER.registrations == []


def test_edges_in_two_regions_peer_their_transit_gateways_as_the_private_backbone() -> None:
    spec = validate_spec(
        {
            "name": "two-regions",
            "edges": [
                {"name": "use1", "cloud": "aws", "region": "us-east-1", "cidr": "10.250.1.0/24"},
                {"name": "euw1", "cloud": "aws", "region": "eu-west-1", "cidr": "10.250.2.0/24"},
            ],
            "networks": [
                {"name": "shop", "cloud": "aws", "region": "us-east-1", "cidrs": ["10.1.0.0/24"], "attach": "connector"},
                {"name": "erp", "cloud": "aws", "region": "eu-west-1", "cidrs": ["10.2.0.0/24"], "attach": "native"},
            ],
            "policy": {"rules": [{"name": "shop-to-erp", "from": "shop", "to": "erp", "proto": "tcp", "ports": [443], "action": "permit"}]},
        }
    )

    def build() -> dict[str, Any]:
        Fabric(spec.name, FabricArgs(spec=spec, environment="dev", options={"aws": AwsOptions(fabric_ca=fabric_ca(), image_id="ami-0edge")}))
        return {}

    graph = build_graph(build)
    peering = graph.by_name["two-regions-us-east-1--eu-west-1-attach"]
    assert (peering.inputs["transitGatewayId"], peering.inputs["peerTransitGatewayId"], peering.inputs["peerRegion"]) == (
        "two-regions-us-east-1-tgw-id", "two-regions-eu-west-1-tgw-id", "eu-west-1",
    )
    accept = graph.by_name["two-regions-us-east-1--eu-west-1-accept"]
    assert accept.provider.startswith(graph.by_name["two-regions-aws-eu-west-1"].urn)
    routes = {
        (r.inputs["transitGatewayRouteTableId"], r.inputs["destinationCidrBlock"])
        for r in graph.of_type("aws:ec2transitgateway/route:Route")
        if r.name.startswith("two-regions-us-east-1--eu-west-1-")
    }
    assert routes == {("two-regions-us-east-1-tgw-rt-id", "10.250.2.0/24"), ("two-regions-eu-west-1-tgw-rt-id", "10.250.1.0/24")}
    assert graph.by_name["use1-rt-0-10-250-2-0-24"].inputs["transitGatewayId"] == "two-regions-us-east-1-tgw-id"
    config = parse_document(base64.b64decode(graph.by_name["use1-lt"].inputs["userData"])).agent
    far = config.peer("edge-euw1")
    assert str(far.private_addr) == "10.250.2.4" and [str(c) for c in far.cidrs] == ["10.2.0.0/24"]
    assert graph.by_name["shop-connector-route-0-10-2-0-0-24"].inputs["vpcEndpointId"] == "shop-connector-gwlbe-0-id"
    # erp (native, eu-west-1) reaches shop through its edge: TGW -> euw1's attachment -> its GWLB; replies come back the same way.
    assert graph.by_name["euw1-tgw-route-10-1-0-0-24"].inputs["transitGatewayAttachmentId"] == "euw1-tgw-attach-id"
    assert graph.by_name["euw1-attach-rt-0-10-1-0-0-24"].inputs["vpcEndpointId"] == "euw1-gwlbe-0-id"
    assert "use1-gwlb" not in graph.by_name  # use1 serves no native network
    # shop's application CIDR is not propagated into the TGW; only its connector subnets are routed there.
    shop_routes = [r for r in graph.of_type("aws:ec2transitgateway/route:Route") if r.name.startswith("shop-connector-tgw-route-")]
    assert sorted(r.inputs["destinationCidrBlock"] for r in shop_routes) == ["10.1.0.128/26", "10.1.0.192/26"]
    assert "shop-connector-tgw-prop" not in graph.by_name and "erp-attach-tgw-prop" in graph.by_name
