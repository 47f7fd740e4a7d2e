"""What a real `pulumi up` needs beyond a clean-looking graph, asserted on the mock graph (no AWS account here).

Creation order comes only from dependencies (`parent` orders nothing), so
each edge AWS's API needs is asserted as a dependency: routes to a TGW on the
TGW attachment, DX gateway associations and VGW propagation on the VGW's
attachment to its VPC. Also: the private path's return routes, the instance
refresh a new launch-template version starts, the endpoint service's allowed
principal, and circuits doubled or spread over two regions.
"""
from __future__ import annotations

import base64
from typing import Any

import pulumi
import pytest

from tests.component.conftest import FakeCloud, Graph, build_graph

from testbed.fake_cloud import fabric_ca
from components.aws.options import AwsOptions, ExistingNetwork  # noqa: E402  (mocks are set in conftest first)
from components.fabric import Fabric, FabricArgs
from components.spec import FabricSpec, validate_spec
from dataplane.boot_document import parse_document
from tests.unit.spec_helpers import example

SECRETS = {"fraDxMd5": "k1", "fraDx2Md5": "k2", "fraErMd5": "k3", "dcFraMd5": "k4"}


def _fabric(spec: FabricSpec, hosted: dict[str, str] | None = None) -> Graph:
    def build() -> dict[str, Any]:
        secrets = {k: pulumi.Output.secret(v) for k, v in SECRETS.items()}
        options = AwsOptions(fabric_ca=fabric_ca(), image_id="ami-1", hosted_connection_ids=hosted or {"fra-dx": "dxcon-1"})
        Fabric(spec.name, FabricArgs(spec=spec, environment="dev", secrets=secrets, clouds=["aws"], options={"aws": options}))
        return {}

    return build_graph(build)


@pytest.fixture(scope="module")
def acme() -> Graph:
    """The architecture example: connector network aws-app in us-east-1, circuit fra-dx at an eu-central-1 location."""
    return _fabric(validate_spec(example()))


def _named(graph: Graph, type_: str, prefix: str) -> list[str]:
    return [r.name for r in graph.of_type(type_) if r.name.startswith(prefix)]


ROUTE = "aws:ec2/route:Route"


def test_every_vpc_route_to_the_tgw_waits_for_the_tgw_attachment(acme: Graph) -> None:
    to_tgw = [r for r in acme.of_type(ROUTE) if r.inputs.get("transitGatewayId")]
    assert len(to_tgw) >= 3
    for route in to_tgw:
        owner = "aws-use1" if route.name.startswith("aws-use1") else "aws-app-connector"
        assert acme.waits_for(route.name, f"{owner}-tgw-attach"), route.name


def test_the_edge_routes_connector_subnets_back_over_the_tgw_not_the_internet(acme: Graph) -> None:
    connector_subnets = {"10.30.40.128/26", "10.30.40.192/26"}  # the appliance subnets: VMs and internal NLB
    edge_routes = {r.inputs["destinationCidrBlock"]: r for r in acme.of_type(ROUTE) if r.name.startswith("aws-use1-rt-0-")}
    assert connector_subnets <= set(edge_routes), sorted(edge_routes)
    assert all(edge_routes[c].inputs["transitGatewayId"] == "acme-us-east-1-tgw-id" for c in connector_subnets)


def test_dx_association_and_vgw_propagation_wait_for_the_vgw_attachment(acme: Graph) -> None:
    attach = "acme-us-east-1-vgw-aws-app-attach"
    assert acme.waits_for("fra-dx-dxgw-assoc-aws-app", attach)
    for name in _named(acme, "aws:ec2/vpnGatewayRoutePropagation:VpnGatewayRoutePropagation", "fra-dx-propagate-"):
        assert acme.waits_for(name, attach), name


