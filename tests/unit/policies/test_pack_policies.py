"""Each rule through the pack's validation interface: a violating and a compliant case.

The pack is exercised with fake ResourceValidationArgs/StackValidationArgs, on the
three things it reads: raw cloud resources, a `transit:*` component carrying the
fabric spec, and a resource carrying an agent's config.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pack_helpers import resource_args, stack_args, violations

from components.checks.crossguard import policies
from components.checks.rules import RULES
from components.loader import load_spec
from components.segmentation.agent_filters import connector_filter
from dataplane.config import AgentConfig, PeerConfig, TlsPaths
from dataplane.filter_model import FilterPolicy, FilterRule

EXAMPLE = Path(__file__).resolve().parents[3] / "stacks" / "fabrics" / "architecture_example.yaml"
TAGS = {"transit:fabric": "acme", "transit:environment": "dev"}


def carried_spec(mutate: Any = None) -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    if mutate:
        mutate(data)
    return {"spec": data}


def agent_files(policy: FilterPolicy) -> dict[str, Any]:
    config = AgentConfig(
        name="connector-aws-app", role="connector", identity="spiffe://acme/connector-aws-app",
        local_cidrs=["10.30.40.0/24"],
        peers=[PeerConfig(name="edge-aws-use1", identity="spiffe://acme/edge-aws-use1", private_addr="100.64.0.1",
                          cidrs=["172.18.40.0/24", "192.168.0.0/16"])],
        filter=policy, tls=TlsPaths(ca="/run/ca.pem", cert="/run/node.pem", key="/run/node.key"),
    )
    return {"files": {"agent.json": config.model_dump_json()}}


def test_every_rule_is_a_policy_with_a_requires_or_prohibits_description() -> None:
    names = [p.name for p in policies()]
    assert [r.name for r in RULES] == [n for n in names if not n.endswith("-in-stack")]
    assert all(p.description.startswith(("Requires", "Prohibits")) for p in policies())


class TestNoOpenAdminPorts:
    def test_security_group_open_to_world_on_ssh(self) -> None:
        props = {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}], "tags": TAGS}
        [message] = violations("no-open-admin-ports", resource_args("aws:ec2/securityGroup:SecurityGroup", props, "edge-sg"))
        assert message.startswith("edge-sg.ingress[0]:") and "22" in message

    def test_nsg_rule_and_gcp_firewall_open_to_internet(self) -> None:
        nsg = {"securityRules": [{"access": "Allow", "direction": "Inbound", "protocol": "Tcp", "sourceAddressPrefix": "Internet",
                                  "destinationPortRange": "3389"}]}
        assert violations("no-open-admin-ports", resource_args("azure-native:network:NetworkSecurityGroup", nsg))
        fw = {"direction": "INGRESS", "sourceRanges": ["0.0.0.0/0"], "allows": [{"protocol": "tcp", "ports": ["20-30"]}]}
        [message] = violations("no-open-admin-ports", resource_args("gcp:compute/firewall:Firewall", fw, "fw"))
        assert "22, 23" in message

    def test_private_sources_and_other_ports_pass(self) -> None:
        props = {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.0.0/8"]},
                             {"protocol": "tcp", "fromPort": 8443, "toPort": 8443, "cidrBlocks": ["0.0.0.0/0"]}]}
        assert violations("no-open-admin-ports", resource_args("aws:ec2/securityGroup:SecurityGroup", props)) == []

    def test_carried_spec_and_agent_filter(self) -> None:
        def open_ssh(data: dict[str, Any]) -> None:
            data["policy"]["rules"].insert(0, {"name": "open-ssh", "from": "any", "to": "db", "proto": "tcp", "ports": [22], "action": "permit"})

        [message] = violations("no-open-admin-ports", resource_args("transit:local:LocalFabric", carried_spec(open_ssh), "fab"))
        assert message.startswith("fab.spec.policy.rules[0]:")
        assert violations("no-open-admin-ports", resource_args("transit:local:LocalFabric", carried_spec(), "fab")) == []
        bad = FilterPolicy(rules=[FilterRule(name="ssh", action="permit", proto="tcp", ports=[22])])
        [message] = violations("no-open-admin-ports", resource_args("pulumi-python:dynamic/local:Daemon", agent_files(bad), "agent"))
        assert message.startswith("agent.files[agent.json].filter.rules[0]:")
        good = connector_filter(load_spec(EXAMPLE), "aws-app")
        assert violations("no-open-admin-ports", resource_args("pulumi-python:dynamic/local:Daemon", agent_files(good))) == []


def test_unreadable_agent_config_is_reported_not_crashed_on() -> None:
    [message] = violations("no-open-admin-ports", resource_args("x:y:Daemon", {"files": {"agent.json": "{not json"}}, "agent"))
    assert message.startswith("agent.files[agent.json]: not a valid AgentConfig")


class TestNoAnyToAnyPermit:
    def test_all_traffic_from_world(self) -> None:
        props = {"ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]}
        assert violations("no-any-to-any-permit", resource_args("aws:ec2/securityGroup:SecurityGroup", props))
        fw = {"direction": "INGRESS", "sourceRanges": ["0.0.0.0/0"], "allows": [{"protocol": "all"}]}
        assert violations("no-any-to-any-permit", resource_args("gcp:compute/firewall:Firewall", fw))

    def test_scoped_rules_pass(self) -> None:
        fw = {"direction": "INGRESS", "sourceRanges": ["10.30.40.0/24"], "allows": [{"protocol": "all"}]}
        assert violations("no-any-to-any-permit", resource_args("gcp:compute/firewall:Firewall", fw)) == []

    def test_agent_filter_permitting_everything(self) -> None:
        bad = FilterPolicy(rules=[FilterRule(name="all", action="permit")])
        assert violations("no-any-to-any-permit", resource_args("x:y:Daemon", agent_files(bad)))
        good = connector_filter(load_spec(EXAMPLE), "aws-app")
        assert violations("no-any-to-any-permit", resource_args("x:y:Daemon", agent_files(good))) == []


class TestNoOverlappingCidrs:
    def test_two_vpcs_sharing_space(self) -> None:
        args = stack_args([("aws:ec2/vpc:Vpc", "a", {"cidrBlock": "10.0.0.0/16"}), ("aws:ec2/vpc:Vpc", "b", {"cidrBlock": "10.0.128.0/20"}),
                           ("azure-native:network:VirtualNetwork", "c", {"addressSpace": {"addressPrefixes": ["172.16.0.0/16"]}})])
        [message] = violations("no-overlapping-cidrs-in-stack", args)
        assert message.startswith("b.cidrBlock:") and "10.0.0.0/16" in message

    def test_disjoint_networks_pass(self) -> None:
        args = stack_args([("aws:ec2/vpc:Vpc", "a", {"cidrBlock": "10.0.0.0/16"}), ("gcp:compute/subnetwork:Subnetwork", "b", {"ipCidrRange": "10.1.0.0/24"})])
        assert violations("no-overlapping-cidrs-in-stack", args) == []


class TestEdgesMultiAz:
    def test_one_subnet_autoscaling_group(self) -> None:
        assert violations("edges-multi-az", resource_args("aws:autoscaling/group:Group", {"vpcZoneIdentifiers": ["subnet-1"]}))

    def test_two_zones_pass_and_carried_single_zone_edge_fails(self) -> None:
        assert violations("edges-multi-az", resource_args("azure-native:compute:VirtualMachineScaleSet", {"zones": ["1", "2"]})) == []

        def one_zone(data: dict[str, Any]) -> None:
            data["edges"][0]["zones"] = 1

        [message] = violations("edges-multi-az", resource_args("transit:aws:Fabric", carried_spec(one_zone), "fab"))
        assert message.startswith("fab.spec.edges[0].zones:")


class TestCircuitBgpAuth:
    def test_vif_without_key(self) -> None:
        [message] = violations("circuit-bgp-auth", resource_args("aws:directconnect/privateVirtualInterface:PrivateVirtualInterface", {"vlan": 101}, "vif"))
        assert message.startswith("vif.bgpAuthKey:")

    def test_vif_and_router_peer_with_key_pass(self) -> None:
        assert violations("circuit-bgp-auth", resource_args("aws:directconnect/privateVirtualInterface:PrivateVirtualInterface", {"bgpAuthKey": "[secret]"})) == []
        assert violations("circuit-bgp-auth", resource_args("gcp:compute/routerPeer:RouterPeer", {"md5AuthenticationKey": {"key": "k"}})) == []


class TestCircuitRedundancy:
    def test_one_direct_connect_connection_in_stack(self) -> None:
        [message] = violations("circuit-redundancy-in-stack", stack_args([("aws:directconnect/connection:Connection", "dx", {})]))
        assert "at least 2" in message
        # a hosted connection is accepted, not created: its confirmation counts
        accepted = stack_args([("aws:directconnect/connectionConfirmation:ConnectionConfirmation", "dx-accept", {})])
        assert violations("circuit-redundancy-in-stack", accepted)

    def test_two_connections_and_both_expressroute_links_pass(self) -> None:
        peering = {"primaryPeerAddressPrefix": "10.0.0.12/30", "secondaryPeerAddressPrefix": "10.0.0.16/30"}
        args = stack_args([("aws:directconnect/connection:Connection", "a", {}), ("aws:directconnect/connection:Connection", "b", {}),
                           ("azure-native:network:ExpressRouteCircuitPeering", "p", peering)])
        assert violations("circuit-redundancy-in-stack", args) == []
        single = stack_args([("azure-native:network:ExpressRouteCircuitPeering", "p", {"primaryPeerAddressPrefix": "10.0.0.12/30"})])
        assert violations("circuit-redundancy-in-stack", single)

    def test_carried_spec_with_one_direct_connect(self) -> None:
        [message] = violations("circuit-redundancy", resource_args("transit:local:LocalFabric", carried_spec(), "fab"))
        assert message.startswith("fab.spec.circuits[0].attaches:")


class TestEncryptedTransit:
    def test_component_with_encryption_off_and_native_circuit_network(self) -> None:
        assert violations("encrypted-transit", resource_args("transit:aws:Connector", {"encryption": "none"}))
        [message] = violations("encrypted-transit", resource_args("transit:local:LocalFabric", carried_spec(), "fab"))
        assert message.startswith("fab.spec.circuits[1].attaches[0]:")

    def test_waived_circuit_and_tls_listener_pass(self) -> None:
        config = {"plaintext_circuits": ["fra-er"]}
        assert violations("encrypted-transit", resource_args("transit:local:LocalFabric", carried_spec(), "fab", config)) == []
        assert violations("encrypted-transit", resource_args("aws:lb/listener:Listener", {"protocol": "TLS", "port": 8443})) == []
        assert violations("encrypted-transit", resource_args("aws:lb/listener:Listener", {"protocol": "UDP", "port": 8443}))


class TestRequiredTags:
    def test_untagged_vpc(self) -> None:
        [message] = violations("required-tags", resource_args("aws:ec2/vpc:Vpc", {"cidrBlock": "10.0.0.0/16"}, "vpc"))
        assert message.startswith("vpc.tags:") and "transit:fabric, transit:environment" in message

    def test_tagged_vpc_and_untaggable_rule_pass(self) -> None:
        assert violations("required-tags", resource_args("aws:ec2/vpc:Vpc", {"tags": TAGS})) == []
        assert violations("required-tags", resource_args("aws:ec2/securityGroupRule:SecurityGroupRule", {})) == []
        assert violations("required-tags", resource_args("gcp:compute/instanceTemplate:InstanceTemplate", {"labels": {"transit:fabric": "a"}}))


class TestCircuitRoutePropagation:
    def test_association_without_propagation(self) -> None:
        assert violations("circuit-route-propagation-in-stack", stack_args([("aws:directconnect/gatewayAssociation:GatewayAssociation", "a", {})]))

    def test_association_with_propagation_passes(self) -> None:
        args = stack_args([("aws:directconnect/gatewayAssociation:GatewayAssociation", "a", {}), ("aws:ec2/vpnGatewayRoutePropagation:VpnGatewayRoutePropagation", "p", {})])
        assert violations("circuit-route-propagation-in-stack", args) == []

    def test_carried_circuit_without_attachments(self) -> None:
        def land_nowhere(data: dict[str, Any]) -> None:
            data["circuits"][0]["attaches"] = []

        assert violations("circuit-route-propagation", resource_args("transit:local:LocalFabric", carried_spec(land_nowhere)))
        assert violations("circuit-route-propagation", resource_args("transit:local:LocalFabric", carried_spec())) == []


class TestPolicyTestsHold:
    def test_carried_spec_whose_assertion_fails(self) -> None:
        def wrong_expectation(data: dict[str, Any]) -> None:
            data["policy"]["tests"][0]["port"] = 5433

        [message] = violations("policy-tests-hold", resource_args("transit:index:Fabric", carried_spec(wrong_expectation), "fab"))
        assert message.startswith("fab.spec.policy.tests[0]: test-fails: expects permit, the policy gives deny")
        assert "5433" in message

    def test_carried_spec_whose_assertions_hold_everywhere(self) -> None:
        assert violations("policy-tests-hold", resource_args("transit:index:Fabric", carried_spec(), "fab", {"samples": 50})) == []


class TestAllowedInstanceSizes:
    def test_oversized_launch_template(self) -> None:
        [message] = violations("allowed-instance-sizes", resource_args("aws:ec2/launchTemplate:LaunchTemplate", {"instanceType": "x2iedn.32xlarge"}, "lt"))
        assert message.startswith("lt.instanceType:")

    def test_allowed_and_configured_sizes_pass(self) -> None:
        assert violations("allowed-instance-sizes", resource_args("aws:ec2/launchTemplate:LaunchTemplate", {"instanceType": "c6in.xlarge"})) == []
        sizes = copy.deepcopy(RULES[-1].options["sizes"])
        sizes["gcp"] = ["e2-small"]
        args = resource_args("gcp:compute/instanceTemplate:InstanceTemplate", {"machineType": "e2-small"}, config={"sizes": sizes})
        assert violations("allowed-instance-sizes", args) == []


@pytest.mark.parametrize("number", [22.0, 5432.0])
def test_numbers_arriving_as_floats_still_validate(number: float) -> None:
    def floated(data: dict[str, Any]) -> None:
        data["policy"]["rules"][0]["ports"] = [number]

    props = json.loads(json.dumps(carried_spec(floated)))
    assert violations("no-overlapping-cidrs", resource_args("transit:local:LocalFabric", props)) == []
