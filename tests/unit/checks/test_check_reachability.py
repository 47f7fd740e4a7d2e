"""policy.tests and parity against every enforcement point, with each kind of failure provoked."""
from __future__ import annotations

import copy
import json

from checks_fabric import spec, with_rules

from components.checks.points import build_points, nft_point, target_point
from components.checks.reachability import parity, prove_tests, sample_flows
from components.segmentation.agent_filters import connector_filter
from components.segmentation.azure_nsgs import compile_azure
from components.segmentation.nftables import load_table
from components.segmentation.protocol import Flow
from components.segmentation.resolve import endpoint_cidrs
from dataplane.filter_table import ruleset


def _replace(points, new):  # type: ignore[no-untyped-def]
    return [new if p.name == new.name else p for p in points]


def test_compliant_fabric_proves_every_test_and_agrees_everywhere() -> None:
    fabric = spec()
    points = build_points(fabric)
    assert {"intent", "aws:security-groups", "azure:nsgs", "gcp:firewall", "dataplane:connector-aws-app"} <= {p.name for p in points}
    assert prove_tests(fabric, points) == []
    finding, checked = parity(fabric, points, samples=500, seed=1)
    assert finding is None and checked > 500


def test_assertion_the_policy_does_not_give_is_test_fails() -> None:
    fabric = with_rules(
        {"name": "app-to-db", "from": "aws-app", "to": "db", "proto": "tcp", "ports": [5432], "action": "permit"},
        tests=[{"from": "aws-app", "to": "db", "proto": "tcp", "port": 5433, "expect": "permit"}],
    )
    [finding] = prove_tests(fabric, build_points(fabric))
    assert finding.kind == "test-fails" and finding.path == "policy.tests[0]"
    assert finding.flow.port == 5433 and finding.decisions["intent"] == ("deny", "default")


def test_point_that_answers_otherwise_is_point_disagrees() -> None:
    fabric = spec()
    seg = compile_azure(fabric)
    nsg = seg.nsgs[0]
    # Drop the app-to-db grant from the Azure NSG: the intent still permits, Azure now denies.
    broken = seg.model_copy(update={"nsgs": [nsg.model_copy(update={"rules": [r for r in nsg.rules if not r.name.startswith("app-to-db")]})]})
    points = _replace(build_points(fabric), target_point("azure", broken))
    findings = prove_tests(fabric, points)
    assert [f.kind for f in findings] == ["point-disagrees"]
    assert findings[0].path == "policy.tests[0]" and findings[0].decisions["azure:nsgs"][0] == "deny"


def test_missing_explicit_deny_lets_azure_default_permit_a_parity_hole() -> None:
    fabric = spec()
    seg = compile_azure(fabric)
    nsg = seg.nsgs[0]
    # Without our priority-4096 deny, Azure's AllowVnetInBound admits the whole fabric.
    broken = seg.model_copy(update={"nsgs": [nsg.model_copy(update={"rules": [r for r in nsg.rules if not r.name.startswith("default-deny")]})]})
    finding, _ = parity(fabric, _replace(build_points(fabric), target_point("azure", broken)), samples=200)
    assert finding is not None and finding.kind == "parity-hole" and finding.path.startswith("policy.")
    assert finding.decisions["intent"][0] == "deny" and finding.decisions["azure:nsgs"] == ("permit", finding.decisions["azure:nsgs"][1])
    assert "AllowVnet" in finding.decisions["azure:nsgs"][1]


def test_filter_table_missing_an_element_is_a_parity_block() -> None:
    fabric = spec()
    policy = connector_filter(fabric, "aws-app")
    document = ruleset(policy, table="transit_filter", hook="forward")
    broken = copy.deepcopy(document)
    for command in broken["nftables"]:
        element = command.get("add", {}).get("element")
        if element and element["name"] == "ports":
            # Drop every element that jumps to app-to-db's chain.
            index = next(i for i, r in enumerate(policy.rules) if r.name == "app-to-db")
            element["elem"] = [e for e in element["elem"] if e[1]["goto"]["target"] != f"rule_{index}"]
    point = nft_point("dataplane:connector-aws-app", load_table(broken), endpoint_cidrs(fabric, "aws-app"))
    finding, _ = parity(fabric, _replace(build_points(fabric), point), samples=0)
    assert finding is not None and finding.kind == "parity-block" and finding.path == "policy.rules[1]"
    assert finding.flow.port == 5432 and finding.decisions["dataplane:connector-aws-app"][0] == "deny"