def test_the_circuit_lives_in_its_locations_region_and_associates_the_vgw_in_the_networks(acme: Graph) -> None:
    vif = acme.by_name["fra-dx-vif"]
    assert vif.provider.startswith(acme.by_name["acme-aws-eu-central-1"].urn)
    dxgw = acme.by_name["acme-eu-central-1-dxgw-fra-dx"]
    assert vif.inputs["dxGatewayId"] == "acme-eu-central-1-dxgw-fra-dx-id" and dxgw.inputs["amazonSideAsn"] == "64512"
    assoc = acme.by_name["fra-dx-dxgw-assoc-aws-app"]
    assert (assoc.inputs["associatedGatewayId"], assoc.inputs["region"]) == ("acme-us-east-1-vgw-aws-app-id", "us-east-1")
    assert {acme.by_name[n].inputs["region"] for n in _named(acme, "aws:ec2/vpnGatewayRoutePropagation:VpnGatewayRoutePropagation", "fra-dx")} == {"us-east-1"}


def test_a_new_launch_template_version_reaches_the_autoscaling_group(acme: Graph) -> None:
    for asg in acme.of_type("aws:autoscaling/group:Group"):
        assert asg.inputs["launchTemplate"]["version"] == "3", asg.name  # the template's latest_version, never "$Latest"
        assert asg.inputs["instanceRefresh"]["strategy"] == "Rolling"


def test_the_gwlb_endpoint_service_allows_this_account(acme: Graph) -> None:
    (service,) = acme.of_type("aws:ec2/vpcEndpointService:VpcEndpointService")
    assert service.inputs["allowedPrincipals"] == ["arn:aws:iam::123456789012:root"]


def test_circuits_doubled_for_redundancy_end_on_one_dx_gateway_that_associates_the_vgw_once() -> None:
    data = example()
    bgp = {**data["circuits"][0]["bgp"], "peering": ["10.0.0.2/31"], "md5_secret": "fraDx2Md5"}
    data["circuits"].insert(1, {**data["circuits"][0], "name": "fra-dx-2", "connection": "dedicated", "bandwidth_mbps": 1000,
                                "vlan": 102, "bgp": bgp})
    graph = _fabric(validate_spec(data))
    assert [r.name for r in graph.of_type("aws:directconnect/gateway:Gateway")] == ["acme-eu-central-1-dxgw-fra-dx"]
    assert [r.name for r in graph.of_type("aws:directconnect/gatewayAssociation:GatewayAssociation")] == ["fra-dx-dxgw-assoc-aws-app"]
    vifs = graph.of_type("aws:directconnect/privateVirtualInterface:PrivateVirtualInterface")
    assert sorted(v.name for v in vifs) == ["fra-dx-2-vif", "fra-dx-vif"]
    assert {v.inputs["dxGatewayId"] for v in vifs} == {"acme-eu-central-1-dxgw-fra-dx-id"}


def test_a_circuit_reaching_networks_in_two_regions_builds_a_vgw_in_each() -> None:
    data = example()
    data["networks"].append({"name": "aws-eu", "cloud": "aws", "region": "eu-central-1", "cidrs": ["10.31.0.0/24"],
                             "attach": "connector", "edge": "aws-use1"})
    data["circuits"][0]["attaches"] = ["aws-app", "aws-eu"]
    graph = _fabric(validate_spec(data))
    vgws = {r.name for r in graph.of_type("aws:ec2/vpnGateway:VpnGateway")}
    assert vgws == {"acme-us-east-1-vgw-aws-app", "acme-eu-central-1-vgw-aws-eu"}
    regions = {r.name: r.inputs.get("region") for r in graph.of_type("aws:directconnect/gatewayAssociation:GatewayAssociation")}
    assert regions == {"fra-dx-dxgw-assoc-aws-app": "us-east-1", "fra-dx-dxgw-assoc-aws-eu": None}  # None: the circuit's own region
    assert graph.waits_for("fra-dx-dxgw-assoc-aws-eu", "acme-eu-central-1-vgw-aws-eu-attach")


