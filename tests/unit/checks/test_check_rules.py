"""Each rule through its pure function: a violating and a compliant case."""
from __future__ import annotations

import copy
from ipaddress import IPv4Network
from typing import Any

from checks_fabric import raw, spec, with_rules

from components.checks.config import load_config, parse_config
from components.checks.rules import RULES_BY_NAME, Context
from components.checks.run import run_check
from components.checks.violation import Violation
from components.plan import build_plan
from components.spec import FabricSpec, validate_spec


def run(name: str, fabric: FabricSpec, stack_config: dict[str, Any] | None = None, **options: Any) -> list[Violation]:
    rule = RULES_BY_NAME[name]
    assert rule.spec is not None
    return rule.spec(Context(fabric, build_plan(fabric), stack_config), {**rule.options, **options})


DX = {"provider": "aws-direct-connect", "location": "EqFA5", "bandwidth_mbps": 50, "attaches": ["aws-app"]}


def dx(name: str, vlan: int, peering: str) -> dict[str, Any]:
    return {**DX, "name": name, "vlan": vlan,
            "bgp": {"customer_asn": 65000, "peer_asn": 64512, "peering": [peering], "md5_secret": f"{name.replace('-', '')}Md5"}}


class TestNoOpenAdminPorts:
    def test_any_to_ssh_is_a_violation(self) -> None:
        fabric = with_rules({"name": "open-ssh", "from": "any", "to": "db", "proto": "tcp", "ports": [22], "action": "permit"})
        [v] = run("no-open-admin-ports", fabric)
        assert v.rule == "no-open-admin-ports" and v.path == "policy.rules[0]" and "22" in v.message

    def test_all_ports_from_any_include_rdp(self) -> None:
        fabric = with_rules({"name": "open", "from": "any", "to": "db", "proto": "tcp", "action": "permit"})
        [v] = run("no-open-admin-ports", fabric, ports=[3389])
        assert "3389" in v.message

    def test_named_source_or_earlier_deny_is_compliant(self) -> None:
        assert run("no-open-admin-ports", spec()) == []
        shadowed = with_rules(
            {"name": "no-ssh", "from": "any", "to": "any", "proto": "tcp", "ports": [22], "action": "deny"},
            {"name": "open", "from": "any", "to": "db", "proto": "tcp", "ports": ["20-25"], "action": "permit"},
        )
        assert [v.message for v in run("no-open-admin-ports", shadowed)] == [
            "rule 'open' permits any to administrative port(s) 23; administrative ports must only be reachable from named networks or groups"
        ]


class TestNoAnyToAnyPermit:
    def test_any_to_any_is_a_violation(self) -> None:
        [v] = run("no-any-to-any-permit", with_rules({"name": "all", "from": "any", "to": "any", "proto": "tcp", "ports": [443], "action": "permit"}))
        assert v.path == "policy.rules[0]" and "must name a network or group" in v.message

    def test_any_to_any_deny_and_named_permits_are_compliant(self) -> None:
        assert run("no-any-to-any-permit", spec()) == []


class TestNoOverlappingCidrs:
    def test_underlay_pool_over_a_network_is_a_violation(self) -> None:
        # validate_spec refuses this too; the rule also guards specs built in code without it.
        fabric = spec()
        fabric = fabric.model_copy(update={"underlay": fabric.underlay.model_copy(update={"backbone_cidr": IPv4Network("10.30.0.0/16")})})
        [v] = run("no-overlapping-cidrs", fabric)
        assert v.path == "underlay.backbone_cidr" and "10.30.40.0/24" in v.message

    def test_disjoint_space_is_compliant(self) -> None:
        assert run("no-overlapping-cidrs", spec()) == []


class TestEdgesMultiAz:
    def test_single_zone_edge_is_a_violation(self) -> None:
        data = raw()
        data["edges"][1]["zones"] = 1
        [v] = run("edges-multi-az", validate_spec(data))
        assert v.path == "edges[1].zones" and "at least 2" in v.message

    def test_one_vm_for_two_zones_is_a_violation(self) -> None:
        data = raw()
        data["edges"][0]["instances"] = 1
        [v] = run("edges-multi-az", validate_spec(data))
        assert v.path == "edges[0].instances"

    def test_default_two_zones_is_compliant(self) -> None:
        assert run("edges-multi-az", spec()) == []


class TestCircuitBgpAuth:
    def test_plain_text_key_in_stack_is_a_violation(self) -> None:
        fabric = spec(circuits=[dx("fra-dx", 101, "10.0.0.0/31")])
        [v] = run("circuit-bgp-auth", fabric, {"transit:fradxMd5": "hunter2"})
        assert v.path == "circuits[0].bgp.md5_secret" and "plain text" in v.message and "hunter2" not in v.message

    def test_missing_key_is_a_violation(self) -> None:
        fabric = spec(circuits=[dx("fra-dx", 101, "10.0.0.0/31")])
        [v] = run("circuit-bgp-auth", fabric, {})
        assert "no config key transit:fradxMd5" in v.message

    def test_secret_key_is_compliant(self) -> None:
        fabric = spec(circuits=[dx("fra-dx", 101, "10.0.0.0/31")])
        assert run("circuit-bgp-auth", fabric, {"transit:fradxMd5": {"secure": "v1:abc"}}) == []


