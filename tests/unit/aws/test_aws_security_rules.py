"""The compiled security groups agree with the ordered reference policy on sampled flows."""
from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest

from components.segmentation.aws_security_groups import Endpoint, IntentRule, Segment, compile_security
from dataplane.filter_model import FilterPolicy, FilterRule

ANY = Endpoint("any", (IPv4Network("0.0.0.0/0"),))
WEB = Endpoint("web", (IPv4Network("10.30.40.0/26"),))
APP_NET = Endpoint("aws-app", (IPv4Network("10.30.40.0/24"),))
DB = Endpoint("db", (IPv4Network("172.18.40.10/32"),))
AZ_APP = Endpoint("az-app", (IPv4Network("172.18.40.0/24"),))
SEGMENTS = [Segment("aws-app", "us-east-1", (IPv4Network("10.30.40.0/24"),))]


def reference(rules: list[IntentRule]) -> FilterPolicy:
    """The same rules in the data plane's reference model (first match, default deny)."""
    return FilterPolicy(
        rules=[
            FilterRule(
                name=r.name, action=r.action, src=list(r.src.cidrs), dst=list(r.dst.cidrs),
                proto=r.proto, ports=list(r.ports),
            )
            for r in rules
        ]
    )


def test_seed_000_rules_use_one_prefix_list_and_keep_ssh_closed() -> None:
    rules = [
        IntentRule("no-ssh", "deny", ANY, ANY, "tcp", ((22, 22),)),
        IntentRule("app-to-db", "permit", APP_NET, DB, "tcp", ((5432, 5432),)),
    ]
    plan = compile_security(rules, SEGMENTS)
    assert [m.key for m in plan.members] == ["aws-app"]
    assert [(r.direction, r.protocol, r.from_port, r.to_port, r.peer_kind, r.peer) for r in plan.rules] == [
        ("egress", "tcp", 5432, 5432, "prefix_list", "db")
    ]
    assert [(p.key, p.cidrs) for p in plan.prefix_lists] == [("db", ("172.18.40.10/32",))]
    assert plan.allows("10.30.40.7", "172.18.40.10", "tcp", 5432) is True
    assert plan.allows("10.30.40.7", "172.18.40.10", "tcp", 22) is False
    assert plan.allows("172.18.40.1", "172.18.40.10", "tcp", 5432) is None


def test_deny_carved_out_of_a_later_permit_splits_ports_not_addresses() -> None:
    rules = [
        IntentRule("no-ssh", "deny", ANY, ANY, "tcp", ((22, 22),)),
        IntentRule("az-to-app", "permit", AZ_APP, APP_NET, "tcp", ()),
    ]
    plan = compile_security(rules, SEGMENTS)
    ports = sorted((r.from_port, r.to_port) for r in plan.rules if r.direction == "ingress")
    assert ports == [(0, 21), (23, 65535)]
    assert plan.allows("172.18.40.5", "10.30.40.9", "tcp", 22) is False
    assert plan.allows("172.18.40.5", "10.30.40.9", "tcp", 23) is True


def test_group_inside_a_network_becomes_its_own_member_and_is_referenced_by_group() -> None:
    rules = [
        IntentRule("web-to-app", "permit", WEB, APP_NET, "tcp", ((8080, 8080),)),
    ]
    plan = compile_security(rules, SEGMENTS)
    assert [m.key for m in plan.members] == ["aws-app.web", "aws-app"]
    refs = {(r.member, r.direction, r.peer_kind) for r in plan.rules}
    assert ("aws-app", "ingress", "security_group") in refs
    assert not plan.prefix_lists or all(p.key != "web" for p in plan.prefix_lists)


