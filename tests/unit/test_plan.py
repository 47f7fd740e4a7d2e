"""The pure plan: address allocation, peering addresses, links, determinism."""
from __future__ import annotations

import ipaddress
import json

from components.plan import build_plan, default_connector_cidr, pair_index
from spec_helpers import example, spec_of


def _plan(data: dict | None = None):
    return build_plan(spec_of(data or example()))


def test_edges_get_zone_subnets_and_a_gateway_subnet_from_their_cidr() -> None:
    aws, az = _plan().edges
    assert aws.zones == ["us-east-1-zone1", "us-east-1-zone2"]
    assert [(s.zone, s.cidr) for s in aws.subnets] == [("us-east-1-zone1", "10.250.37.0/26"), ("us-east-1-zone2", "10.250.37.64/26")]
    assert aws.gateway_cidr == "10.250.37.192/26"
    assert az.zones == ["1", "2"]
    assert aws.instances == 2 and aws.tunnel_port and aws.probe_port and aws.metrics_port
    cidr = ipaddress.IPv4Network(aws.cidr)
    assert all(ipaddress.IPv4Network(s.cidr).subnet_of(cidr) for s in aws.subnets)


def test_three_zones_on_gcp() -> None:
    data = example()
    data["edges"].append({"name": "gcp-euw3", "cloud": "gcp", "region": "europe-west3", "cidr": "10.252.0.0/24", "zones": 3, "instances": 3})
    edge = _plan(data).edges[2]
    assert edge.zones == ["europe-west3-a", "europe-west3-b", "europe-west3-c"]
    assert [s.cidr for s in edge.subnets] == ["10.252.0.0/26", "10.252.0.64/26", "10.252.0.128/26"]
    assert edge.gateway_cidr == "10.252.0.192/26" and edge.instances == 3


def test_networks_are_homed_on_their_region_edge_and_onprem_on_the_first_edge() -> None:
    plan = _plan()
    assert plan.edges[0].networks == ["aws-app", "dc-fra"]
    assert plan.edges[1].networks == ["az-app"]
    assert {c.network: c.edge for c in plan.connectors} == {"aws-app": "aws-use1", "dc-fra": "aws-use1"}


def test_named_edge_wins() -> None:
    data = example()
    data["networks"][2]["edge"] = "az-weu"
    plan = _plan(data)
    assert plan.connectors[1].edge == "az-weu"
    assert plan.edges[1].networks == ["az-app", "dc-fra"]


def test_cloud_connector_subnets_are_carved_from_the_end_of_the_network() -> None:
    connector = _plan().connectors[0]
    assert connector.connector_cidr == "10.30.40.224/27"
    assert [(s.zone, s.cidr) for s in connector.subnets] == [("us-east-1-zone1", "10.30.40.224/28"), ("us-east-1-zone2", "10.30.40.240/28")]
    assert connector.bgp is None and connector.cidrs == ["10.30.40.0/24"]


def test_explicit_connector_cidr_and_zone_count_drive_the_carving() -> None:
    data = example()
    data["edges"][0]["zones"] = 3
    data["networks"][0]["connector_cidr"] = "10.30.40.0/26"
    connector = _plan(data).connectors[0]
    assert [s.cidr for s in connector.subnets] == ["10.30.40.0/28", "10.30.40.16/28", "10.30.40.32/28"]
    spec = spec_of(example())
    assert str(default_connector_cidr(spec.networks[0], 1)) == "10.30.40.240/28"
    assert str(default_connector_cidr(spec.networks[0], 3)) == "10.30.40.192/26"


def test_onprem_connector_carries_its_bgp_session() -> None:
    dc = _plan().connectors[1]
    assert dc.subnets == [] and dc.connector_cidr is None and dc.site == "fra"
    assert dc.bgp is not None
    assert (dc.bgp.asn, dc.bgp.local_ip, dc.bgp.peer_ip, dc.bgp.peer_asn) == (65010, "192.168.255.2", "192.168.255.1", 65001)
    assert dc.bgp.md5_secret == "dcFraMd5"


def test_native_attachments_use_the_cloud_construct() -> None:
    (attach,) = _plan().attachments
    assert (attach.network, attach.kind, attach.edge, attach.region) == ("az-app", "vwan-hub", "az-weu", "westeurope")


def test_peering_addresses_follow_each_provider() -> None:
    dx, er = _plan().circuits
    assert [(s.role, s.customer_ip, s.peer_ip, s.prefix_length) for s in dx.sessions] == [("primary", "10.0.0.0", "10.0.0.1", 31)]
    assert [(s.role, s.customer_ip, s.peer_ip) for s in er.sessions] == [
        ("primary", "10.0.0.13", "10.0.0.14"),
        ("secondary", "10.0.0.17", "10.0.0.18"),
    ]
    assert (dx.cloud, dx.vlan, dx.bandwidth_mbps, dx.customer_asn, dx.peer_asn) == ("aws", 101, 50, 65000, 64512)
    assert dx.md5_secret == "fraDxMd5" and dx.cloud_router == "acme-cloud-router"
    assert [(a.network, a.region, a.cidrs) for a in dx.attaches] == [("aws-app", "us-east-1", ["10.30.40.0/24"])]


