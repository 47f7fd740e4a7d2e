"""Each AWS component used alone, as a team's stack would: names, parents, wiring, validation first."""
from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc

from tests.component.conftest import RECORDER, build_graph

from components.aws import (  # noqa: E402  (mocks are set in conftest first)
    Attachment,
    AttachmentArgs,
    Circuit,
    CircuitArgs,
    Connector,
    ConnectorArgs,
    Edge,
    EdgeArgs,
    ExistingVpc,
    Gateway,
    GatewayArgs,
    GatewayLink,
    Segmentation,
    SegmentationArgs,
    carve_connector,
)
from components.aws.parameters import NodeTlsArgs
from components.fabric_ca import FabricCa
from components.segmentation.aws_security_groups import Endpoint, IntentRule, Segment, compile_security
from testbed.fake_cloud import TEST_CA_CERT, TEST_CA_KEY

COMMON = {"fabric": "team", "environment": "dev"}
TLS = NodeTlsArgs(identity="spiffe://team/node", ca=FabricCa(cert_pem=TEST_CA_CERT, key_pem=TEST_CA_KEY))
"""A node's identity and the fixture CA (NodeCertificate wraps the key as a secret itself)."""


ZONES = carve_connector(IPv4Network("10.8.0.0/24"), ["eu-west-1a", "eu-west-1b"])
"""The plan's layout of a /24 over two zones: appliances .128/26 and .192/26, GWLB .96 and .112, attachment .64 and .80,
egress .32 and .48 (/28s)."""


def _connector_args(**overrides: Any) -> ConnectorArgs:
    values: dict[str, Any] = dict(
        **COMMON, vpc_id="vpc-1", region="eu-west-1", network_cidrs=["10.8.0.0/24"], zones=["eu-west-1a", "eu-west-1b"],
        subnets=ZONES, route_table_ids=["rtb-a", "rtb-b"], destination_cidrs=["10.9.0.0/24", "172.16.0.0/16"],
        image_id="ami-1", agent_config_json="{}", tls=TLS,
    )
    values.update(overrides)
    return ConnectorArgs(**values)


