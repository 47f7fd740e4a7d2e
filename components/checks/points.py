"""The enforcement points of a fabric, each judged from its own compiled artefact.

A point answers one question for a flow: what it would do, or nothing when the
flow never crosses it. Every point is a segmentation target
(`components.segmentation.protocol`) evaluating its native rules. The intent,
the reference they must all agree with, is compiled here; each target's point
comes from the registry (components.targets), read from that target's plan
section (security groups and prefix lists, NSGs and ASGs with Azure's default
rules, firewall rules and tags with GCP's implied rules), never compiled
again; each agent's point reads the nftables document its plan filter
compiles to. Building the points compiles everything once, so a parity run
only pays for lookups. Never imports Pulumi.
"""
from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

from components.plan_models import Plan
from components.segmentation.intent import INTENT
from components.segmentation.nftables import Nftables, NftTable
from components.segmentation.protocol import Context, Point, compile_points
from components.spec import FabricSpec
from components.targets import TARGETS, plan_fabric
from dataplane.filter_model import FilterPolicy


def nft_point(name: str, table: NftTable, scope: list[IPv4Network]) -> Point:
    """A data plane agent's filter table; it sees flows from or to its scope."""
    return Point(name, Nftables(name, tuple(scope)).table_evaluator(table))


def agent_filters(plan: Plan) -> dict[str, tuple[FilterPolicy, list[IPv4Network]]]:
    """The filter and scope of every agent that serves local networks, as the plan gives them.

    Every target builds its AgentConfigs from these very agents (components.agents),
    so the check proves what runs, not a second compile of the policy.
    """
    return {a.name: (a.filter, [IPv4Network(c) for c in a.local_cidrs]) for a in plan.agents if a.local_cidrs}


def agent_tables(plan: Plan) -> dict[Nftables, dict[str, Any]]:
    """One nftables target per filtering agent, with the document its filter compiles to (what the agent installs)."""
    return {Nftables(f"dataplane:{name}", tuple(scope)): Nftables.document(policy) for name, (policy, scope) in agent_filters(plan).items()}


def target_point(name: str, section: object) -> Point:
    """A target's enforcement point (components.targets), judged from its plan section."""
    target = TARGETS[name]
    assert target.evaluator is not None, f"target {name} has no enforcement point"
    return target.evaluator(section)


def build_points(spec: FabricSpec, plan: Plan | None = None) -> list[Point]:
    """Every enforcement point the fabric has: the intent first, then each target's (from its plan section), then the agents'.

    What is already compiled is read, not compiled again: each target judges its
    plan section, and each agent's filter is read from the document it installs.
    """
    plan = plan_fabric(spec) if plan is None else plan
    targets = [target_point(name, section) for name, section in plan.sections.items() if TARGETS[name].evaluator is not None]
    agents = agent_tables(plan)
    context = Context.of(spec)
    return [*compile_points([INTENT], context), *targets,
            *compile_points(list(agents), context, {target.name: document for target, document in agents.items()})]