class TestCircuitRedundancy:
    def test_single_direct_connect_is_a_violation(self) -> None:
        [v] = run("circuit-redundancy", spec(circuits=[dx("fra-dx", 101, "10.0.0.0/31")]))
        assert v.path == "circuits[0].attaches" and "at least 2 Direct Connect connections" in v.message

    def test_two_direct_connects_are_compliant(self) -> None:
        fabric = spec(circuits=[dx("fra-dx", 101, "10.0.0.0/31"), dx("fra-dx2", 102, "10.0.0.2/31")])
        assert run("circuit-redundancy", fabric) == []


class TestEncryptedTransit:
    ER = {"name": "fra-er", "provider": "azure-expressroute", "location": "Frankfurt", "bandwidth_mbps": 50, "vlan": 100,
          "bgp": {"customer_asn": 65000, "peer_asn": 12076, "peering": ["10.0.0.12/30", "10.0.0.16/30"], "md5_secret": "fraErMd5"}}

    def test_native_network_on_a_circuit_is_a_violation(self) -> None:
        [v] = run("encrypted-transit", spec(circuits=[{**self.ER, "attaches": ["az-app"]}]))
        assert v.path == "circuits[0].attaches[0]" and "unencrypted" in v.message

    def test_connector_network_or_waived_circuit_is_compliant(self) -> None:
        assert run("encrypted-transit", spec(circuits=[dx("fra-dx", 101, "10.0.0.0/31")])) == []
        assert run("encrypted-transit", spec(circuits=[{**self.ER, "attaches": ["az-app"]}]), plaintext_circuits=["fra-er"]) == []


class TestCircuitRoutePropagation:
    def test_circuit_landing_nowhere_is_a_violation(self) -> None:
        [v] = run("circuit-route-propagation", spec(circuits=[{**dx("fra-dx", 101, "10.0.0.0/31"), "attaches": []}]))
        assert v.path == "circuits[0].attaches" and "no route table" in v.message

    def test_circuit_attaching_a_network_is_compliant(self) -> None:
        assert run("circuit-route-propagation", spec(circuits=[dx("fra-dx", 101, "10.0.0.0/31")])) == []


class TestLevels:
    def test_dev_is_advisory_and_passes_prod_is_mandatory_and_fails(self) -> None:
        fabric = spec(circuits=[dx("fra-dx", 101, "10.0.0.0/31")])
        dev = run_check(fabric, load_config("dev"), samples=50)
        prod = run_check(fabric, load_config("prod"), samples=50)
        assert {v.level for v in dev.violations} == {"advisory"} and not dev.failed
        assert {v.level for v in prod.violations} == {"mandatory"} and prod.failed
        assert "circuit-redundancy" in {v.violation.rule for v in prod.violations}

    def test_disabled_rule_does_not_run_and_options_override_defaults(self) -> None:
        fabric = spec(circuits=[dx("fra-dx", 101, "10.0.0.0/31")])
        settings = parse_config({"all": "mandatory", "circuit-redundancy": "disabled",
                                 "edges-multi-az": {"enforcementLevel": "advisory", "min_zones": 3}})
        report = run_check(fabric, settings, samples=0)
        assert "circuit-redundancy" not in {v.violation.rule for v in report.violations}
        assert {(v.violation.rule, v.level) for v in report.violations if v.violation.path.startswith("edges")} == {("edges-multi-az", "advisory")}
        assert not report.failed

    def test_failing_assertion_fails_dev_too_unless_relaxed(self) -> None:
        data = raw()
        data["policy"]["tests"] = [{"from": "aws-app", "to": "db", "proto": "tcp", "port": 5433, "expect": "permit"}]
        fabric = validate_spec(data)
        dev = run_check(fabric, load_config("dev"), samples=20)
        assert dev.failed and dev.findings_level == "mandatory" and [f.kind for f in dev.findings] == ["test-fails"]
        relaxed = run_check(fabric, parse_config({"all": "advisory"}), samples=20)
        assert relaxed.findings and not relaxed.failed
        off = run_check(fabric, parse_config({"policy-tests-hold": "disabled"}), samples=20)
        assert off.findings == [] and off.flows_sampled == 0

    def test_unknown_rule_or_level_is_refused(self) -> None:
        import pytest

        from components.checks.config import PolicyConfigError

        with pytest.raises(PolicyConfigError, match="no-such-rule"):
            parse_config({"no-such-rule": "mandatory"})
        with pytest.raises(PolicyConfigError, match="strict"):
            parse_config({"all": "strict"})
        assert copy.deepcopy(parse_config({"circuit-redundancy-in-stack": "mandatory"}))["circuit-redundancy"].level == "advisory"