def test_any_rule_carved_by_a_deny_leaves_other_protocols_closed_and_says_so() -> None:
    rules = [
        IntentRule("no-dns", "deny", ANY, APP_NET, "udp", ((53, 53),)),
        IntentRule("az-any", "permit", AZ_APP, APP_NET, "any", ()),
    ]
    plan = compile_security(rules, SEGMENTS)
    assert plan.allows("172.18.40.5", "10.30.40.9", "icmp", None) is True
    assert plan.allows("172.18.40.5", "10.30.40.9", "udp", 53) is False
    assert plan.allows("172.18.40.5", "10.30.40.9", "other", None) is False
    assert plan.notes and "other than tcp, udp and icmp" in plan.notes[0]


def test_uncarved_any_rule_is_one_all_protocol_rule() -> None:
    plan = compile_security([IntentRule("az-any", "permit", AZ_APP, APP_NET, "any", ())], SEGMENTS)
    assert [(r.direction, r.protocol) for r in plan.rules] == [("ingress", "-1")]
    assert plan.allows("172.18.40.5", "10.30.40.9", "other", None) is True


def _random_endpoint(rng: random.Random, index: int) -> Endpoint:
    if rng.random() < 0.15:
        return ANY
    cidrs = {IPv4Network((rng.choice([0x0A000000, 0x0A000100, 0x0A000200, 0x0A010000]) + rng.randrange(0, 256) // 16 * 16, rng.choice([24, 25, 26, 28, 30])), strict=False) for _ in range(rng.randint(1, 3))}
    return Endpoint(f"ep{index}", tuple(sorted(cidrs)))


@pytest.mark.parametrize("seed", range(12))
def test_random_policies_agree_with_the_reference_on_sampled_flows(seed: int) -> None:
    rng = random.Random(seed)
    rules = []
    for i in range(rng.randint(2, 7)):
        proto = rng.choice(["tcp", "udp", "icmp", "any"])
        ports: tuple[tuple[int, int], ...] = ()
        if proto in ("tcp", "udp") and rng.random() < 0.8:
            low = rng.choice([22, 80, 443, 5432, 8000])
            ports = ((low, low + rng.choice([0, 0, 10, 100])),)
        rules.append(IntentRule(f"r{i}", rng.choice(["permit", "deny"]), _random_endpoint(rng, 2 * i), _random_endpoint(rng, 2 * i + 1), proto, ports))
    segments = [
        Segment("net-a", "us-east-1", (IPv4Network("10.0.0.0/24"),)),
        Segment("net-b", "us-east-1", (IPv4Network("10.0.1.0/24"), IPv4Network("10.1.0.0/25"))),
    ]
    plan = compile_security(rules, segments)
    policy = reference(rules)
    universe = [0x0A000000, 0x0A000100, 0x0A000200, 0x0A010000]
    checked = 0
    for _ in range(3000):
        src = str(IPv4Address(rng.choice(universe) + rng.randrange(256)))
        dst = str(IPv4Address(rng.choice(universe) + rng.randrange(256)))
        proto = rng.choice(["tcp", "udp", "icmp"])
        port = rng.choice([22, 23, 80, 85, 443, 500, 5432, 8005, 8100, 9000]) if proto != "icmp" else None
        verdict = plan.allows(src, dst, proto, port)
        if verdict is None:
            continue
        checked += 1
        expected = policy.evaluate(src, dst, proto, port)[0] == "permit"
        assert verdict == expected, (src, dst, proto, port, rules)
    assert checked > 1000


def test_rules_grow_with_groups_not_with_addresses() -> None:
    nets = [Segment(f"n{i}", "us-east-1", (IPv4Network(f"10.{i}.0.0/24"),)) for i in range(60)]
    web = Endpoint("web", tuple(s.cidrs[0] for s in nets[:30]))
    app = Endpoint("app", tuple(s.cidrs[0] for s in nets[30:]))
    rules = [IntentRule("web-to-app", "permit", web, app, "tcp", ((8080, 8080), (8443, 8443)))]
    plan = compile_security(rules, nets)
    assert plan.rules_cartesian == 2 * 30 * 30 * 2
    assert plan.rules_emitted == 60 * 2
    assert [p.key for p in plan.prefix_lists] == ["app", "web"]


@pytest.mark.parametrize("fabric", ["seed000_aws_azure", "seed004_dx_er_cloud_router", "architecture_example"])
def test_seed_fabrics_agree_with_the_policy_intent_evaluator(fabric: str) -> None:
    from pathlib import Path

    from components.segmentation.aws_security_groups import aws_intent
    from components.loader import load_spec
    from components.segmentation.intent import compile_intent, evaluate

    spec = load_spec(Path(__file__).resolve().parents[3] / "stacks" / "fabrics" / f"{fabric}.yaml")
    rules, segments = aws_intent(spec)
    plan = compile_security(rules, segments)
    intent = compile_intent(spec)
    rng = random.Random(fabric)
    hosts = [IPv4Address(int(c.network_address) + rng.randrange(c.num_addresses)) for n in spec.networks for c in n.cidrs for _ in range(6)]
    hosts += [IPv4Address(int(c.network_address)) for cidrs in spec.groups.values() for c in map(IPv4Network, (m for m in cidrs if "/" in m))]
    checked = 0
    for _ in range(4000):
        src, dst = str(rng.choice(hosts)), str(rng.choice(hosts))
        proto = rng.choice(["tcp", "udp", "icmp"])
        port = rng.choice([22, 443, 5001, 5432, 8000, 8080, 8081]) if proto != "icmp" else None
        verdict = plan.allows(src, dst, proto, port)
        if verdict is None:
            continue
        checked += 1
        assert verdict == (evaluate(intent, src, dst, proto, port)[0] == "permit"), (src, dst, proto, port)
    assert checked > 500


def test_a_node_delivering_connector_is_admitted_on_exactly_the_inbound_services_the_policy_permits() -> None:
    """`deliver_from: node`: workloads see the connector's address, so their group admits the connector subnets, on
    the permitted inbound services only (not on what only the network's own addresses may use)."""
    connector = (IPv4Network("10.30.40.128/26"), IPv4Network("10.30.40.192/26"))
    rules = [
        IntentRule("no-ssh", "deny", ANY, ANY, "tcp", ((22, 22),)),
        IntentRule("az-to-web", "permit", AZ_APP, WEB, "tcp", ((443, 443), (8000, 8080))),
        IntentRule("az-ping", "permit", AZ_APP, APP_NET, "icmp"),
        IntentRule("inside", "permit", APP_NET, WEB, "tcp", ((5432, 5432),)),  # never crosses the connector
    ]
    segment = Segment("aws-app", "us-east-1", (IPv4Network("10.30.40.0/24"),), delivered_from=connector)
    plan = compile_security(rules, [segment])
    # Named by CIDR (the two /26s merge): no prefix list of their own, whose region quota is 100.
    admitted = sorted((r.member, r.protocol, r.from_port, r.to_port) for r in plan.rules if r.peer == "10.30.40.128/25")
    assert {r.peer_kind for r in plan.rules if r.peer == "10.30.40.128/25"} == {"cidr"}
    assert not [p for p in plan.prefix_lists if p.cidrs == ("10.30.40.128/25",)]
    assert admitted == [
        ("aws-app", "icmp", -1, -1),
        ("aws-app.web", "icmp", -1, -1), ("aws-app.web", "tcp", 443, 443), ("aws-app.web", "tcp", 8000, 8080),
    ]
    assert all(r.direction == "ingress" for r in plan.rules if r.peer == "10.30.40.128/25")
    # Delivering from the client's address, the workloads see the remote peers themselves: nothing to admit.
    client = compile_security(rules, [Segment("aws-app", "us-east-1", (IPv4Network("10.30.40.0/24"),))])
    assert not [r for r in client.rules if r.peer == "10.30.40.128/25"]
    assert set(client.rules) < set(plan.rules)
