"""The one compile-and-evaluate protocol: every target compiled from the same rules agrees with the intent."""
from __future__ import annotations

import random
from collections.abc import Sequence
from ipaddress import IPv4Address

import pytest

from components.targets import plan_fabric
from components.segmentation.agent_filters import edge_scope
from components.segmentation.aws_security_groups import AWS_SECURITY_GROUPS, SecurityPlan, aws_intent, compile_security
from components.segmentation.azure_nsgs import AZURE_NSGS
from components.segmentation.gcp_firewall import GCP_FIREWALL
from components.segmentation.intent import INTENT
from components.segmentation.nftables import Nftables
from components.segmentation.protocol import Context, Decision, Evaluator, Flow, Point, compile_points, evaluate, point
from components.segmentation.resolve import ResolvedRule, endpoint_cidrs
from components.spec import FabricSpec, validate_spec
from tests.unit.checks.checks_fabric import raw, spec

CLOUDS = (INTENT, AWS_SECURITY_GROUPS, AZURE_NSGS, GCP_FIREWALL)


def _targets(context: Context) -> list:  # type: ignore[type-arg]
    """Every target of the three-cloud fabric, agents included (one nftables target per agent scope)."""
    agents = [Nftables("dataplane:connector-aws-app", tuple(endpoint_cidrs(context.spec, "aws-app")))]
    agents += [Nftables(f"dataplane:edge-{e}", tuple(edge_scope(context.spec, e))) for e in ("az-weu", "gcp-euw3")]
    return [*CLOUDS, *agents]


def _flows(context: Context, count: int, seed: int) -> list[Flow]:
    rng = random.Random(seed)
    nets = [c for n in context.spec.networks for c in n.cidrs]
    hosts = [str(IPv4Address(int(c.network_address) + rng.randrange(c.num_addresses))) for c in nets for _ in range(8)]
    hosts += ["172.18.40.10", "10.40.0.16", "10.40.0.31", "10.40.0.32"]
    out = []
    for _ in range(count):
        proto = rng.choice(["tcp", "udp", "icmp"])
        port = rng.choice([22, 53, 5431, 5432, 5433, 7999, 8000, 8080, 8081]) if proto != "icmp" else None
        out.append(Flow(rng.choice(hosts), rng.choice(hosts), proto, port))
    return out


def test_every_target_compiled_from_the_same_rules_agrees_with_the_intent_in_one_loop() -> None:
    context = Context.of(spec())
    points = compile_points(_targets(context), context)
    assert [p.name for p in points] == ["intent", "aws:security-groups", "azure:nsgs", "gcp:firewall",
                                        "dataplane:connector-aws-app", "dataplane:edge-az-weu", "dataplane:edge-gcp-euw3"]
    judged = {p.name: 0 for p in points[1:]}
    for flow in _flows(context, 1500, seed=5):
        intent = points[0].decide(flow)
        assert intent is not None
        for p in points[1:]:
            said = p.decide(flow)
            if said is not None:
                judged[p.name] += 1
                assert said[0] == intent[0], (p.name, str(flow), said, intent)
    assert all(count > 100 for count in judged.values()), judged


def test_a_target_with_nothing_to_guard_gives_no_point() -> None:
    data = spec().model_dump(by_alias=True)
    data["networks"] = [n for n in data["networks"] if n["cloud"] != "gcp"]
    data["groups"] = {"db": ["172.18.40.10/32"]}
    data["policy"]["rules"] = [r for r in data["policy"]["rules"] if "gcp" not in r["from"] and r["to"] != "web"]
    data["policy"]["tests"] = []
    context = Context.of(validate_spec(data))
    assert GCP_FIREWALL.compile(context.rules, context) is None
    assert "gcp:firewall" not in [p.name for p in compile_points(CLOUDS, context)]


def test_native_rules_made_elsewhere_are_read_not_compiled_again() -> None:
    class Refuses:
        name = "aws:security-groups"

        def compile(self, rules: Sequence[ResolvedRule], context: Context) -> SecurityPlan | None:
            raise AssertionError("compiled again")

        def evaluator(self, native: SecurityPlan) -> Evaluator:
            return AWS_SECURITY_GROUPS.evaluator(native)

    fabric = spec()
    context = Context.of(fabric)
    plan = SecurityPlan.from_rows(plan_fabric(fabric).sections["aws"])  # type: ignore[arg-type]
    [aws] = compile_points([Refuses()], context, {"aws:security-groups": plan})
    assert aws.decide(Flow("10.30.40.7", "172.18.40.10", "tcp", 5432)) == ("permit", "aws-app/egress/app-to-db")


