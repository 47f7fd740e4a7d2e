"""One bad and one good case per validation rule, each checked by field path and advice."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from spec_helpers import example, problems_of

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """A mutation that sets `a.b[0].c` style paths in the raw spec."""

    def apply(data: dict[str, Any]) -> None:
        parts = path.replace("]", "").replace("[", ".").split(".")
        target: Any = data
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = parts[-1]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return apply


def _do(*mutations: Mutation) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        for m in mutations:
            m(data)

    return apply


def _append(path: str, value: Any) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        target: Any = data
        for part in path.split("."):
            target = target.setdefault(part, []) if isinstance(target, dict) else target[int(part)]
        target.append(value)

    return apply


def _gcp_circuit(**changes: Any) -> dict[str, Any]:
    circuit = {
        "name": "gcp-ic",
        "provider": "gcp-interconnect",
        "location": "fra-zone1-2",
        "bandwidth_mbps": 1000,
        "vlan": 200,
        "bgp": {"customer_asn": 65000, "peer_asn": 16550, "peering": ["169.254.10.0/29"], "md5_secret": "gcpMd5"},
        "attaches": ["gcp-app"],
    }
    circuit.update(changes)
    return circuit


_GCP = _do(
    _append("edges", {"name": "gcp-euw3", "cloud": "gcp", "region": "europe-west3", "cidr": "10.252.37.0/24"}),
    _append("networks", {"name": "gcp-app", "cloud": "gcp", "region": "europe-west3", "cidrs": ["10.40.0.0/24"], "attach": "native"}),
)

# (id, bad mutation, expected path, message fragment, good mutation)
CASES: list[tuple[str, Mutation, str, str, Mutation]] = [
    ("malformed-cidr", _set("edges[0].cidr", "10.250.37.0/33"), "edges[0].cidr", "not a valid IPv4 CIDR",
     _set("edges[0].cidr", "10.250.36.0/24")),
    ("cidr-without-prefix", _set("networks[0].cidrs[0]", "10.30.40.0"), "networks[0].cidrs[0]", "no prefix length",
     _set("networks[0].cidrs[0]", "10.30.41.0/24")),
    ("host-bits", _set("networks[1].cidrs[0]", "172.18.40.1/24"), "networks[1].cidrs[0]", "use 172.18.40.0/24",
     _set("networks[1].cidrs[0]", "172.18.40.0/24")),
    ("overlap-network-network", _set("networks[1].cidrs", ["172.18.40.0/24", "10.30.40.128/25"]), "networks[1].cidrs[1]",
     "overlaps networks[0].cidrs[0]", _set("networks[1].cidrs", ["172.18.40.0/24", "10.30.41.0/25"])),
    ("overlap-edge-network", _set("edges[1].cidr", "10.30.40.0/24"), "networks[0].cidrs[0]", "overlaps edges[1].cidr",
     _set("edges[1].cidr", "10.254.38.0/24")),
    ("overlap-peering", _set("circuits[1].bgp.peering", ["10.0.0.0/30", "10.0.0.16/30"]), "circuits[1].bgp.peering[0]",
     "overlaps circuits[0].bgp.peering[0]", _set("circuits[1].bgp.peering", ["10.0.0.4/30", "10.0.0.16/30"])),
    ("overlap-peering-network", _set("circuits[0].bgp.peering", ["192.168.1.0/31"]), "circuits[0].bgp.peering[0]",
     "overlaps networks[2].cidrs[0]", _set("circuits[0].bgp.peering", ["10.0.0.2/31"])),
    ("overlap-underlay", _set("underlay", {"backbone_cidr": "10.250.0.0/16"}), "underlay.backbone_cidr", "overlaps",
     _set("underlay", {"backbone_cidr": "100.65.0.0/16"})),
    ("group-outside-networks", _set("groups.db", ["10.250.37.10/32"]), "groups.db[0]", "not inside any onboarded network",
     _set("groups.db", ["172.18.40.11/32"])),
    ("group-overlaps-itself", _set("groups.db", ["172.18.40.0/28", "172.18.40.10/32"]), "groups.db[1]", "overlaps groups.db[0]",
     _set("groups.db", ["172.18.40.0/28", "172.18.40.16/32"])),
    ("group-unknown-network", _set("groups.db", ["az-ap"]), "groups.db[0]", "unknown network 'az-ap'",
     _set("groups.db", ["az-app"])),
    ("group-names-group", _do(_set("groups.web", ["172.18.40.20/32"]), _set("groups.db", ["web"])), "groups.db[0]",
     "groups cannot contain groups", _do(_set("groups.web", ["172.18.40.20/32"]), _set("groups.db", ["172.18.40.10/32"]))),
    ("group-empty", _set("groups.db", []), "groups.db", "is empty", _set("groups.db", ["172.18.40.10/32"])),
    ("rule-unknown-endpoint", _set("policy.rules[1].to", "dbs"), "policy.rules[1].to", "unknown endpoint 'dbs'",
     _set("policy.rules[1].to", "az-app")),
    ("test-unknown-endpoint", _set("policy.tests[0].from", "aws-ap"), "policy.tests[0].from", "unknown endpoint",
     _set("policy.tests[0].from", "10.30.40.7")),
    ("test-any-endpoint", _set("policy.tests[0].from", "any"), "policy.tests[0].from", "not a concrete endpoint",
     _set("policy.tests[0].from", "aws-app")),
    ("test-ip-outside", _set("policy.tests[0].to", "8.8.8.8"), "policy.tests[0].to", "not inside any onboarded network",
     _set("policy.tests[0].to", "172.18.40.10")),
    ("circuit-unknown-network", _set("circuits[0].attaches", ["aws-ap"]), "circuits[0].attaches[0]", "unknown network",
     _set("circuits[0].attaches", ["aws-app"])),
    ("circuit-attach-twice", _set("circuits[0].attaches", ["aws-app", "aws-app"]), "circuits[0].attaches[1]", "listed twice",
     _set("circuits[0].attaches", ["aws-app"])),
    ("cloud-router-unknown-circuit", _set("cloud_router.circuits", ["fra-dx", "fra-xx"]), "cloud_router.circuits[1]",
     "unknown circuit 'fra-xx'", _set("cloud_router.circuits", ["fra-dx"])),
    ("cloud-router-asn", _set("cloud_router.asn", 65009), "circuits[0].bgp.customer_asn", "differs from cloud_router.asn",
     _set("cloud_router.asn", 65000)),
    ("network-unknown-edge", _set("networks[0].edge", "aws-usw2"), "networks[0].edge", "unknown edge",
     _set("networks[0].edge", "aws-use1")),
    ("native-edge-other-cloud", _set("networks[1].edge", "aws-use1"), "networks[1].edge", "needs an edge in azure",
     _set("networks[1].edge", "az-weu")),
    ("duplicate-name", _set("networks[1].name", "aws-app"), "networks[1].name", "already used by networks[0].name",
     _set("networks[1].name", "az-app")),
    ("duplicate-across-kinds", _set("groups.fra-dx", ["172.18.40.10/32"]), "groups.fra-dx", "already used by circuits[0].name",
     _set("groups.fra-db", ["172.18.40.20/32"])),
    ("duplicate-rule-name", _set("policy.rules[1].name", "no-ssh"), "policy.rules[1].name", "already used by policy.rules[0]",
     _set("policy.rules[1].name", "app-db")),
    ("name-not-dns-safe", _set("edges[0].name", "AWS_use1"), "edges[0].name", "not a DNS-safe name",
     _set("edges[0].name", "aws-use-1")),
    ("name-reserved", _set("groups.any", ["172.18.40.10/32"]), "groups.any", "reserved",
     _set("groups.all-db", ["172.18.40.12/32"])),
    ("fabric-name", _set("name", "acme-"), "name", "not a DNS-safe name", _set("name", "acme2")),
    ("asn-out-of-range", _set("circuits[0].bgp.customer_asn", 4294967295), "circuits[0].bgp.customer_asn", "out of range",
     _set("circuits[0].bgp.peer_asn", 4200000000)),
    ("asn-zero", _set("networks[2].bgp.asn", 0), "networks[2].bgp.asn", "out of range", _set("networks[2].bgp.asn", 4200000001)),
    ("asn-as-trans", _set("cloud_router.asn", 23456), "cloud_router.asn", "AS_TRANS", _set("cloud_router.asn", 65000)),
    ("ebgp-same-asn-circuit", _set("circuits[0].bgp.peer_asn", 65000), "circuits[0].bgp.peer_asn", "eBGP",
     _set("circuits[0].bgp.peer_asn", 64513)),
    ("ebgp-same-asn-onprem", _set("networks[2].bgp.peer_asn", 65010), "networks[2].bgp.peer_asn", "eBGP",
     _set("networks[2].bgp.peer_asn", 65011)),
    ("azure-reserved-asn", _do(_set("cloud_router.asn", 65515), _set("circuits[0].bgp.customer_asn", 65515),
                               _set("circuits[1].bgp.customer_asn", 65515)),
     "circuits[1].bgp.customer_asn", "reserved by Azure",
     _do(_set("cloud_router.asn", 65514), _set("circuits[0].bgp.customer_asn", 65514), _set("circuits[1].bgp.customer_asn", 65514))),
    ("azure-peer-asn", _set("circuits[1].bgp.peer_asn", 12077), "circuits[1].bgp.peer_asn", "set peer_asn: 12076",
     _set("circuits[1].bgp.peer_asn", 12076)),
    ("er-one-subnet", _set("circuits[1].bgp.peering", ["10.0.0.12/30"]), "circuits[1].bgp.peering", "exactly two /30",
     _set("circuits[1].bgp.peering", ["10.0.0.12/30", "10.0.0.20/30"])),
    ("er-slash-31", _set("circuits[1].bgp.peering", ["10.0.0.12/31", "10.0.0.16/31"]), "circuits[1].bgp.peering",
     "/31 is refused", _set("circuits[1].bgp.peering", ["10.0.0.12/30", "10.0.0.16/30"])),
    ("dx-two-subnets", _set("circuits[0].bgp.peering", ["10.0.0.0/31", "10.0.0.2/31"]), "circuits[0].bgp.peering",
     "exactly one /30 or /31", _set("circuits[0].bgp.peering", ["10.0.0.4/30"])),
    ("dx-slash-29", _set("circuits[0].bgp.peering", ["10.0.0.0/29"]), "circuits[0].bgp.peering", "exactly one /30 or /31",
     _set("circuits[0].bgp.peering", ["10.0.0.0/31"])),
    ("gcp-not-link-local", _do(_GCP, _append("circuits", _gcp_circuit(bgp={
        "customer_asn": 65000, "peer_asn": 16550, "peering": ["10.9.0.0/29"], "md5_secret": "gcpMd5"}))),
     "circuits[2].bgp.peering[0]", "outside 169.254.0.0/16", _do(_GCP, _append("circuits", _gcp_circuit()))),
    ("bgp-ip-outside-subnet", _set("circuits[0].bgp.peer_ips", ["10.0.0.2"]), "circuits[0].bgp.peer_ips[0]",
     "not a usable address of its peering subnet 10.0.0.0/31", _set("circuits[0].bgp.peer_ips", ["10.0.0.1"])),
    ("bgp-ip-network-address", _set("circuits[1].bgp.customer_ips", ["10.0.0.12", "10.0.0.17"]), "circuits[1].bgp.customer_ips[0]",
     "not a usable address", _set("circuits[1].bgp.customer_ips", ["10.0.0.14", "10.0.0.18"])),
    ("bgp-ips-count", _set("circuits[1].bgp.peer_ips", ["10.0.0.14"]), "circuits[1].bgp.peer_ips", "one per subnet",
     _set("circuits[1].bgp.peer_ips", ["10.0.0.14", "10.0.0.18"])),
    ("bgp-ips-same", _do(_set("circuits[0].bgp.customer_ips", ["10.0.0.1"]), _set("circuits[0].bgp.peer_ips", ["10.0.0.1"])),
     "circuits[0].bgp.peer_ips[0]", "different addresses",
     _do(_set("circuits[0].bgp.customer_ips", ["10.0.0.1"]), _set("circuits[0].bgp.peer_ips", ["10.0.0.0"]))),
    ("onprem-peer-outside", _set("networks[2].bgp.peer_ip", "10.1.1.1"), "networks[2].bgp.peer_ip", "outside the network's cidrs",
     _set("networks[2].bgp.peer_ip", "192.168.1.1")),
    ("onprem-local-ip", _set("networks[2].bgp.local_ip", "192.168.255.1"), "networks[2].bgp.local_ip", "equals peer_ip",
     _set("networks[2].bgp.local_ip", "192.168.255.9")),
    ("onprem-default-local-ip", _set("networks[2].bgp.peer_ip", "192.168.255.254"), "networks[2].bgp.local_ip",
     "peer_ip + 1", _set("networks[2].bgp.peer_ip", "192.168.255.253")),
    ("vlan-out-of-range", _set("circuits[0].vlan", 4095), "circuits[0].vlan", "use 1 to 4094", _set("circuits[0].vlan", 4094)),
    ("vlan-zero", _set("circuits[0].vlan", 0), "circuits[0].vlan", "out of range", _set("circuits[0].vlan", 1)),
    ("vlan-reused", _do(_set("circuits[1].location", "EqFA5"), _set("circuits[1].vlan", 101)), "circuits[1].vlan",
     "already used at EqFA5", _do(_set("circuits[1].location", "EqFA5"), _set("circuits[1].vlan", 102))),
    ("vlan-reused-case", _do(_set("circuits[1].location", "eqfa5 "), _set("circuits[1].vlan", 101)), "circuits[1].vlan",
     "already used", _set("circuits[1].vlan", 101)),
    ("bandwidth-dx-hosted", _set("circuits[0].bandwidth_mbps", 150), "circuits[0].bandwidth_mbps", "does not sell 150 Mbps",
     _set("circuits[0].bandwidth_mbps", 25000)),
    ("bandwidth-dx-dedicated", _do(_set("circuits[0].connection", "dedicated"), _set("circuits[0].bandwidth_mbps", 50)),
     "circuits[0].bandwidth_mbps", "as a dedicated connection",
     _do(_set("circuits[0].connection", "dedicated"), _set("circuits[0].bandwidth_mbps", 400000))),
    ("bandwidth-er", _set("circuits[1].bandwidth_mbps", 300), "circuits[1].bandwidth_mbps", "use one of 50, 100, 200, 500",
     _set("circuits[1].bandwidth_mbps", 10000)),
    ("bandwidth-er-direct", _do(_set("circuits[1].connection", "dedicated"), _set("circuits[1].bandwidth_mbps", 50)),
     "circuits[1].bandwidth_mbps", "does not sell", _do(_set("circuits[1].connection", "dedicated"), _set("circuits[1].bandwidth_mbps", 40000))),
    ("bandwidth-gcp-partner", _do(_GCP, _append("circuits", _gcp_circuit(bandwidth_mbps=25000))), "circuits[2].bandwidth_mbps",
     "does not sell 25 Gbps", _do(_GCP, _append("circuits", _gcp_circuit(bandwidth_mbps=50000)))),
    ("circuit-other-cloud", _set("circuits[0].attaches", ["az-app"]), "circuits[0].attaches[0]", "reach only aws networks",
     _set("circuits[0].attaches", ["aws-app"])),
    ("circuit-onprem-network", _set("circuits[0].attaches", ["dc-fra"]), "circuits[0].attaches[0]", "'dc-fra' is in onprem",
     _set("circuits[0].attaches", [])),
    ("unknown-provider", _set("circuits[0].provider", "oracle-fastconnect"), "circuits[0].provider", "aws-direct-connect",
     _set("circuits[0].provider", "aws-direct-connect")),
    ("region-without-edge", _set("networks[0].region", "us-west-2"), "networks[0].region", "no aws edge in us-west-2",
     _do(_set("networks[0].region", "us-west-2"), _set("networks[0].edge", "aws-use1"))),
    ("region-name", _set("edges[0].region", "US East"), "edges[0].region", "not a aws region name",
     _append("edges", {"name": "aws-gov", "cloud": "aws", "region": "us-gov-west-1", "cidr": "10.250.39.0/24"})),
    ("two-edges-one-region", _append("edges", {"name": "aws-use1-b", "cloud": "aws", "region": "us-east-1", "cidr": "10.250.38.0/24"}),
     "edges[2].region", "one edge per cloud and region",
     _append("edges", {"name": "aws-usw2", "cloud": "aws", "region": "us-west-2", "cidr": "10.250.38.0/24"})),
    ("edge-too-small", _set("edges[0].cidr", "10.250.37.0/27"), "edges[0].cidr", "/26 or larger", _set("edges[0].cidr", "10.250.37.0/26")),
    ("connector-network-too-small", _set("networks[0].cidrs", ["10.30.40.0/28"]), "networks[0].cidrs[0]", "set connector_cidr",
     _set("networks[0].cidrs", ["10.30.40.0/27"])),
    ("connector-cidr-outside", _set("networks[0].connector_cidr", "10.30.41.0/27"), "networks[0].connector_cidr",
     "not inside the network's cidrs", _set("networks[0].connector_cidr", "10.30.40.0/27")),
    ("connector-cidr-small", _set("networks[0].connector_cidr", "10.30.40.0/28"), "networks[0].connector_cidr", "needs a /27",
     _set("networks[0].connector_cidr", "10.30.40.64/26")),
    ("onprem-needs-bgp", _set("networks[2].bgp", None), "networks[2].bgp", "is required", _set("networks[2].bgp.md5_secret", "dc-fra-md5")),
    ("onprem-needs-site", _set("networks[2].site", None), "networks[2].site", "is required", _set("networks[2].site", "fra2")),
    ("onprem-native", _set("networks[2].attach", "native"), "networks[2].attach", "only attach through a connector",
     _set("networks[2].attach", "connector")),
    ("cloud-needs-region", _set("networks[0].region", None), "networks[0].region", "is required", _set("networks[0].region", "us-east-1")),
    ("cloud-with-bgp", _set("networks[1].bgp", {"asn": 65020, "peer_ip": "172.18.40.1", "peer_asn": 65021, "md5_secret": "x"}),
     "networks[1].bgp", "remove bgp", _set("networks[1].site", None)),
    ("secret-is-a-value", _set("circuits[0].bgp.md5_secret", "s3cr3t value!"), "circuits[0].bgp.md5_secret",
     "not a Pulumi config key name", _set("circuits[0].bgp.md5_secret", "transit:fraDxMd5")),
    ("secret-missing", _set("circuits[0].bgp.md5_secret", None), "circuits[0].bgp.md5_secret", "string",
     _set("circuits[0].bgp.md5_secret", "fra_dx-md5")),
    ("port-out-of-range", _set("policy.rules[1].ports", [0]), "policy.rules[1].ports[0]", "use 1 to 65535",
     _set("policy.rules[1].ports", [65535])),
    ("port-range-out", _set("policy.rules[1].ports", ["5000-70000"]), "policy.rules[1].ports[0]", "out of range",
     _set("policy.rules[1].ports", ["5000-6000", 5432])),
    ("port-range-backwards", _set("policy.rules[1].ports", ["6000-5000"]), "policy.rules[1].ports[0]", "runs backwards",
     _set("policy.rules[1].ports", ["5000-6000"])),
    ("port-garbage", _set("policy.rules[1].ports", ["https"]), "policy.rules[1].ports[0]", "is not a port",
     _set("policy.rules[1].ports", ["443"])),
    ("ports-on-icmp", _set("policy.rules[1].proto", "icmp"), "policy.rules[1].ports", "only allowed with proto tcp or udp",
     _do(_set("policy.rules[1].proto", "icmp"), lambda d: d["policy"]["rules"][1].pop("ports"))),
    ("ports-on-any", _set("policy.rules[0].proto", "any"), "policy.rules[0].ports", "only allowed with proto tcp or udp",
     _set("policy.rules[0].proto", "udp")),
    ("ports-empty", _set("policy.rules[1].ports", []), "policy.rules[1].ports", "is empty", _set("policy.rules[1].ports", None)),
    ("proto-unknown", _set("policy.rules[1].proto", "sctp"), "policy.rules[1].proto", "'tcp', 'udp', 'icmp' or 'any'",
     _set("policy.rules[1].proto", "udp")),
    ("test-proto-any", _set("policy.tests[0].proto", "any"), "policy.tests[0].proto", "'tcp', 'udp' or 'icmp'",
     _set("policy.tests[0].proto", "udp")),
    ("test-port-icmp", _set("policy.tests[0].proto", "icmp"), "policy.tests[0].port", "icmp has no port",
     _do(_set("policy.tests[0].proto", "icmp"), _set("policy.tests[0].port", None))),
    ("test-needs-port", _set("policy.tests[0].port", None), "policy.tests[0].port", "needs a port", _set("policy.tests[0].port", 1)),
    ("test-port-range", _set("policy.tests[0].port", 65536), "policy.tests[0].port", "65535", _set("policy.tests[0].port", 65535)),
    ("policy-default", _set("policy.default", "permit"), "policy.default", "'deny'", _set("policy.default", "deny")),
    ("action-unknown", _set("policy.rules[0].action", "drop"), "policy.rules[0].action", "'permit' or 'deny'",
     _set("policy.rules[0].action", "permit")),
    ("unknown-key", _set("edges[0].size", "large"), "edges[0].size", "unknown key; valid keys here are: name, cloud",
     _set("edges[0].instances", 3)),
    ("unknown-nested-key", _set("circuits[0].bgp.password", "x"), "circuits[0].bgp.password", "valid keys here are: customer_asn",
     _set("circuits[0].bgp.peer_ips", ["10.0.0.1"])),
    ("unknown-top-key", _set("edge", []), "edge", "valid keys here are: name, edges", _set("underlay", {})),
    ("missing-required", lambda d: d["edges"][0].pop("cidr"), "edges[0].cidr", "is required", _set("edges[0].zones", 3)),
    ("no-edges", _set("edges", []), "edges", "at least one edge", _set("edges", [{"name": "aws-use1", "cloud": "aws",
     "region": "us-east-1", "cidr": "10.250.37.0/24"}, {"name": "az-weu", "cloud": "azure", "region": "westeurope", "cidr": "10.254.37.0/24"}])),
    ("zones-range", _set("edges[0].zones", 4), "edges[0].zones", "less than or equal to 3", _set("edges[0].zones", 1)),
    ("underlay-too-small", _set("underlay", {"internet_cidr": "198.18.0.0/31"}), "underlay.internet_cidr", "too small",
     _set("underlay", {"internet_cidr": "198.18.0.0/28"})),
]


@pytest.mark.parametrize(("bad", "path", "fragment"), [(c[1], c[2], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_case_is_reported_with_its_path(bad: Mutation, path: str, fragment: str) -> None:
    data = example()
    bad(data)
    problems = problems_of(data)
    matching = [p for p in problems if p.path == path and fragment in p.message]
    assert matching, f"expected {path}: ...{fragment}... in {[str(p) for p in problems]}"


@pytest.mark.parametrize("good", [c[4] for c in CASES], ids=[c[0] for c in CASES])
def test_good_case_is_valid(good: Mutation) -> None:
    data = example()
    good(data)
    assert [str(p) for p in problems_of(data)] == []