def test_connector_lays_out_appliance_gwlb_and_attachment_subnets_per_zone_each_with_its_own_route_table() -> None:
    """Under Pulumi mocks (no AWS account here): the graph AWS would be asked to create, asserted resource by resource."""
    args = _connector_args(transit_gateway_id="tgw-1", transit_gateway_route_table_id="tgw-rtb-1", edge_cidrs=["10.250.0.0/24"],
                           endpoint_ips=["10.8.0.132", "10.8.0.196"])
    graph = build_graph(lambda: (Connector("payments", args), {})[1])
    subnets = {r.name: (r.inputs["cidrBlock"], r.inputs["availabilityZone"]) for r in graph.of_type("aws:ec2/subnet:Subnet")}
    assert subnets == {
        "payments-appliance-0": ("10.8.0.128/26", "eu-west-1a"), "payments-appliance-1": ("10.8.0.192/26", "eu-west-1b"),
        "payments-gwlb-0": ("10.8.0.96/28", "eu-west-1a"), "payments-gwlb-1": ("10.8.0.112/28", "eu-west-1b"),
        "payments-attachment-0": ("10.8.0.64/28", "eu-west-1a"), "payments-attachment-1": ("10.8.0.80/28", "eu-west-1b"),
    }  # no egress subnets: egress defaults to none
    associations = {r.inputs["subnetId"]: r.inputs["routeTableId"] for r in graph.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")}
    assert associations == {f"{s}-id": f"{s.replace('-0', '-rt-0').replace('-1', '-rt-1')}-id" for s in subnets}
    # The load balancer and its endpoints in the GWLB subnets; the VMs and the internal NLB in the appliance subnets;
    # the TGW's interfaces in the attachment subnets.
    assert graph.by_name["payments-gwlb"].inputs["subnets"] == ["payments-gwlb-0-id", "payments-gwlb-1-id"]
    assert [graph.by_name[f"payments-gwlbe-{i}"].inputs["subnetIds"] for i in (0, 1)] == [["payments-gwlb-0-id"], ["payments-gwlb-1-id"]]
    assert graph.by_name["payments-asg"].inputs["vpcZoneIdentifiers"] == ["payments-appliance-0-id", "payments-appliance-1-id"]
    assert [(m["subnetId"], m["privateIpv4Address"]) for m in graph.by_name["payments-nlb"].inputs["subnetMappings"]] == [
        ("payments-appliance-0-id", "10.8.0.132"), ("payments-appliance-1-id", "10.8.0.196"),
    ]
    assert graph.by_name["payments-tgw-attach"].inputs["subnetIds"] == ["payments-attachment-0-id", "payments-attachment-1-id"]
    # The VMs launch after the NLB holds its fixed .4 (a VM could take it first) and after their subnets' tables exist.
    assert graph.waits_for("payments-asg", "payments-nlb") and graph.waits_for("payments-asg", "payments-appliance-rta-0")
    # Routes: the GWLB and attachment tables keep the local route only; the appliance tables reach the edge over the TGW.
    tables = {r.inputs["routeTableId"] for r in graph.of_type("aws:ec2/route:Route")}
    assert tables == {"rtb-a", "rtb-b", "payments-appliance-rt-0-id", "payments-appliance-rt-1-id"}
    edge_routes = [r for r in graph.of_type("aws:ec2/route:Route") if r.inputs.get("transitGatewayId")]
    assert sorted((r.inputs["routeTableId"], r.inputs["destinationCidrBlock"]) for r in edge_routes) == [
        ("payments-appliance-rt-0-id", "10.250.0.0/24"), ("payments-appliance-rt-1-id", "10.250.0.0/24"),
    ]
    tgw_routes = sorted(r.inputs["destinationCidrBlock"] for r in graph.of_type("aws:ec2transitgateway/route:Route"))
    assert tgw_routes == ["10.8.0.128/26", "10.8.0.192/26"]  # the TGW reaches the appliances, never the workloads


def test_connector_vms_reach_ssm_and_ec2_through_interface_endpoints_open_to_the_network_only() -> None:
    """Under Pulumi mocks: the endpoints, their security group, and the VMs' group without HTTPS to the internet."""
    graph = build_graph(lambda: (Connector("payments", _connector_args()), {})[1])
    endpoints = [r for r in graph.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if r.inputs["vpcEndpointType"] == "Interface"]
    assert sorted(e.inputs["serviceName"] for e in endpoints) == [
        "com.amazonaws.eu-west-1.ec2", "com.amazonaws.eu-west-1.ec2messages", "com.amazonaws.eu-west-1.ssm",
        "com.amazonaws.eu-west-1.ssmmessages",
    ]
    for e in endpoints:
        assert e.inputs["privateDnsEnabled"] is True
        assert e.inputs["subnetIds"] == ["payments-appliance-0-id", "payments-appliance-1-id"]
        assert e.inputs["securityGroupIds"] == ["payments-vpce-sg-id"]
        assert graph.waits_for("payments-asg", e.name)  # the VMs boot once SSM and EC2 answer privately
    group = graph.by_name["payments-vpce-sg"].inputs
    # Private DNS makes them the VPC's answer for every instance, so the whole network may call them, no one else.
    assert [(r["protocol"], r["fromPort"], r["cidrBlocks"]) for r in group["ingress"]] == [("tcp", 443, ["10.8.0.0/24"])]
    assert group["egress"] == []
    vm_egress = graph.by_name["payments-sg"].inputs["egress"]
    assert not [r for r in vm_egress if r["fromPort"] == 443]  # delivery to the VPC's CIDRs covers the endpoints
    assert ["10.8.0.0/24"] in [r["cidrBlocks"] for r in vm_egress if r["protocol"] == "-1"]
    # A VPC that already resolves those services privately keeps its own; the VMs then need HTTPS out.
    own = build_graph(lambda: (Connector("payments", _connector_args(interface_endpoints=False)), {})[1])
    assert not [r for r in own.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if r.inputs["vpcEndpointType"] == "Interface"]
    assert [r["cidrBlocks"] for r in own.by_name["payments-sg"].inputs["egress"] if r["fromPort"] == 443] == [["0.0.0.0/0"]]


def test_nat_gateway_egress_routes_exactly_the_edges_elastic_ips_through_a_nat_gateway_per_zone() -> None:
    """Under Pulumi mocks: egress subnets, the internet gateway, a NAT gateway per zone, /32 routes per zone."""
    args = _connector_args(egress="nat-gateway", edge_public_ips=["203.0.113.7", "203.0.113.8"])
    graph = build_graph(lambda: (Connector("payments", args), {})[1])
    assert {graph.by_name[f"payments-egress-{i}"].inputs["cidrBlock"] for i in (0, 1)} == {"10.8.0.32/28", "10.8.0.48/28"}
    assert graph.by_name["payments-igw"].inputs["vpcId"] == "vpc-1"
    for i in (0, 1):
        nat = graph.by_name[f"payments-nat-{i}"]
        assert (nat.inputs["subnetId"], nat.inputs["allocationId"], nat.inputs["connectivityType"]) == (
            f"payments-egress-{i}-id", f"payments-nat-eip-{i}-id", "public")
        assert graph.waits_for(nat.name, "payments-igw")
        default = graph.by_name[f"payments-egress-rt-{i}-default"].inputs
        assert (default["routeTableId"], default["destinationCidrBlock"], default["gatewayId"]) == (
            f"payments-egress-rt-{i}-id", "0.0.0.0/0", "payments-igw-id")
    public = sorted(
        (r.inputs["routeTableId"], r.inputs["destinationCidrBlock"], r.inputs["natGatewayId"])
        for r in graph.of_type("aws:ec2/route:Route") if r.inputs.get("natGatewayId")
    )
    assert public == [
        ("payments-appliance-rt-0-id", "203.0.113.7/32", "payments-nat-0-id"), ("payments-appliance-rt-0-id", "203.0.113.8/32", "payments-nat-0-id"),
        ("payments-appliance-rt-1-id", "203.0.113.7/32", "payments-nat-1-id"), ("payments-appliance-rt-1-id", "203.0.113.8/32", "payments-nat-1-id"),
    ]  # zone-local, the edges' addresses only, never a default route out of the appliance subnets
    assert graph.waits_for("payments-asg", "payments-appliance-rt-0-eip-0")
    # A VPC that has its internet gateway names it: the connector creates none.
    named = build_graph(lambda: (Connector("payments", _connector_args(
        egress="nat-gateway", internet_gateway_id="igw-7", edge_public_ips=["203.0.113.7"])), {})[1])
    assert not named.of_type("aws:ec2/internetGateway:InternetGateway")
    assert named.by_name["payments-egress-rt-0-default"].inputs["gatewayId"] == "igw-7"


def test_connector_alone_routes_each_destination_to_its_zone_endpoint() -> None:
    graph = build_graph(lambda: (Connector("payments", _connector_args()), {})[1])
    assert graph.by_name["payments"].type == "transit:aws:Connector"
    for reg in graph.all[1:]:
        assert reg.name.startswith("payments-"), reg.name
        assert reg.parent, reg.name
    routes = sorted(
        (r.inputs["routeTableId"], r.inputs["destinationCidrBlock"], r.inputs["vpcEndpointId"])
        for r in graph.of_type("aws:ec2/route:Route") if r.inputs.get("vpcEndpointId")
    )
    assert routes == [
        ("rtb-a", "10.9.0.0/24", "payments-gwlbe-0-id"),
        ("rtb-a", "172.16.0.0/16", "payments-gwlbe-0-id"),
        ("rtb-b", "10.9.0.0/24", "payments-gwlbe-1-id"),
        ("rtb-b", "172.16.0.0/16", "payments-gwlbe-1-id"),
    ]
    assert graph.parent_of("payments-route-0-10-9-0-0-24").name == "payments"
    assert not graph.of_type("aws:ec2transitgateway/vpcAttachment:VpcAttachment")


def test_native_attach_is_a_tgw_attachment_with_routes_to_the_tgw() -> None:
    args = AttachmentArgs(
        **COMMON, vpc_id="vpc-1", network_cidrs=["10.8.0.0/24"], subnet_ids=["subnet-a", "subnet-b"],
        route_table_ids=["rtb-a"], destination_cidrs=["10.9.0.0/24"], transit_gateway_id="tgw-1", transit_gateway_route_table_id="tgw-rtb-1",
    )
    graph = build_graph(lambda: (Attachment("ledger", args), {})[1])
    assert graph.by_name["ledger"].type == "transit:aws:Attachment"
    assert not graph.of_type("aws:lb/loadBalancer:LoadBalancer")
    attach = graph.by_name["ledger-tgw-attach"]
    assert attach.inputs["transitGatewayDefaultRouteTableAssociation"] is False
    assert graph.by_name["ledger-tgw-assoc"].inputs["transitGatewayRouteTableId"] == "tgw-rtb-1"
    assert graph.by_name["ledger-tgw-prop"].inputs["transitGatewayRouteTableId"] == "tgw-rtb-1"
    route = graph.by_name["ledger-route-0-10-9-0-0-24"]
    assert route.inputs["transitGatewayId"] == "tgw-1"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"destination_cidrs": ["0.0.0.0/0"]}, "0.0.0.0/0"),
        ({"route_table_ids": ["rtb-a"]}, "one entry per zone"),
        ({"subnets": ZONES[:1]}, "one entry per zone"),
        ({"network_cidrs": ["10.9.0.0/24"]}, "outside the network's cidrs"),
        ({"endpoint_ips": ["10.8.0.4", "10.8.0.196"]}, "outside its appliance subnet"),
        ({"edge_public_ips": ["203.0.113.7"]}, "need egress nat-gateway"),
        ({"edge_cidrs": ["10.250.0.0/24"]}, "give transit_gateway_id"),
        ({"fabric": "Team"}, "fabric"),
    ],
)
def test_connector_refuses_bad_args_before_creating_anything(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_graph(lambda: (Connector("bad", _connector_args(**overrides)), {})[1])
    assert RECORDER.registrations == []


def _circuit_args(**overrides: Any) -> CircuitArgs:
    values: dict[str, Any] = dict(
        **COMMON, connection="dedicated", location="EqFA5", bandwidth_mbps=1000, vlan=300, customer_asn=65010,
        customer_address="169.254.10.1/30", amazon_address="169.254.10.2/30", md5_key=pulumi.Output.secret("s3cret"),
        dx_gateway_id="dxgw-1", dx_gateway_asn=64600,
        associations=[GatewayLink(key="core", kind="tgw", gateway_id="tgw-1", allowed_prefixes=["10.0.0.0/8"], asn=64512)],
    )
    values.update(overrides)
    return CircuitArgs(**values)


def test_dedicated_circuit_orders_the_port_and_associates_a_tgw_over_a_transit_vif() -> None:
    graph = build_graph(lambda: (Circuit("ams", _circuit_args()), {})[1])
    dxcon = graph.by_name["ams-dxcon"]
    assert (dxcon.inputs["bandwidth"], dxcon.inputs["location"]) == ("1Gbps", "EqFA5")
    vif = graph.by_name["ams-vif"]
    assert vif.type == "aws:directconnect/transitVirtualInterface:TransitVirtualInterface"
    assert vif.inputs["connectionId"] == "ams-dxcon-id" and vif.inputs["vlan"] == 300
    assert rpc.is_rpc_secret(vif.inputs["bgpAuthKey"])
    assert graph.parent_of("ams-vif").name == "ams-dxcon"
    assoc = graph.by_name["ams-dxgw-assoc-core"]
    assert (assoc.inputs["associatedGatewayId"], assoc.inputs["allowedPrefixes"]) == ("tgw-1", ["10.0.0.0/8"])
    assert not graph.of_type("aws:ec2/vpnGatewayRoutePropagation:VpnGatewayRoutePropagation")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"md5_key": "s3cret"}, "Pulumi secret Output"),
        ({"customer_address": "169.254.10.0/30"}, "network or broadcast"),
        ({"amazon_address": "169.254.11.2/30"}, "share one subnet"),
        ({"customer_address": "169.254.10.1/29", "amazon_address": "169.254.10.2/29"}, "/30 or /31"),
        ({"bandwidth_mbps": 50}, "not a dedicated port speed"),
        ({"connection": "hosted", "location": None, "bandwidth_mbps": None}, "hosted_connection_id"),
        ({"vlan": 5000}, "vlan 5000"),
        ({"associations": [GatewayLink(key="core", kind="tgw", gateway_id="tgw-1", asn=64512)]}, "allowed_prefixes"),
        ({"dx_gateway_asn": 64512}, "distinct TGW and DX gateway ASNs"),
        ({"dx_gateway_asn": None}, "needs asn .the TGW's. and dx_gateway_asn"),
        ({"associations": [GatewayLink(key="core", kind="tgw", gateway_id="tgw-1", allowed_prefixes=["10.0.0.0/8"], asn=64512),
                           GatewayLink(key="vpc", kind="vgw", gateway_id="vgw-1")]}, "needs a transit VIF"),
        ({"mtu": 9001}, "transit VIF are 1500, 8500"),
    ],
)
def test_circuit_refuses_bad_args_before_creating_anything(overrides: dict[str, Any], message: str) -> None:
    def build() -> dict[str, Any]:
        Circuit("bad", _circuit_args(**overrides))
        return {}

    with pytest.raises(ValueError, match=message):
        build_graph(build)
    assert RECORDER.registrations == []