def test_a_hosted_connection_whose_partner_vlan_differs_from_the_spec_is_refused_before_the_vif(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeCloud, "HOSTED_VLAN", 777)
    with pytest.raises(Exception, match="the partner set VLAN 777 on hosted connection dxcon-1, the spec says 101"):
        _fabric(validate_spec(example()))


def test_zone_names_come_from_the_account_for_the_plans_zone_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeCloud, "ZONE_LETTERS", "cdf")  # an account where us-east-1a is not available
    graph = _fabric(validate_spec(example()))
    zones = {r.name: r.inputs["availabilityZone"] for r in graph.of_type("aws:ec2/subnet:Subnet")}
    assert zones["aws-use1-public-0"] == zones["aws-app-workload-0"] == "us-east-1c"
    assert zones["aws-use1-attach-1"] == zones["aws-app-connector-appliance-1"] == zones["aws-app-connector-gwlb-1"] == "us-east-1d"


def test_a_region_with_fewer_available_zones_than_planned_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeCloud, "ZONE_LETTERS", "a")
    with pytest.raises(Exception, match=r"region us-east-1 has 1 available zones \(us-east-1a\); the plan needs 2"):
        _fabric(validate_spec(example()))


def test_the_connector_takes_geneve_only_from_its_gwlb_subnets_and_delivers_from_its_own_address(acme: Graph) -> None:
    config = parse_document(base64.b64decode(acme.by_name["aws-app-connector-lt"].inputs["userData"])).agent
    assert config.geneve is not None
    assert [str(c) for c in config.geneve.gwlb_cidrs] == ["10.30.40.96/28", "10.30.40.112/28"]  # the GWLB subnets
    assert [([str(c) for c in n.cidrs], n.deliver_from) for n in config.geneve.networks] == [(["10.30.40.0/24"], "node")]
    assert (config.geneve.listen.port, config.geneve.mtu) == (6081, 8500)
    assert config.listen.metrics is not None and str(config.listen.metrics.host) == "0.0.0.0"
    ingress = acme.by_name["aws-app-connector-sg"].inputs["ingress"]
    opened = {(r["protocol"], r["fromPort"], r["cidrBlocks"][0]) for r in ingress}
    for subnet in ("10.30.40.96/28", "10.30.40.112/28"):
        assert {("udp", 6081, subnet), ("tcp", config.listen.metrics.port, subnet)} <= opened
    assert {r["cidrBlocks"][0] for r in ingress if r["fromPort"] == 6081} == {"10.30.40.96/28", "10.30.40.112/28"}


def test_an_edge_without_native_networks_behind_its_gwlb_has_no_geneve(acme: Graph) -> None:
    config = parse_document(base64.b64decode(acme.by_name["aws-use1-lt"].inputs["userData"])).agent
    assert config.geneve is None
    assert not any(r["fromPort"] == 6081 for r in acme.by_name["aws-use1-sg"].inputs["ingress"])


def _inbound(deliver_from: str) -> Graph:
    data = example()
    data["networks"][0].update(deliver_from=deliver_from, instances=1)
    data["policy"]["rules"].append({"name": "az-to-app", "from": "az-app", "to": "aws-app", "proto": "tcp", "ports": [8080, 9000],
                                    "action": "permit"})
    return _fabric(validate_spec(data))


