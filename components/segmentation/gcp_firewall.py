"""GCP segmentation: the ordered policy compiled into VPC firewall rules with network tags.

GCP firewall rules have priorities (lower first) and can deny, so the policy
maps rule for rule, in order, without subtraction or a Cartesian product
(seed 002). Groups become network tags (instances whose address is in the
group carry the tag), so a rule names a group once as a target or a source
tag. Sources outside the VPC are source ranges.

GCP's implied rules deny ingress and allow egress at 65535, but a VPC may carry
broader allows (the `default-allow-internal` of auto-mode VPCs sits at 65534),
so the compiler closes each VPC with its own deny at 65000. `GcpFirewall` is
the segmentation target (`segmentation.protocol`): its evaluator reads the
compiled rules and tag memberships, implied rules included, with GCP's
tie-break (deny wins at equal priority). Never imports Pulumi.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, collapse_addresses
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from components.segmentation.cidrs import within
from components.segmentation.firewall_path import decide_on_path
from components.segmentation.groups import Group, GroupBook, tag_name
from components.segmentation.ports import covers_port, port_items, port_range
from components.segmentation.protocol import Context, Evaluator
from components.segmentation.resolve import ResolvedRule, onboarded_space, resolve_rules
from components.spec import FabricSpec

FIRST_PRIORITY = 1000
DEFAULT_PRIORITY = 65000
IMPLIED_PRIORITY = 65535
_PROTOCOLS: dict[str, str] = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "any": "all"}
_NUMBERS: dict[str, int] = {"tcp": 6, "udp": 17, "icmp": 1}


class FirewallRule(BaseModel):
    """One VPC firewall rule, with the fields of compute.firewalls (snake_case)."""

    model_config = ConfigDict(frozen=True)

    name: str
    network: str
    priority: int = Field(ge=0, le=65535)
    direction: Literal["INGRESS", "EGRESS"]
    action: Literal["allow", "deny"]
    protocol: Literal["tcp", "udp", "icmp", "all"]
    ports: list[str] = Field(default_factory=list, description="Empty = every port.")
    source_ranges: list[str] = Field(default_factory=list)
    source_tags: list[str] = Field(default_factory=list)
    destination_ranges: list[str] = Field(default_factory=list)
    target_tags: list[str] = Field(default_factory=list, description="Empty = every instance in the VPC.")


class Vpc(BaseModel):
    """One onboarded GCP network and its address space."""

    model_config = ConfigDict(frozen=True)

    name: str
    cidrs: list[IPv4Network]


class GcpSegmentation(BaseModel):
    """Everything the GCP side of the policy compiles to."""

    model_config = ConfigDict(frozen=True)

    vpcs: list[Vpc]
    rules: list[FirewallRule]
    tags: list[Group] = Field(description="Network tags: instances whose address is in `members` carry them.")

    @property
    def rule_count(self) -> int:
        """Firewall rules emitted (GCP's implied rules not counted)."""
        return len(self.rules)


def implied_rules(network: str) -> list[FirewallRule]:
    """GCP's implied rules, present in every VPC below the user's."""
    return [
        FirewallRule(name="implied-deny-ingress", network=network, priority=IMPLIED_PRIORITY, direction="INGRESS",
                     action="deny", protocol="all", source_ranges=["0.0.0.0/0"]),
        FirewallRule(name="implied-allow-egress", network=network, priority=IMPLIED_PRIORITY, direction="EGRESS",
                     action="allow", protocol="all", destination_ranges=["0.0.0.0/0"]),
    ]


def rule_name(network: str, rule: str) -> str:
    """A firewall name (RFC 1035, at most 63 characters) unique per network and rule."""
    name = f"{network}-{rule}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


def _compile_rule(spec: FabricSpec, vpc: Vpc, rule: ResolvedRule, direction: str, priority: int,
                  tags: GroupBook) -> FirewallRule | None:
    """The rule as this VPC enforces it: ingress for its destinations, egress for its sources."""
    local_name, local_nets, remote_nets = (
        (rule.dst_name, rule.dst, rule.src) if direction == "INGRESS" else (rule.src_name, rule.src, rule.dst)
    )
    inside = within(local_nets, vpc.cidrs)
    if not inside:
        return None
    target_tags: list[str] = []
    local_ranges: list[str] = []
    if inside != vpc.cidrs:
        if local_name in spec.groups:
            target_tags = [tags.add(tag_name(vpc.name, local_name), vpc.name, inside)]
        else:
            local_ranges = [str(n) for n in inside]
    remote = list(collapse_addresses(remote_nets))
    source_tags: list[str] = []
    remote_ranges = [str(n) for n in remote]
    if direction == "INGRESS" and rule.src_name in spec.groups and within(rule.src, vpc.cidrs) == remote:
        source_tags, remote_ranges = [tags.add(tag_name(vpc.name, rule.src_name), vpc.name, remote)], []
    ingress = direction == "INGRESS"
    return FirewallRule(
        name=rule_name(vpc.name, f"{rule.name}-{direction.lower()}"),
        network=vpc.name,
        priority=priority,
        direction=direction,  # type: ignore[arg-type]
        action="allow" if rule.action == "permit" else "deny",
        protocol=_PROTOCOLS[rule.proto],  # type: ignore[arg-type]
        ports=port_items(rule.ports),
        source_ranges=remote_ranges if ingress else local_ranges,
        source_tags=source_tags,
        destination_ranges=local_ranges if ingress else remote_ranges,
        target_tags=target_tags,
    )


def compile_gcp(spec: FabricSpec, rules: Sequence[ResolvedRule] | None = None) -> GcpSegmentation:
    """Compile the policy into ingress and egress firewall rules per GCP network, plus their tags.

    The closing egress deny covers only the fabric's networks: the policy says
    nothing about the internet, which keeps GCP's implied egress allow.
    `rules` defaults to the spec's policy, resolved.
    """
    resolved = resolve_rules(spec) if rules is None else rules
    fabric = [str(n) for n in onboarded_space(spec)]
    vpcs = [Vpc(name=n.name, cidrs=list(collapse_addresses(n.cidrs))) for n in spec.networks if n.cloud == "gcp"]
    out: list[FirewallRule] = []
    tags = GroupBook()
    for vpc in vpcs:
        for direction in ("INGRESS", "EGRESS"):
            position = 0
            for rule in resolved:
                compiled = _compile_rule(spec, vpc, rule, direction, FIRST_PRIORITY + position, tags)
                if compiled is not None:
                    out.append(compiled)
                    position += 1
            if FIRST_PRIORITY + position >= DEFAULT_PRIORITY:
                raise ValueError(f"network {vpc.name} needs {position} {direction.lower()} rules; priorities {FIRST_PRIORITY}-{DEFAULT_PRIORITY - 1} hold fewer")
            out.append(
                FirewallRule(name=rule_name(vpc.name, f"default-deny-{direction.lower()}"), network=vpc.name,
                             priority=DEFAULT_PRIORITY, direction=direction, action="deny", protocol="all",  # type: ignore[arg-type]
                             source_ranges=["0.0.0.0/0"] if direction == "INGRESS" else [],
                             destination_ranges=fabric if direction == "EGRESS" else [])
            )
    return GcpSegmentation(vpcs=vpcs, rules=out, tags=sorted(tags.groups(), key=lambda t: (t.network, t.name)))


@dataclass(frozen=True)
class _Rule:
    """A firewall rule with ranges parsed and tags expanded to their members' networks."""

    rule: FirewallRule
    protocol: int | None
    ports: tuple[tuple[int, int], ...]
    targets: tuple[IPv4Network, ...] | None
    sources: tuple[IPv4Network, ...]
    destinations: tuple[IPv4Network, ...]

    def matches(self, src: IPv4Address, dst: IPv4Address, proto: int, port: int | None) -> bool:
        if self.protocol is not None and self.protocol != proto:
            return False
        if not covers_port(self.ports, port):
            return False
        ingress = self.rule.direction == "INGRESS"
        local = dst if ingress else src
        if self.targets is not None and not any(local in net for net in self.targets):
            return False
        if ingress:
            if self.destinations and not any(dst in net for net in self.destinations):
                return False
            return any(src in net for net in self.sources)
        if self.sources and not any(src in net for net in self.sources):
            return False
        return any(dst in net for net in self.destinations)


class GcpEvaluator:
    """GCP's decision over compiled firewall rules: parsed once, then one ordered scan per VPC on the path."""

    def __init__(self, seg: GcpSegmentation) -> None:
        def tagged(network: str, names: list[str]) -> list[IPv4Network]:
            return [m for t in seg.tags if t.network == network and t.name in names for m in t.members]

        def compiled(rule: FirewallRule) -> _Rule:
            ports = tuple(map(port_range, rule.ports))
            targets = tuple(tagged(rule.network, rule.target_tags)) if rule.target_tags else None
            sources = (*(IPv4Network(r) for r in rule.source_ranges), *tagged(rule.network, rule.source_tags))
            return _Rule(rule, None if rule.protocol == "all" else _NUMBERS[rule.protocol], ports, targets,
                         sources, tuple(IPv4Network(r) for r in rule.destination_ranges))

        self._vpcs = []
        for vpc in seg.vpcs:
            by_direction = {}
            for direction in ("INGRESS", "EGRESS"):
                rules = [r for r in [*seg.rules, *implied_rules(vpc.name)] if r.network == vpc.name and r.direction == direction]
                rules.sort(key=lambda r: (r.priority, r.action != "deny"))  # at equal priority, deny wins
                by_direction[direction] = [compiled(r) for r in rules]
            self._vpcs.append((vpc, by_direction))

    def __call__(self, src_ip: str, dst_ip: str, proto: int, port: int | None) -> tuple[str, str] | None:
        """(permit|deny, deciding VPC/direction/rule), or None when no GCP VPC is on the flow's path.

        Egress is checked in the source's VPC and ingress in the destination's;
        the flow passes only when both allow.
        """
        return decide_on_path(self._vpcs, src_ip, dst_ip, proto, port,
                              outbound="EGRESS", inbound="INGRESS", denies=lambda rule: rule.action == "deny")


def evaluate(seg: GcpSegmentation, src_ip: str, dst_ip: str, proto: int, port: int | None) -> tuple[str, str] | None:
    """One-off decision; build a `GcpEvaluator` once to judge many flows."""
    return GcpEvaluator(seg)(src_ip, dst_ip, proto, port)


class GcpFirewall:
    """The GCP segmentation target: VPC firewall rules with tags, judged with GCP's implied rules."""

    name = "gcp:firewall"

    def compile(self, rules: Sequence[ResolvedRule], context: Context) -> GcpSegmentation | None:
        """Ingress and egress rules per onboarded GCP network; None when the fabric has none."""
        return compile_gcp(context.spec, rules) if context.networks_of("gcp") else None

    def evaluator(self, native: GcpSegmentation) -> Evaluator:
        decide = GcpEvaluator(native)
        return lambda flow: decide(flow.src, flow.dst, flow.number, flow.port)


GCP_FIREWALL = GcpFirewall()