def test_edge_in_an_existing_vpc_creates_no_vpc() -> None:
    args = EdgeArgs(
        **COMMON, zones=["eu-west-1a", "eu-west-1b"], image_id="ami-1", agent_config_json="{}", tls=TLS,
        existing_vpc=ExistingVpc(
            vpc_id="vpc-9", cidr="10.9.0.0/24", public_subnet_ids=["s-a", "s-b"], attachment_subnet_ids=["t-a", "t-b"],
            route_table_ids=["rtb-9"], private_endpoint_ips=["10.9.0.4", "10.9.0.68"], attachment_route_table_ids=["rtb-ta", "rtb-tb"],
        ),
        transit_gateway_id="tgw-1", transit_gateway_route_table_id="tgw-rtb-1", native_cidrs=["10.20.0.0/16"],
        ingress_cidrs=["172.18.0.0/16"], health_port=9108,
    )
    graph = build_graph(lambda: (Edge("hub", args), {})[1])
    assert not graph.of_type("aws:ec2/vpc:Vpc") and not graph.of_type("aws:ec2/subnet:Subnet")
    assert graph.by_name["hub-tgw-attach"].inputs["subnetIds"] == ["t-a", "t-b"]
    assert graph.by_name["hub-rt-0-10-20-0-0-16"].inputs["transitGatewayId"] == "tgw-1"
    assert [m["subnetId"] for m in graph.by_name["hub-nlb"].inputs["subnetMappings"]] == ["s-a", "s-b"]
    # Native networks' traffic to 172.18.0.0/16: TGW -> the edge's attachment -> the zone's GWLB endpoint.
    assert graph.by_name["hub-tgw-attach"].inputs["applianceModeSupport"] == "enable"
    tgw_route = graph.by_name["hub-tgw-route-172-18-0-0-16"]
    assert (tgw_route.inputs["transitGatewayAttachmentId"], tgw_route.inputs["transitGatewayRouteTableId"]) == ("hub-tgw-attach-id", "tgw-rtb-1")
    assert {(r.inputs["routeTableId"], r.inputs["vpcEndpointId"]) for r in graph.of_type("aws:ec2/route:Route") if "attach-rt" in r.name} == {
        ("rtb-ta", "hub-gwlbe-0-id"), ("rtb-tb", "hub-gwlbe-1-id"),
    }
    assert graph.by_name["hub-tg"].inputs["healthCheck"]["port"] == "9108"
    assert "hub-tg" in " ".join(graph.by_name["hub-asg"].inputs["targetGroupArns"])
    geneve = [r for r in graph.by_name["hub-sg"].inputs["ingress"] if r["protocol"] == "udp" and r["fromPort"] == 6081]
    assert [r["cidrBlocks"] for r in geneve] == [["10.9.0.0/24"]]
    egress = graph.by_name["hub-sg"].inputs["egress"]
    assert {"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["10.20.0.0/16"]}.items() <= next(
        e for e in egress if e["protocol"] == "-1"
    ).items()


