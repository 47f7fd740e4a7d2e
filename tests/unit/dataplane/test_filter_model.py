"""The reference semantics of FilterPolicy: order, default, ports, validation."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from dataplane.filter_model import FilterPolicy, FilterRule


def _policy() -> FilterPolicy:
    return FilterPolicy.model_validate(
        {
            "default": "deny",
            "rules": [
                {"name": "no-ssh", "action": "deny", "proto": "tcp", "ports": [22]},
                {"name": "app-to-db", "action": "permit", "src": ["10.30.40.0/24"], "dst": ["172.18.40.10/32"], "proto": "tcp", "ports": [5432, [8000, 8080]]},
                {"name": "ping", "action": "permit", "src": ["10.30.40.0/24"], "proto": "icmp"},
            ],
        }
    )


def test_first_match_decides_over_later_permit() -> None:
    # app-to-db would permit port 22 only if it came first; no-ssh wins.
    policy = FilterPolicy(rules=[
        FilterRule(name="no-ssh", action="deny", proto="tcp", ports=[(22, 22)]),
        FilterRule(name="all", action="permit"),
    ])
    assert policy.evaluate("10.30.40.5", "172.18.40.10", "tcp", 22) == ("deny", "no-ssh")
    assert policy.evaluate("10.30.40.5", "172.18.40.10", "tcp", 23) == ("permit", "all")


def test_permit_ranges_and_default() -> None:
    policy = _policy()
    assert policy.evaluate("10.30.40.5", "172.18.40.10", "tcp", 5432) == ("permit", "app-to-db")
    assert policy.evaluate("10.30.40.5", "172.18.40.10", "tcp", 8080) == ("permit", "app-to-db")
    assert policy.evaluate("10.30.40.5", "172.18.40.10", "tcp", 8081) == ("deny", None)
    assert policy.evaluate("10.30.40.5", "172.18.40.11", "tcp", 5432) == ("deny", None)
    assert policy.evaluate("10.30.40.5", "172.18.40.10", "udp", 5432) == ("deny", None)
    assert policy.evaluate("10.30.40.5", "172.18.40.10", "icmp") == ("permit", "ping")
    assert policy.evaluate("10.30.41.5", "172.18.40.10", 1) == ("deny", None)


def test_default_permit() -> None:
    policy = FilterPolicy(default="permit", rules=[FilterRule(name="x", action="deny", dst=["10.0.0.0/8"])])
    assert policy.evaluate("1.1.1.1", "10.1.2.3", "udp", 53) == ("deny", "x")
    assert policy.evaluate("1.1.1.1", "11.1.2.3", "udp", 53) == ("permit", None)


@pytest.mark.parametrize(
    "rule, message",
    [
        ({"name": "p", "action": "permit", "proto": "icmp", "ports": [1]}, "only allowed with proto tcp or udp"),
        ({"name": "p", "action": "permit", "proto": "any", "ports": [1]}, "only allowed with proto tcp or udp"),
        ({"name": "p", "action": "permit", "proto": "tcp", "ports": [[10, 5]]}, "port range 10-5"),
        ({"name": "p", "action": "permit", "proto": "tcp", "ports": [70000]}, "port range"),
        ({"name": "bad name", "action": "permit"}, "must start with a letter"),
        ({"name": "default", "action": "permit"}, "reserved"),
        ({"name": "p", "action": "allow"}, "action"),
        ({"name": "p", "action": "permit", "src": ["10.0.0.1/24"]}, "rules.0.src.0"),
    ],
)
def test_bad_rules_are_refused(rule: dict, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        FilterPolicy.model_validate({"rules": [rule]})
    assert message in str(info.value)


def test_duplicate_rule_names_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"rules\[1\].name 'a' is used by an earlier rule"):
        FilterPolicy.model_validate({"rules": [{"name": "a", "action": "permit"}, {"name": "a", "action": "deny"}]})