def test_a_new_target_plugs_in_by_implementing_compile_and_evaluator() -> None:
    class PortList:
        """A toy firewall: the tcp ports some permit rule opens, anywhere."""

        name = "toy:ports"

        def compile(self, rules: Sequence[ResolvedRule], context: Context) -> frozenset[int]:
            return frozenset(lo for r in rules if r.action == "permit" and r.proto == "tcp" for lo, _ in r.ports)

        def evaluator(self, native: frozenset[int]) -> Evaluator:
            def decide(flow: Flow) -> Decision | None:
                if flow.proto != "tcp":
                    return None
                return ("permit", "open") if flow.port in native else ("deny", "closed")

            return decide

    context = Context.of(spec())
    [toy] = compile_points([PortList()], context)
    assert isinstance(toy, Point) and toy.name == "toy:ports"
    assert toy.decide(Flow("10.30.40.1", "172.18.40.10", "tcp", 5432)) == ("permit", "open")
    assert toy.decide(Flow("10.30.40.1", "172.18.40.10", "udp", 53)) is None
    assert evaluate(PortList(), frozenset({22}), Flow("1.1.1.1", "2.2.2.2", "tcp", 23)) == ("deny", "closed")


def test_security_groups_read_back_from_the_plan_rows_equal_the_compiled_ones() -> None:
    fabric = spec()
    section = plan_fabric(fabric).sections["aws"]
    compiled = section.layout.security  # type: ignore[attr-defined]  (the plan's compile: connector delivery included)
    read_back = SecurityPlan.from_rows(section)  # type: ignore[arg-type]
    assert read_back == compiled
    assert compiled != compile_security(*aws_intent(fabric))  # the connector delivers from its own address: admitted too


def test_aws_evaluator_keeps_security_group_and_prefix_list_names_apart() -> None:
    # aws-app is cut into members by the `web` group, so the member keyed `aws-app` holds only part of the network,
    # while the prefix list that names the whole network is also `aws-app` (seen from aws-db's VPC).
    fabric = validate_three_vpcs()
    context = Context.of(fabric)
    plan = AWS_SECURITY_GROUPS.compile(context.rules, context)
    assert plan is not None
    assert {"aws-app"} <= {m.key for m in plan.members} & {p.key for p in plan.prefix_lists}
    decide = point(AWS_SECURITY_GROUPS, plan).decide
    intent = point(INTENT, INTENT.compile(context.rules, context)).decide
    for flow in [Flow("10.30.40.200", "10.30.41.5", "tcp", 5432), Flow("10.30.40.5", "10.30.41.5", "tcp", 5432),
                 Flow("10.30.41.5", "10.30.40.200", "tcp", 443), Flow("10.30.41.5", "10.30.40.5", "tcp", 443)]:
        assert decide(flow)[0] == intent(flow)[0], str(flow)  # type: ignore[index]


def validate_three_vpcs() -> FabricSpec:
    data = raw(groups={"db": ["172.18.40.10/32"], "web": ["10.30.40.0/25"]})
    data["networks"].append({"name": "aws-db", "cloud": "aws", "region": "us-east-1", "cidrs": ["10.30.41.0/24"], "attach": "connector"})
    data["policy"]["rules"] = [
        {"name": "app-to-db", "from": "aws-app", "to": "aws-db", "proto": "tcp", "ports": [5432], "action": "permit"},
        {"name": "db-to-web", "from": "aws-db", "to": "web", "proto": "tcp", "ports": [443], "action": "permit"},
    ]
    data["policy"]["tests"] = []
    return validate_spec(data)


@pytest.mark.parametrize(("proto", "number", "service"), [("tcp", 6, "tcp"), ("icmp", 1, "icmp"), ("47", 47, "other")])
def test_flow_names_its_protocol_for_every_platform(proto: str, number: int, service: str) -> None:
    flow = Flow("10.0.0.1", "10.0.0.2", proto, None)
    assert (flow.number, flow.service) == (number, service)
