"""One normaliser per provider: the CrossGuard rules read AWS, Azure and GCP firewall resources in one shape."""
from __future__ import annotations

from typing import Any

import pytest

from components.checks.cloud_rules import ALL, EVERY_PORT, CloudRule, cloud_rules
from components.checks.rules import RULES_BY_NAME
from components.checks.violation import Resource, short_type

ADMIN = "no-open-admin-ports"
ANY_TO_ANY = "no-any-to-any-permit"


def found(rule: str, token: str, props: dict[str, Any], name: str = "res") -> list[str]:
    """The violations one rule reports on one resource, as `str(violation)`."""
    definition = RULES_BY_NAME[rule]
    assert definition.resource is not None
    return [str(v) for v in definition.resource(Resource(token, name, props), definition.options)]


class TestNormalisers:
    def test_aws_security_group_gives_ingress_and_egress_with_ports_and_v4_v6_sources(self) -> None:
        props = {"ingress": [{"protocol": "6", "fromPort": 20, "toPort": 23, "cidrBlocks": ["10.0.0.0/8"], "ipv6CidrBlocks": ["::/0"]}],
                 "egress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]}
        ingress, egress = cloud_rules(Resource("aws:ec2/securityGroup:SecurityGroup", "sg", props))
        assert ingress == CloudRule("ingress", True, "tcp", ((20, 23),), ("10.0.0.0/8", "::/0"), True, "ingress[0]", "ingress[0]")
        assert (egress.direction, egress.protocol, egress.ports) == ("egress", ALL, EVERY_PORT)

    def test_aws_rule_resources_point_at_their_own_properties(self) -> None:
        [rule] = cloud_rules(Resource("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "r",
                                      {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "0.0.0.0/0"}))
        assert (rule.source_path, rule.protocol_path, rule.ports) == ("cidrIpv4", "ipProtocol", ((22, 22),))
        [legacy] = cloud_rules(Resource("aws:ec2/securityGroupRule:SecurityGroupRule", "r", {"type": "egress", "protocol": "udp"}))
        assert (legacy.direction, legacy.ports, legacy.source_path) == ("egress", ((0, 65535),), "cidrBlocks")

    def test_azure_reads_singular_and_plural_fields_and_star_ports(self) -> None:
        nsg = {"securityRules": [{"access": "Deny", "direction": "Outbound", "protocol": "Tcp", "sourceAddressPrefix": "10.0.0.0/8",
                                  "sourceAddressPrefixes": ["Internet"], "destinationAddressPrefixes": ["*"], "destinationPortRanges": ["22", "80-90"]},
                                 {"access": "Allow", "protocol": "*", "destinationAddressPrefix": "10.1.0.0/16", "destinationPortRange": "*"}]}
        deny, allow = cloud_rules(Resource("azure-native:network:NetworkSecurityGroup", "nsg", nsg))
        assert deny == CloudRule("egress", False, "tcp", ((22, 22), (80, 90)), ("Internet", "10.0.0.0/8"), True, "securityRules[0]", "securityRules[0]")
        assert (allow.direction, allow.protocol, allow.ports, allow.to_everything) == ("ingress", ALL, EVERY_PORT, False)

    def test_gcp_gives_one_rule_per_allow_and_deny_and_targets_narrow_it(self) -> None:
        fw = {"sourceRanges": ["0.0.0.0/0"], "targetTags": ["web"], "allows": [{"protocol": "tcp", "ports": ["22", "8000-8080"]}],
              "denies": [{"protocol": "all"}]}
        allow, deny = cloud_rules(Resource("gcp:compute/firewall:Firewall", "fw", fw))
        assert allow == CloudRule("ingress", True, "tcp", ((22, 22), (8000, 8080)), ("0.0.0.0/0",), False, "allows[0]", "allows[0]")
        assert (deny.allow, deny.protocol, deny.ports, deny.source_path) == (False, ALL, EVERY_PORT, "denies[0]")

    def test_resources_that_are_not_firewalls_have_no_rules(self) -> None:
        assert cloud_rules(Resource("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.0.0.0/16"})) == []