def test_edge_refuses_a_cidr_and_an_existing_vpc_together() -> None:
    args = EdgeArgs(
        **COMMON, zones=["eu-west-1a", "eu-west-1b"], image_id="ami-1", agent_config_json="{}", tls=TLS, cidr="10.9.0.0/24",
        existing_vpc=ExistingVpc(vpc_id="v", cidr="10.9.0.0/24", public_subnet_ids=["a", "b"], attachment_subnet_ids=["c", "d"],
                                 route_table_ids=[], private_endpoint_ips=["10.9.0.4", "10.9.0.68"]),
    )
    with pytest.raises(ValueError, match="exactly one of cidr"):
        build_graph(lambda: (Edge("both", args), {})[1])
    assert RECORDER.registrations == []


def test_gateway_needs_something_to_build_and_builds_only_what_is_asked() -> None:
    with pytest.raises(ValueError, match="nothing to build"):
        build_graph(lambda: (Gateway("none", GatewayArgs(**COMMON, transit_gateway_asn=None)), {})[1])
    with pytest.raises(ValueError, match="private ASN"):
        build_graph(lambda: (Gateway("pub", GatewayArgs(**COMMON, transit_gateway_asn=7224)), {})[1])
    graph = build_graph(lambda: (Gateway("core", GatewayArgs(**COMMON, transit_gateway_asn=64600)), {})[1])
    assert [r.type for r in graph.all] == [
        "transit:aws:Gateway", "aws:ec2transitgateway/transitGateway:TransitGateway", "aws:ec2transitgateway/routeTable:RouteTable",
    ]


