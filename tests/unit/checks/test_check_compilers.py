"""The pure compilers `transit check` proves: data plane filters, Azure NSGs/ASGs, GCP firewall rules."""
from __future__ import annotations

from ipaddress import IPv4Network

from checks_fabric import spec, with_rules

from components.segmentation.agent_filters import connector_filter, edge_filter, fabric_filter
from components.segmentation.azure_nsgs import LAST_PRIORITY, compile_azure
from components.segmentation.azure_nsgs import evaluate as azure_evaluate
from components.segmentation.gcp_firewall import DEFAULT_PRIORITY, compile_gcp, rule_name
from components.segmentation.gcp_firewall import evaluate as gcp_evaluate
from components.segmentation.resolve import endpoint_cidrs


class TestDataplanePolicy:
    def test_any_means_the_onboarded_networks_never_the_internet(self) -> None:
        fabric = spec()
        assert endpoint_cidrs(fabric, "any") == [IPv4Network("10.30.40.0/24"), IPv4Network("10.40.0.0/24"), IPv4Network("172.18.40.0/24")]
        assert fabric_filter(fabric).evaluate("8.8.8.8", "172.18.40.10", "tcp", 22) == ("deny", None)

    def test_points_keep_only_rules_that_touch_their_scope_in_order(self) -> None:
        fabric = spec()
        assert [r.name for r in connector_filter(fabric, "aws-app").rules] == ["no-ssh", "app-to-db", "web-in", "gcp-out"]
        assert [r.name for r in edge_filter(fabric, "az-weu").rules] == ["no-ssh", "app-to-db"]
        assert [r.name for r in edge_filter(fabric, "gcp-euw3").rules] == ["no-ssh", "web-in", "gcp-out"]

    def test_scoped_policy_decides_like_the_whole_policy_in_scope(self) -> None:
        fabric = spec()
        whole, edge = fabric_filter(fabric), edge_filter(fabric, "az-weu")
        for flow in [("10.30.40.1", "172.18.40.10", "tcp", 5432), ("10.30.40.1", "172.18.40.10", "tcp", 22),
                     ("10.40.0.20", "172.18.40.10", "tcp", 5432)]:
            assert edge.evaluate(*flow) == whole.evaluate(*flow)


class TestAzureNsgs:
    def test_rules_in_policy_order_groups_as_asgs_closed_by_explicit_denies(self) -> None:
        seg = compile_azure(spec())
        [nsg] = seg.nsgs
        inbound = [r for r in nsg.rules if r.direction == "Inbound"]
        assert [r.name for r in inbound] == ["no-ssh-inbound", "app-to-db-inbound", "default-deny-inbound"]
        assert [r.priority for r in inbound] == [100, 101, LAST_PRIORITY]
        assert inbound[1].destination_application_security_groups == ["asg-az-app-db"]
        assert inbound[1].source_address_prefixes == ["10.30.40.0/24"]
        assert [a.members for a in seg.asgs] == [[IPv4Network("172.18.40.10/32")]]
        outbound = [r for r in nsg.rules if r.direction == "Outbound"]
        assert outbound[-1].access == "Deny" and outbound[-1].destination_address_prefixes == ["VirtualNetwork"]

    def test_rule_count_grows_with_rules_not_addresses(self) -> None:
        many = [f"172.18.40.{i}/32" for i in range(1, 200)]
        data_rules = [{"name": "app-to-db", "from": "aws-app", "to": "db", "proto": "tcp", "ports": [5432], "action": "permit"}]
        fabric = with_rules(*data_rules)
        bigger = fabric.model_copy(update={"groups": {**fabric.groups, "db": many}})
        assert compile_azure(bigger).rule_count == compile_azure(fabric).rule_count

    def test_evaluator_applies_outbound_at_source_and_inbound_at_destination(self) -> None:
        seg = compile_azure(spec())
        assert azure_evaluate(seg, "10.30.40.5", "172.18.40.10", 6, 5432) == ("permit", "nsg-az-app/inbound/app-to-db-inbound")
        assert azure_evaluate(seg, "10.30.40.5", "172.18.40.11", 6, 5432)[0] == "deny"
        assert azure_evaluate(seg, "172.18.40.10", "10.30.40.5", 17, 53) == ("deny", "nsg-az-app/outbound/default-deny-outbound")
        assert azure_evaluate(seg, "10.30.40.5", "10.40.0.5", 6, 80) is None
        # the internet keeps Azure's default: the policy only speaks about the fabric
        assert azure_evaluate(seg, "172.18.40.10", "8.8.8.8", 6, 443)[0] == "permit"


class TestGcpFirewall:
    def test_ingress_and_egress_in_order_with_tags_and_a_closing_deny(self) -> None:
        seg = compile_gcp(spec())
        ingress = [r for r in seg.rules if r.direction == "INGRESS"]
        assert [r.name for r in ingress] == ["gcp-app-no-ssh-ingress", "gcp-app-web-in-ingress", "gcp-app-default-deny-ingress"]
        assert ingress[1].target_tags == ["transit-web"] and ingress[1].ports == ["8000-8080"]
        assert ingress[-1].priority == DEFAULT_PRIORITY and ingress[-1].action == "deny"
        egress = [r for r in seg.rules if r.direction == "EGRESS"]
        assert [r.name for r in egress][-1] == "gcp-app-default-deny-egress"

    def test_evaluator_tags_priorities_and_implied_rules(self) -> None:
        seg = compile_gcp(spec())
        assert gcp_evaluate(seg, "10.30.40.5", "10.40.0.20", 6, 8080)[0] == "permit"
        assert gcp_evaluate(seg, "10.30.40.5", "10.40.0.5", 6, 8080)[0] == "deny"  # not tagged web
        assert gcp_evaluate(seg, "10.30.40.5", "10.40.0.20", 6, 22) == ("deny", "gcp-app/ingress/gcp-app-no-ssh-ingress")
        assert gcp_evaluate(seg, "10.40.0.5", "10.30.40.5", 17, 53)[0] == "permit"
        assert gcp_evaluate(seg, "10.40.0.5", "8.8.8.8", 6, 443) == ("permit", "gcp-app/egress/implied-allow-egress")

    def test_long_names_stay_valid(self) -> None:
        name = rule_name("a" * 40, "b" * 40)
        assert len(name) <= 63 and name == rule_name("a" * 40, "b" * 40) and not name.endswith("-")