def test_dx_on_a_slash_30_and_gcp_and_explicit_addresses() -> None:
    data = example()
    data["circuits"][0]["bgp"]["peering"] = ["10.0.0.4/30"]
    data["circuits"][1]["bgp"]["customer_ips"] = ["10.0.0.14", "10.0.0.18"]
    data["circuits"][1]["bgp"]["peer_ips"] = ["10.0.0.13", "10.0.0.17"]
    data["edges"].append({"name": "gcp-euw3", "cloud": "gcp", "region": "europe-west3", "cidr": "10.252.0.0/24"})
    data["networks"].append({"name": "gcp-app", "cloud": "gcp", "region": "europe-west3", "cidrs": ["10.40.0.0/24"], "attach": "native"})
    data["circuits"].append({
        "name": "gcp-ic", "provider": "gcp-interconnect", "location": "fra-zone1-2", "bandwidth_mbps": 1000, "vlan": 300,
        "bgp": {"customer_asn": 65000, "peer_asn": 16550, "peering": ["169.254.67.200/29"], "md5_secret": "gcpMd5"},
        "attaches": ["gcp-app"],
    })
    dx, er, gcp = _plan(data).circuits
    assert (dx.sessions[0].customer_ip, dx.sessions[0].peer_ip) == ("10.0.0.5", "10.0.0.6")
    assert [(s.customer_ip, s.peer_ip) for s in er.sessions] == [("10.0.0.14", "10.0.0.13"), ("10.0.0.18", "10.0.0.17")]
    assert (gcp.sessions[0].customer_ip, gcp.sessions[0].peer_ip) == ("169.254.67.202", "169.254.67.201")
    assert gcp.cloud_router is None


def test_cloud_router_neighbors_are_the_customer_side_of_each_session() -> None:
    router = _plan().cloud_router
    assert router is not None
    assert (router.name, router.asn, router.locations) == ("acme-cloud-router", 65000, ["EqFA5", "Frankfurt"])
    assert [(n.circuit, n.role, n.vlan, n.local_ip, n.peer_ip, n.peer_asn) for n in router.neighbors] == [
        ("fra-dx", "primary", 101, "10.0.0.0", "10.0.0.1", 64512),
        ("fra-er", "primary", 100, "10.0.0.13", "10.0.0.14", 12076),
        ("fra-er", "secondary", 100, "10.0.0.17", "10.0.0.18", 12076),
    ]


def test_no_cloud_router_no_circuits() -> None:
    plan = _plan(example("seed000_aws_azure"))
    assert plan.cloud_router is None and plan.circuits == []


def test_edges_mesh_over_backbone_and_internet_and_connectors_uplink() -> None:
    links = _plan().links
    assert [(l.name, l.a_ip, l.b_ip, l.preference) for l in links] == [
        ("aws-use1--az-weu-backbone", "100.64.0.0", "100.64.0.1", 100),
        ("aws-use1--az-weu-internet", "198.18.0.0", "198.18.0.1", 200),
        ("aws-app-connector--aws-use1-backbone", "100.64.128.0", "100.64.128.1", 100),
        ("aws-app-connector--aws-use1-internet", "198.18.128.0", "198.18.128.1", 200),
        ("dc-fra-connector--aws-use1-backbone", "100.64.128.4", "100.64.128.5", 100),
        ("dc-fra-connector--aws-use1-internet", "198.18.128.4", "198.18.128.5", 200),
    ]


def test_appending_an_edge_or_network_never_moves_an_existing_address() -> None:
    before = {l.name: l.subnet for l in _plan().links}
    data = example()
    data["edges"].append({"name": "aws-usw2", "cloud": "aws", "region": "us-west-2", "cidr": "10.250.40.0/24"})
    data["networks"].append({"name": "west-app", "cloud": "aws", "region": "us-west-2", "cidrs": ["10.31.0.0/24"], "attach": "connector"})
    after = {l.name: l.subnet for l in _plan(data).links}
    assert all(after[name] == subnet for name, subnet in before.items())
    assert len(after) == len(before) + 4 + 2
    assert len(set(after.values())) == len(after)


def test_pair_index_enumerates_pairs_densely() -> None:
    pairs = [pair_index(i, j) for j in range(6) for i in range(j)]
    assert pairs == list(range(15))


def test_plan_is_deterministic_and_json_round_trips() -> None:
    one = _plan().model_dump_json()
    two = _plan().model_dump_json()
    assert one == two
    assert json.loads(one)["fabric"] == "acme"


def test_plan_json_holds_secret_names_only() -> None:
    data = example()
    text = _plan(data).model_dump_json()
    for key in ("fraDxMd5", "fraErMd5", "dcFraMd5"):
        assert f'"md5_secret":"{key}"' in text