def test_segmentation_alone_wires_rules_to_groups_and_prefix_lists() -> None:
    web = Endpoint("web", (IPv4Network("10.8.0.0/26"),))
    net = Endpoint("app", (IPv4Network("10.8.0.0/24"),))
    remote = Endpoint("partners", (IPv4Network("192.0.2.0/24"), IPv4Network("198.51.100.0/24")))
    rules = [
        IntentRule("web-to-app", "permit", web, net, "tcp", ((8080, 8080),)),
        IntentRule("partners-to-web", "permit", remote, web, "tcp", ((443, 443),)),
    ]
    plan = compile_security(rules, [Segment("app", "eu-west-1", (IPv4Network("10.8.0.0/24"),))])
    args = SegmentationArgs(**COMMON, region="eu-west-1", plan=plan, vpc_ids={"app": "vpc-app"})
    graph = build_graph(lambda: (Segmentation("seg", args), {})[1])
    assert graph.by_name["seg-pl-partners"].inputs["entries"] == [{"cidr": "192.0.2.0/24"}, {"cidr": "198.51.100.0/24"}]
    rules_by_peer = {
        (r.inputs["securityGroupId"], r.inputs.get("referencedSecurityGroupId"), r.inputs.get("prefixListId"), r.inputs["fromPort"])
        for r in graph.all
        if r.type.startswith("aws:vpc/securityGroup")
    }
    assert ("seg-sg-app.web-id", None, "seg-pl-partners-id", 443) in rules_by_peer
    assert ("seg-sg-app-id", "seg-sg-app.web-id", None, 8080) in rules_by_peer
    with pytest.raises(ValueError, match="no VPC for networks"):
        build_graph(lambda: (Segmentation("seg", SegmentationArgs(**COMMON, region="eu-west-1", plan=plan, vpc_ids={})), {})[1])