def test_aws_closing_other_protocols_of_a_carved_any_rule_is_reported() -> None:
    # A deny carving an `any` permit: security groups cannot say "every protocol but tcp/22",
    # so AWS leaves GRE closed while the intent permits it. The parity check must say so.
    fabric = with_rules(
        {"name": "no-ssh", "from": "any", "to": "any", "proto": "tcp", "ports": [22], "action": "deny"},
        {"name": "gcp-out", "from": "gcp-app", "to": "aws-app", "proto": "any", "action": "permit"},
    )
    finding, _ = parity(fabric, build_points(fabric), samples=0)
    assert finding is not None and finding.kind == "parity-block"
    assert finding.flow.proto == "47" and finding.decisions["aws:security-groups"][0] == "deny"
    assert finding.path == "policy.rules[1]" and "ip-proto 47" in str(finding)


def test_nft_evaluator_reads_the_document_not_the_policy() -> None:
    fabric = spec()
    document = ruleset(connector_filter(fabric, "aws-app"), table="t", hook="input")
    table = load_table(json.loads(json.dumps(document)))
    assert table.decide("10.30.40.5", "172.18.40.10", "tcp", 5432) == ("permit", "app-to-db")
    assert table.decide("10.30.40.5", "172.18.40.10", "tcp", 22) == ("deny", "no-ssh")
    assert table.decide("10.30.40.5", "172.18.40.11", "tcp", 5432) == ("deny", "default")


def test_sampling_is_deterministic_and_covers_port_boundaries() -> None:
    fabric = spec()
    first = list(sample_flows(fabric, 50, seed=7))
    assert first == list(sample_flows(fabric, 50, seed=7))
    ports = {f.port for f in first if f.dst == "172.18.40.10"}
    assert {5431, 5432, 5433} <= ports
    assert Flow("10.30.40.0", "172.18.40.10", "tcp", 5432) in first


def test_security_group_rules_wider_or_narrower_than_the_intent() -> None:
    from components.targets import plan_fabric

    fabric = spec()
    section = plan_fabric(fabric).sections.get("aws")
    assert section is not None
    # aws-app's egress grants (5432 to db, 8000-8080 to web) opened to every port: a hole.
    widened = section.model_copy(update={"rules": [r.model_copy(update={"ports": ""}) if r.direction == "egress" and r.protocol == "tcp" else r
                                                   for r in section.rules]})
    finding, _ = parity(fabric, _replace(build_points(fabric), target_point("aws", widened)), samples=0)
    assert finding is not None and finding.kind == "parity-hole"
    assert finding.flow.src.startswith("10.30.40.") and finding.decisions["aws:security-groups"][0] == "permit"
    # the ingress grants (gcp-out into aws-app) dropped: a block.
    narrowed = section.model_copy(update={"rules": [r for r in section.rules if r.direction != "ingress"]})
    finding, _ = parity(fabric, _replace(build_points(fabric), target_point("aws", narrowed)), samples=0)
    assert finding is not None and finding.kind == "parity-block" and finding.decisions["aws:security-groups"][0] == "deny"


def test_boundary_flows_stay_within_their_budget_and_keep_the_edges() -> None:
    fabric = spec()
    everything = [f for f in sample_flows(fabric, 0, seed=3, boundary=100_000)]
    capped = [f for f in sample_flows(fabric, 0, seed=3, boundary=40)]
    assert len(capped) <= 40 < len(everything)
    assert set(capped) <= set(everything)