class TestNoOpenAdminPorts:
    @pytest.mark.parametrize(("token", "props", "message"), [
        ("aws:ec2/securityGroup:SecurityGroup", {"ingress": [{"protocol": "tcp", "fromPort": 20, "toPort": 23, "ipv6CidrBlocks": ["::/0"]}]},
         "res.ingress[0]: aws:ec2/securityGroup opens administrative port(s) 22, 23 to the internet"),
        ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", {"ipProtocol": "-1", "cidrIpv4": "0.0.0.0/0"},
         "res.cidrIpv4: aws:vpc/securityGroupIngressRule opens administrative port(s) 22, 23, 3389, 5985, 5986 to the internet"),
        ("azure-native:network:SecurityRule", {"access": "Allow", "protocol": "Tcp", "sourceAddressPrefixes": ["Internet"],
                                               "destinationPortRanges": ["3389", "5985-5986"]},
         "res.(rule): azure-native:network:SecurityRule opens administrative port(s) 3389, 5985, 5986 to the internet"),
        ("gcp:compute/firewall:Firewall", {"sourceRanges": ["0.0.0.0/0"], "allows": [{"protocol": "tcp", "ports": ["22"]}]},
         "res.allows[0]: gcp:compute/firewall opens administrative port(s) 22 to the internet"),
    ])
    def test_inbound_allow_from_anywhere_to_an_admin_port_is_a_violation(self, token: str, props: dict[str, Any], message: str) -> None:
        [violation] = found(ADMIN, token, props)
        assert violation.startswith(message)
        assert violation.endswith("administrative ports must only be reachable from named private ranges [no-open-admin-ports]")

    @pytest.mark.parametrize(("token", "props"), [
        ("aws:ec2/securityGroup:SecurityGroup", {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.0.0/8"]}],
                                                 "egress": [{"protocol": "-1", "cidrBlocks": ["0.0.0.0/0"]}]}),
        ("azure-native:network:NetworkSecurityGroup", {"securityRules": [
            {"access": "Deny", "protocol": "*", "sourceAddressPrefix": "*", "destinationPortRange": "*"},
            {"access": "Allow", "direction": "Outbound", "protocol": "Tcp", "sourceAddressPrefix": "*", "destinationPortRange": "22"},
            {"access": "Allow", "protocol": "Icmp", "sourceAddressPrefix": "*", "destinationPortRange": "*"}]}),
        ("gcp:compute/firewall:Firewall", {"sourceRanges": ["0.0.0.0/0"], "denies": [{"protocol": "tcp", "ports": ["22"]}],
                                           "allows": [{"protocol": "tcp", "ports": ["443"]}]}),
    ])
    def test_named_sources_denies_outbound_and_other_ports_pass(self, token: str, props: dict[str, Any]) -> None:
        assert found(ADMIN, token, props) == []


class TestNoAnyToAnyPermit:
    @pytest.mark.parametrize(("token", "props", "path"), [
        ("aws:ec2/securityGroup:SecurityGroup", {"ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "ipv6CidrBlocks": ["::/0"]}]}, "ingress[0]"),
        ("aws:ec2/securityGroupRule:SecurityGroupRule", {"type": "ingress", "protocol": "all", "cidrBlocks": ["0.0.0.0/0"]}, "protocol"),
        ("azure-native:network:NetworkSecurityGroup", {"securityRules": [{"access": "Allow", "protocol": "*", "sourceAddressPrefixes": ["*"],
                                                                         "destinationAddressPrefix": "*", "destinationPortRange": "*"}]},
         "securityRules[0]"),
        ("azure-native:network:SecurityRule", {"access": "Allow", "protocol": "*", "sourceAddressPrefix": "Internet",
                                               "destinationAddressPrefix": "*", "destinationPortRange": "0-65535"}, "protocol"),
        ("gcp:compute/firewall:Firewall", {"sourceRanges": ["0.0.0.0/0"], "allows": [{"protocol": "all"}]}, "allows[0]"),
    ])
    def test_every_protocol_from_anywhere_is_a_violation(self, token: str, props: dict[str, Any], path: str) -> None:
        [violation] = found(ANY_TO_ANY, token, props)
        assert violation == (f"res.{path}: {short_type(token)} allows every protocol from anywhere; "
                             "allow named sources and protocols only [no-any-to-any-permit]")

    @pytest.mark.parametrize(("token", "props"), [
        ("aws:ec2/securityGroup:SecurityGroup", {"ingress": [{"protocol": "tcp", "fromPort": 0, "toPort": 65535, "cidrBlocks": ["0.0.0.0/0"]}],
                                                 "egress": [{"protocol": "-1", "cidrBlocks": ["0.0.0.0/0"]}]}),
        ("azure-native:network:NetworkSecurityGroup", {"securityRules": [{"access": "Allow", "protocol": "*", "sourceAddressPrefix": "*",
                                                                         "destinationAddressPrefix": "10.1.0.0/16", "destinationPortRange": "*"}]}),
        ("gcp:compute/firewall:Firewall", {"sourceRanges": ["0.0.0.0/0"], "targetTags": ["bastion"], "allows": [{"protocol": "all"}]}),
    ])
    def test_one_protocol_a_named_destination_or_targeted_instances_pass(self, token: str, props: dict[str, Any]) -> None:
        assert found(ANY_TO_ANY, token, props) == []
