"""The enforcement points of a fabric, each judged from its own compiled artefact.

A point answers one question for a flow: what it would do, or nothing when the
flow never crosses it. Every point is a segmentation target
(`components.segmentation.protocol`) evaluating its native rules: security
groups and prefix lists, NSGs and ASGs with Azure's default rules, firewall
rules and tags with GCP's implied rules, and the nftables document each
agent installs. The intent is the reference they must all agree with. AWS is
read back from the plan's `aws` section (what `transit plan` shows) instead of
being compiled again. Building the points compiles everything once, so a
parity run only pays for lookups. Never imports Pulumi.
"""
from __future__ import annotations

from ipaddress import IPv4Network

from components.aws.planning import AwsPlanSection
from components.local.layout import build_layout, name_prefix
from components.plan import build_plan
from components.plan_models import Plan
from components.segmentation.aws_security_groups import AWS_SECURITY_GROUPS, SecurityPlan
from components.segmentation.azure_nsgs import AZURE_NSGS, AzureSegmentation
from components.segmentation.gcp_firewall import GCP_FIREWALL
from components.segmentation.intent import INTENT
from components.segmentation.nftables import Nftables, NftTable
from components.segmentation.protocol import Context, Point, compile_points, point
from components.spec import FabricSpec
from dataplane.filter_model import FilterPolicy

CLOUD_TARGETS = (INTENT, AWS_SECURITY_GROUPS, AZURE_NSGS, GCP_FIREWALL)
"""The targets compiled from the spec, in report order; the agents' points follow them."""


def nft_point(name: str, table: NftTable, scope: list[IPv4Network]) -> Point:
    """A data plane agent's filter table; it sees flows from or to its scope."""
    return Point(name, Nftables(name, tuple(scope)).table_evaluator(table))


def agent_filters(spec: FabricSpec) -> dict[str, tuple[FilterPolicy, list[IPv4Network]]]:
    """The filter and scope of every agent the local target generates (its AgentConfigs).

    These are the very configs `transit-agent` loads on the `local` stack, so
    the check proves what runs, not a second compile of the policy.
    """
    layout = build_layout(spec, name_prefix(spec.name, "check"))
    return {agent.config.name: (agent.config.filter, list(agent.config.local_cidrs)) for agent in layout.agents if agent.config.local_cidrs}


def dataplane_points(spec: FabricSpec, filters: dict[str, tuple[FilterPolicy, list[IPv4Network]]] | None = None) -> list[Point]:
    """One point per filtering agent: its filter compiled to nftables, read back from the document.

    `filters` (name -> (policy, scope)) defaults to the agents' configs.
    """
    filters = agent_filters(spec) if filters is None else filters
    out = []
    for name, (policy, scope) in filters.items():
        target = Nftables(f"dataplane:{name}", tuple(scope))
        out.append(point(target, target.document(policy)))
    return out


def aws_point(section: AwsPlanSection) -> Point:
    """AWS security groups as the plan's `aws` section lists them (what the components build)."""
    return point(AWS_SECURITY_GROUPS, SecurityPlan.from_rows(section))


def azure_point(seg: AzureSegmentation) -> Point:
    """Azure NSGs with ASGs and Azure's default rules."""
    return point(AZURE_NSGS, seg)


def build_points(spec: FabricSpec, plan: Plan | None = None) -> list[Point]:
    """Compile every enforcement point the fabric has; the intent comes first."""
    plan = build_plan(spec) if plan is None else plan
    compiled = {AWS_SECURITY_GROUPS.name: SecurityPlan.from_rows(plan.aws)} if plan.aws is not None else {}
    return [*compile_points(CLOUD_TARGETS, Context.of(spec), compiled), *dataplane_points(spec)]