def test_aws_options_come_from_stack_config() -> None:
    from components.aws.options import AwsOptions

    pulumi.runtime.set_config("transit:awsImageId", "ami-0cfg")
    pulumi.runtime.set_config("transit:awsHostedConnections", '{"fra-dx": "dxcon-cfg"}')
    pulumi.runtime.set_config(
        "transit:awsExistingNetworks",
        '{"aws-app": {"vpcId": "vpc-7", "workloadRouteTableIds": ["rtb-a", "rtb-b"], "egress": "nat-gateway", '
        '"internetGatewayId": "igw-7", "interfaceEndpoints": false}, '
        '"ledger": {"vpcId": "vpc-8", "workloadRouteTableIds": ["rtb-c"], "fabricSubnetIds": ["s-a", "s-b"]}}',
    )
    pulumi.runtime.set_config("transit:awsQuotas", '{"elasticIpsPerRegion": 20, "natGatewaysPerZone": 10}')
    try:
        options = AwsOptions.from_config(pulumi.Config("transit"))
    finally:
        for key in ("awsImageId", "awsHostedConnections", "awsExistingNetworks", "awsQuotas"):
            pulumi.runtime.config.CONFIG.get().pop(f"transit:{key}", None)
    assert (options.image_id, options.transit_gateway_asn, dict(options.hosted_connection_ids)) == ("ami-0cfg", 64512, {"fra-dx": "dxcon-cfg"})
    app, ledger = options.existing_networks["aws-app"], options.existing_networks["ledger"]
    assert (app.vpc_id, app.fabric_subnet_ids, app.egress, app.internet_gateway_id, app.interface_endpoints) == (
        "vpc-7", [], "nat-gateway", "igw-7", False)
    assert (ledger.fabric_subnet_ids, ledger.fabric_route_table_ids, ledger.egress, ledger.interface_endpoints) == (["s-a", "s-b"], [], "none", True)
    assert (options.quotas.elastic_ips_per_region, options.quotas.nat_gateways_per_zone, options.quotas.internet_gateways_per_region) == (20, 10, 5)
    # An existing VPC adds nothing public unless asked; a VPC the fabric builds leaves through its own NAT gateways.
    assert (options.egress("aws-app"), options.egress("ledger"), options.egress("greenfield")) == ("nat-gateway", "none", "nat-gateway")
    assert not options.creates_internet_gateway("aws-app") and options.creates_internet_gateway("greenfield")