def test_workload_groups_admit_the_connector_subnets_on_the_permitted_ports_when_it_delivers_from_its_own_address() -> None:
    """`deliver_from: node` (the default): az-app's flows reach aws-app's workloads from the connector VMs' addresses, so
    aws-app's group admits the connector's appliance subnets on 8080 and 9000 and nothing else; `client` keeps the
    remote peers as sources and admits no connector subnet."""
    node = _inbound("node")
    appliance = sorted(node.by_name[f"aws-app-connector-appliance-{z}"].inputs["cidrBlock"] for z in (0, 1))
    assert appliance == ["10.30.40.128/26", "10.30.40.192/26"]  # adjacent: one rule per port names both (/25)
    admitted = [r for r in node.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
                if r.inputs.get("cidrIpv4") == "10.30.40.128/25"]
    assert sorted((r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["toPort"]) for r in admitted) == [("tcp", 8080, 8080), ("tcp", 9000, 9000)]
    assert {r.inputs["securityGroupId"] for r in admitted} == {"acme-us-east-1-seg-sg-aws-app-id"}
    config = parse_document(base64.b64decode(node.by_name["aws-app-connector-lt"].inputs["userData"])).agent
    assert config.geneve is not None and [n.deliver_from for n in config.geneve.networks] == ["node"]

    client = _inbound("client")
    assert not [r for r in client.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
                if r.inputs.get("cidrIpv4") == "10.30.40.128/25"]
    remote = [r for r in client.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") if r.inputs.get("fromPort") == 8080]
    assert len(remote) == 1 and remote[0].inputs["prefixListId"].endswith("-pl-az-app-id")
    config = parse_document(base64.b64decode(client.by_name["aws-app-connector-lt"].inputs["userData"])).agent
    assert config.geneve is not None and [n.deliver_from for n in config.geneve.networks] == ["client"]


def test_a_connector_in_an_existing_vpc_creates_its_subnets_there_and_adds_nothing_public_unless_asked() -> None:
    """Under Pulumi mocks: onboarding an existing VPC builds the connector's own subnets in it, with no internet
    gateway, NAT gateway or public route by default; `nat-gateway` with the VPC's own gateway adds NAT gateways only."""
    spec = validate_spec(example())

    def build(existing: ExistingNetwork) -> Graph:
        def program() -> dict[str, Any]:
            secrets = {k: pulumi.Output.secret(v) for k, v in SECRETS.items()}
            options = AwsOptions(image_id="ami-1", hosted_connection_ids={"fra-dx": "dxcon-1"}, existing_networks={"aws-app": existing}, fabric_ca=fabric_ca())
            Fabric(spec.name, FabricArgs(spec=spec, environment="dev", secrets=secrets, clouds=["aws"], options={"aws": options}))
            return {}

        return build_graph(program)

    base = {"vpc_id": "vpc-7", "workload_route_table_ids": ["rtb-a", "rtb-b"]}
    private = build(ExistingNetwork(**base))  # type: ignore[arg-type]
    assert "aws-app-vpc" not in private.by_name
    assert {private.by_name[f"aws-app-connector-{role}-0"].inputs["vpcId"] for role in ("appliance", "gwlb", "attachment")} == {"vpc-7"}
    assert "aws-app-connector-igw" not in private.by_name and not private.of_type("aws:ec2/natGateway:NatGateway")
    assert "aws-app-connector-egress-0" not in private.by_name
    assert private.by_name["aws-app-connector-gwlbe-0"].inputs["vpcId"] == "vpc-7"
    edge = parse_document(base64.b64decode(private.by_name["aws-app-connector-lt"].inputs["userData"])).agent.peers[0]
    assert (str(edge.private_addr), edge.public_addr) == ("10.250.37.4", None)  # no egress: the private path only
    public = build(ExistingNetwork(**base, egress="nat-gateway", internet_gateway_id="igw-7"))  # type: ignore[arg-type]
    assert "aws-app-connector-igw" not in public.by_name
    assert len(public.of_type("aws:ec2/natGateway:NatGateway")) == 2
    assert public.by_name["aws-app-connector-egress-rt-1-default"].inputs["gatewayId"] == "igw-7"
    edge = parse_document(base64.b64decode(public.by_name["aws-app-connector-lt"].inputs["userData"])).agent.peers[0]
    assert edge.public_addr is not None
    with pytest.raises(ValueError, match=r"aws.existing_networks.aws-app.fabric_subnet_ids: a connector creates its own subnets"):
        build(ExistingNetwork(**base, fabric_subnet_ids=["subnet-a", "subnet-b"]))  # type: ignore[arg-type]
