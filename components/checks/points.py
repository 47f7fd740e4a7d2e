"""The enforcement points of a fabric, each judged from its own compiled artefact.

A point answers one question for a flow: what it would do, or nothing when the
flow never crosses it. Each target's point comes from the registry
(components.targets), judged from that target's plan section (security groups
and prefix lists, NSGs and ASGs with Azure's default rules, firewall rules and
tags with GCP's implied rules); each data plane point reads the nftables
document its agent installs. The intent is the reference they must all agree
with. Building the points compiles everything once, so a parity run only pays
for lookups. Never imports Pulumi.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from components.checks.nft_eval import NftTable, load_table
from components.plan_models import Plan
from components.policy_intent import IntentPolicy, compile_intent
from components.policy_intent import evaluate as intent_evaluate
from components.spec import FabricSpec
from components.targets import TARGETS, plan_fabric
from dataplane.filter_model import FilterPolicy
from dataplane.filter_table import ruleset

Decision = tuple[str, str]
"""(permit | deny, what decided: a rule, an NSG rule, a chain's counter)."""


@dataclass(frozen=True)
class Flow:
    """One concrete flow: the unit every check and every report speaks in."""

    src: str
    dst: str
    proto: str
    port: int | None

    def __str__(self) -> str:
        proto = f"ip-proto {self.proto}" if self.proto.isdigit() else self.proto
        where = f"{proto}/{self.port}" if self.port is not None else proto
        return f"{self.src} -> {self.dst} {where}"


@dataclass(frozen=True)
class Point:
    """An enforcement point: a name and a pure decision function (None: not on the flow's path)."""

    name: str
    decide: Callable[[Flow], Decision | None]


def intent_point(intent: IntentPolicy) -> Point:
    """The reference: the spec's ordered policy as `policy_intent.evaluate` reads it."""

    def decide(flow: Flow) -> Decision:
        action, rule = intent_evaluate(intent, flow.src, flow.dst, flow.proto, flow.port)
        return action, rule or "default"

    return Point("intent", decide)


def nft_point(name: str, table: NftTable, scope: list[IPv4Network]) -> Point:
    """A data plane agent's filter table; it sees flows from or to its scope."""

    def decide(flow: Flow) -> Decision | None:
        src, dst = IPv4Address(flow.src), IPv4Address(flow.dst)
        if not any(src in net or dst in net for net in scope):
            return None
        return table.decide(flow.src, flow.dst, _proto(flow), flow.port)

    return Point(name, decide)


def agent_filters(plan: Plan) -> dict[str, tuple[FilterPolicy, list[IPv4Network]]]:
    """The filter and scope of every agent that serves local networks, as the plan gives them.

    Every target builds its AgentConfigs from these very agents (components.agents),
    so the check proves what runs, not a second compile of the policy.
    """
    return {a.name: (a.filter, [IPv4Network(c) for c in a.local_cidrs]) for a in plan.agents if a.local_cidrs}


def dataplane_points(plan: Plan, filters: dict[str, tuple[FilterPolicy, list[IPv4Network]]] | None = None) -> list[Point]:
    """One point per filtering agent: its filter compiled to nftables, read back from the document.

    `filters` (name -> (policy, scope)) defaults to the plan's agents.
    """
    filters = agent_filters(plan) if filters is None else filters
    return [
        nft_point(f"dataplane:{name}", load_table(ruleset(policy, table="transit_filter", hook="forward")), scope)
        for name, (policy, scope) in filters.items()
    ]


def target_point(name: str, section: object) -> Point:
    """A target's enforcement point (components.targets), judged from its plan section."""
    target = TARGETS[name]
    assert target.evaluator is not None, f"target {name} has no enforcement point"
    decide = target.evaluator(section)
    return Point(target.point, lambda f: decide(f.src, f.dst, f.proto, f.port))


def _proto(flow: Flow) -> str | int:
    return int(flow.proto) if flow.proto.isdigit() else flow.proto


def build_points(spec: FabricSpec, plan: Plan | None = None) -> list[Point]:
    """Compile every enforcement point the fabric has; the intent comes first, then each target's, then the agents'."""
    plan = plan_fabric(spec) if plan is None else plan
    points = [intent_point(compile_intent(spec))]
    points += [
        target_point(name, section) for name, section in plan.sections.items() if TARGETS[name].evaluator is not None
    ]
    points.extend(dataplane_points(plan))
    return points