def test_transit_peering_refuses_one_region_before_creating_anything() -> None:
    from components.aws import PeeringSide, TransitPeering, TransitPeeringArgs

    def build() -> dict[str, Any]:
        provider = pulumi.ProviderResource("aws", "euw1", {"region": "eu-west-1"})
        side = PeeringSide(region="eu-west-1", transit_gateway_id="tgw-1", route_table_id="rtb-1")
        TransitPeering("loop", TransitPeeringArgs(**COMMON, requester=side, accepter=side, accepter_provider=provider))
        return {}

    with pytest.raises(ValueError, match="in one region"):
        build_graph(build)
    assert [r.type for r in RECORDER.registrations] == ["pulumi:providers:aws"]


def test_edge_builds_the_subnets_it_is_given_and_refuses_one_outside_its_cidr() -> None:
    planned = dict(
        **COMMON, zones=["eu-west-1a", "eu-west-1b"], image_id="ami-1", agent_config_json="{}", tls=TLS, cidr="10.9.0.0/24",
        public_subnets=["10.9.0.0/26", "10.9.0.64/26"], attachment_subnets=["10.9.0.192/28", "10.9.0.208/28"],
        private_ips=["10.9.0.4", "10.9.0.68"],
    )
    graph = build_graph(lambda: (Edge("given", EdgeArgs(**planned)), {})[1])  # type: ignore[arg-type]
    subnets = {r.name: (r.inputs["cidrBlock"], r.inputs["availabilityZone"]) for r in graph.of_type("aws:ec2/subnet:Subnet")}
    assert subnets == {
        "given-public-0": ("10.9.0.0/26", "eu-west-1a"), "given-attach-0": ("10.9.0.192/28", "eu-west-1a"),
        "given-public-1": ("10.9.0.64/26", "eu-west-1b"), "given-attach-1": ("10.9.0.208/28", "eu-west-1b"),
    }
    assert [m["privateIpv4Address"] for m in graph.by_name["given-nlb-private"].inputs["subnetMappings"]] == ["10.9.0.4", "10.9.0.68"]
    with pytest.raises(ValueError, match=r"subnet 10\.8\.0\.0/26 is outside cidr 10\.9\.0\.0/24"):
        build_graph(lambda: (Edge("off", EdgeArgs(**{**planned, "public_subnets": ["10.8.0.0/26", "10.9.0.64/26"]})), {})[1])  # type: ignore[arg-type]
    assert RECORDER.registrations == []
