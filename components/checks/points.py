"""The enforcement points of a fabric, each judged from its own compiled artefact.

A point answers one question for a flow: what it would do, or nothing when the
flow never crosses it. Each cloud point reads what its compiler emits (security
groups and prefix lists, NSGs and ASGs with Azure's default rules, firewall
rules and tags with GCP's implied rules); each data plane point reads the
nftables document its agent installs. The intent is the reference they must
all agree with. AWS is read from the plan's `aws` section, the rows the AWS
components turn into resources. Building the points compiles everything
once, so a parity run only pays for lookups. Never imports Pulumi.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from components.aws.planning import AwsPlanSection
from components.local.layout import build_layout, name_prefix
from components.plan import build_plan
from components.plan_models import Plan
from components.segmentation.azure_nsgs import AzureEvaluator, AzureSegmentation, compile_azure
from components.segmentation.gcp_firewall import GcpEvaluator, GcpSegmentation, compile_gcp
from components.segmentation.intent import IntentPolicy, compile_intent
from components.segmentation.intent import evaluate as intent_evaluate
from components.segmentation.nftables import NftTable, load_table
from components.spec import FabricSpec
from dataplane.filter_model import FilterPolicy, proto_number
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
    """The reference: the spec's ordered policy as `segmentation.intent.evaluate` reads it."""

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
    return [
        nft_point(f"dataplane:{name}", load_table(ruleset(policy, table="transit_filter", hook="forward")), scope)
        for name, (policy, scope) in filters.items()
    ]


def aws_point(section: AwsPlanSection) -> Point:
    """AWS security groups as the plan's `aws` section lists them (what the components build).

    The source's egress and the destination's ingress must both allow; a rule's
    peer is a prefix list, a security group or a CIDR, read from the section.
    """
    groups = {g.name: [IPv4Network(c) for c in g.cidrs] for g in section.security_groups}
    lists = {p.name: [IPv4Network(c) for c in p.cidrs] for p in section.prefix_lists}

    def peer_has(peer: str, address: IPv4Address) -> bool:
        kind, _, key = peer.partition(":")
        nets = lists[key] if kind == "prefix_list" else groups[key] if kind == "security_group" else [IPv4Network(key)]
        return any(address in net for net in nets)

    def group_of(address: IPv4Address) -> str | None:
        return next((name for name, nets in groups.items() if any(address in n for n in nets)), None)

    def port_ok(ports: str, port: int | None) -> bool:
        if not ports:
            return True
        low, _, high = ports.partition("-")
        return port is not None and int(low) <= port <= int(high or low)

    def grant(group: str, direction: str, peer: IPv4Address, flow: Flow) -> str | None:
        proto = flow.proto if flow.proto in ("tcp", "udp", "icmp") else "other"
        for rule in section.rules:
            if rule.security_group != group or rule.direction != direction or not peer_has(rule.peer, peer):
                continue
            if rule.protocol == "all" or (rule.protocol == proto and (proto not in ("tcp", "udp") or port_ok(rule.ports, flow.port))):
                return f"{group}/{direction}/{'+'.join(rule.policy_rules)}"
        return None

    def decide(flow: Flow) -> Decision | None:
        src, dst = IPv4Address(flow.src), IPv4Address(flow.dst)
        src_group, dst_group = group_of(src), group_of(dst)
        if src_group is None and dst_group is None:
            return None
        reasons = []
        for group, direction, peer in ((dst_group, "ingress", src), (src_group, "egress", dst)):
            if group is None:
                continue
            reason = grant(group, direction, peer, flow)
            if reason is None:
                return "deny", f"{group}/{direction}: no rule allows it"
            reasons.append(reason)
        return "permit", ", ".join(reasons)

    return Point("aws:security-groups", decide)


def azure_point(seg: AzureSegmentation) -> Point:
    """Azure NSGs with ASGs and Azure's default rules."""
    evaluate = AzureEvaluator(seg)
    return Point("azure:nsgs", lambda f: evaluate(f.src, f.dst, proto_number(_proto(f)), f.port))


def gcp_point(seg: GcpSegmentation) -> Point:
    """GCP VPC firewall rules with tags and GCP's implied rules."""
    evaluate = GcpEvaluator(seg)
    return Point("gcp:firewall", lambda f: evaluate(f.src, f.dst, proto_number(_proto(f)), f.port))


def _proto(flow: Flow) -> str | int:
    return int(flow.proto) if flow.proto.isdigit() else flow.proto


def build_points(spec: FabricSpec, plan: Plan | None = None) -> list[Point]:
    """Compile every enforcement point the fabric has; the intent comes first."""
    plan = build_plan(spec) if plan is None else plan
    points = [intent_point(compile_intent(spec))]
    if plan.aws is not None:
        points.append(aws_point(plan.aws))
    if any(n.cloud == "azure" for n in spec.networks):
        points.append(azure_point(compile_azure(spec)))
    if any(n.cloud == "gcp" for n in spec.networks):
        points.append(gcp_point(compile_gcp(spec)))
    points.extend(dataplane_points(spec))
    return points
