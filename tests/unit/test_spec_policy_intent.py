"""The reference policy semantics that every enforcement point is tested against."""
from __future__ import annotations

import ipaddress

import pytest

from components.segmentation.intent import compile_intent, evaluate, port_ranges, resolve_endpoint, run_tests, sample_address
from components.spec import FabricSpec
from spec_helpers import EXAMPLES, example, spec_of


def _spec(rules: list[dict], groups: dict | None = None) -> FabricSpec:
    data = example()
    data["policy"] = {"rules": rules}
    if groups is not None:
        data["groups"] = groups
    return spec_of(data)


AWS, AZ, DB, DC = "10.30.40.5", "172.18.40.7", "172.18.40.10", "192.168.3.4"


def test_first_matching_rule_decides() -> None:
    spec = spec_of(example())  # no-ssh (deny) comes before app-to-db (permit)
    assert evaluate(spec, AWS, DB, "tcp", 5432) == ("permit", "app-to-db")
    assert evaluate(spec, AWS, DB, "tcp", 22) == ("deny", "no-ssh")


def test_order_matters() -> None:
    permit_first = [
        {"name": "ssh-ok", "from": "aws-app", "to": "db", "proto": "tcp", "ports": [22], "action": "permit"},
        {"name": "no-ssh", "from": "any", "to": "any", "proto": "tcp", "ports": [22], "action": "deny"},
    ]
    assert evaluate(_spec(permit_first), AWS, DB, "tcp", 22) == ("permit", "ssh-ok")
    assert evaluate(_spec(list(reversed(permit_first))), AWS, DB, "tcp", 22) == ("deny", "no-ssh")


def test_default_deny_when_nothing_matches() -> None:
    spec = spec_of(example())
    assert evaluate(spec, AWS, AZ, "tcp", 5432) == ("deny", None)
    assert evaluate(spec, DB, AWS, "tcp", 5432) == ("deny", None)  # rules are directional


def test_any_means_every_onboarded_network_not_the_internet() -> None:
    spec = _spec([{"name": "all", "from": "any", "to": "any", "proto": "any", "action": "permit"}])
    assert evaluate(spec, AWS, DC, "udp", 53) == ("permit", "all")
    assert evaluate(spec, "8.8.8.8", AWS, "tcp", 443) == ("deny", None)
    assert evaluate(spec, AWS, "10.250.37.10", "tcp", 443) == ("deny", None)  # an edge is not an onboarded network
    assert [str(c) for c in resolve_endpoint(spec, "any")] == ["10.30.40.0/24", "172.18.40.0/24", "192.168.0.0/16"]


def test_groups_may_name_networks() -> None:
    spec = _spec(
        [{"name": "g", "from": "apps", "to": "db", "proto": "tcp", "action": "permit"}],
        groups={"apps": ["aws-app", "192.168.10.0/24"], "db": ["172.18.40.10/32"]},
    )
    assert [str(c) for c in resolve_endpoint(spec, "apps")] == ["10.30.40.0/24", "192.168.10.0/24"]
    assert evaluate(spec, AWS, DB, "tcp", 1) == ("permit", "g")
    assert evaluate(spec, "192.168.10.9", DB, "tcp", 1) == ("permit", "g")
    assert evaluate(spec, DC, DB, "tcp", 1) == ("deny", None)


@pytest.mark.parametrize(
    ("proto", "port", "verdict"),
    [("tcp", 8000, "permit"), ("tcp", 8080, "permit"), ("tcp", 8081, "deny"), ("tcp", 443, "permit"),
     ("udp", 443, "deny"), ("tcp", None, "deny"), ("icmp", None, "deny")],
)
def test_ports_and_ranges(proto: str, port: int | None, verdict: str) -> None:
    spec = _spec([{"name": "web", "from": "aws-app", "to": "az-app", "proto": "tcp", "ports": [443, "8000-8080"], "action": "permit"}])
    assert evaluate(spec, AWS, AZ, proto, port)[0] == verdict


def test_tcp_without_ports_matches_every_port_and_any_matches_every_protocol() -> None:
    spec = _spec([
        {"name": "tcp-all", "from": "aws-app", "to": "az-app", "proto": "tcp", "action": "permit"},
        {"name": "any-deny", "from": "aws-app", "to": "az-app", "proto": "any", "action": "deny"},
        {"name": "back", "from": "az-app", "to": "aws-app", "proto": "any", "action": "permit"},
    ])
    assert evaluate(spec, AWS, AZ, "tcp", 65535) == ("permit", "tcp-all")
    assert evaluate(spec, AWS, AZ, "udp", 53) == ("deny", "any-deny")
    assert evaluate(spec, AZ, AWS, "icmp", None) == ("permit", "back")
    assert evaluate(spec, AZ, AWS, "gre", None) == ("permit", "back")


def test_port_ranges_are_sorted_and_merged() -> None:
    spec = _spec([{"name": "r", "from": "aws-app", "to": "az-app", "proto": "udp", "ports": ["10-20", 21, 5, "15-30", 40], "action": "permit"}])
    assert port_ranges(spec.policy.rules[0]) == [(5, 5), (10, 30), (40, 40)]
    assert compile_intent(spec).rules[0].ports == [(5, 5), (10, 30), (40, 40)]


def test_address_endpoints_and_samples() -> None:
    spec = spec_of(example())
    assert resolve_endpoint(spec, "172.18.40.99") == [ipaddress.IPv4Network("172.18.40.99/32")]
    assert str(sample_address(spec, "aws-app")) == "10.30.40.1"
    assert str(sample_address(spec, "db")) == "172.18.40.10"
    with pytest.raises(KeyError):
        resolve_endpoint(spec, "nobody")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_policy_tests_hold(name: str) -> None:
    results = run_tests(spec_of(example(name)))
    assert results and all(r.passed for r in results), [r for r in results if not r.passed]


def test_a_wrong_expectation_fails() -> None:
    data = example()
    data["policy"]["tests"][0]["expect"] = "deny"
    (first, second) = run_tests(spec_of(data))
    assert not first.passed and first.got == "permit" and first.rule == "app-to-db"
    assert second.passed
