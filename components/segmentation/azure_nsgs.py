"""Azure segmentation: the ordered policy compiled into NSGs with application security groups.

Azure NSG rules are ordered (lower priority number first) and can deny, so the
policy maps rule for rule: no subtraction and no Cartesian product (seed 002).
One NSG guards each onboarded Azure network. Groups become ASGs (NICs whose
address is in the group join it), so a rule names a group once instead of
listing its addresses. Sources outside the NSG's network are address prefixes.

Azure adds default rules below ours; `AllowVnetInBound` (65000) admits every
source in the `VirtualNetwork` tag, which covers peered and gateway-learned
prefixes, i.e. the whole fabric, and `AllowVnetOutBound` does the same for egress. So the
compiler closes each direction with an explicit deny at priority 4096, or
the defaults would permit what the policy denies. `AzureNsgs` is the
segmentation target (`segmentation.protocol`): its evaluator reads the compiled
NSGs and ASGs, default rules included, so `transit check` proves what Azure
would do, not what we meant. Never imports Pulumi.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, collapse_addresses
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from components.segmentation.cidrs import within
from components.segmentation.firewall_path import decide_on_path
from components.segmentation.groups import Group, GroupBook, asg_name
from components.segmentation.ports import ANY_PORT, covers_port, port_items, port_range
from components.segmentation.protocol import Context, Evaluator
from components.segmentation.resolve import ResolvedRule, onboarded_space, resolve_rules
from components.spec import FabricSpec

Access = Literal["Allow", "Deny"]
Direction = Literal["Inbound", "Outbound"]
Protocol = Literal["Tcp", "Udp", "Icmp", "*"]

FIRST_PRIORITY = 100
LAST_PRIORITY = 4096
MAX_RULES_PER_NSG = 1000  # Azure's limit of rules per NSG (both directions)
VIRTUAL_NETWORK = "VirtualNetwork"
_PROTOCOLS: dict[str, Protocol] = {"tcp": "Tcp", "udp": "Udp", "icmp": "Icmp", "any": "*"}
_NUMBERS: dict[str, int] = {"Tcp": 6, "Udp": 17, "Icmp": 1}


class NsgRule(BaseModel):
    """One security rule, with the field names of the NSG securityRules API (snake_case)."""

    model_config = ConfigDict(frozen=True)

    name: str
    priority: int = Field(ge=100, le=65500)
    direction: Direction
    access: Access
    protocol: Protocol
    source_address_prefixes: list[str] = Field(default_factory=list)
    source_application_security_groups: list[str] = Field(default_factory=list)
    destination_address_prefixes: list[str] = Field(default_factory=list)
    destination_application_security_groups: list[str] = Field(default_factory=list)
    destination_port_ranges: list[str] = Field(default_factory=lambda: ["*"])


class Nsg(BaseModel):
    """The NSG of one Azure network, attached to all its subnets."""

    model_config = ConfigDict(frozen=True)

    name: str
    network: str
    cidrs: list[IPv4Network]
    rules: list[NsgRule]


class AzureSegmentation(BaseModel):
    """Everything the Azure side of the policy compiles to."""

    model_config = ConfigDict(frozen=True)

    nsgs: list[Nsg]
    asgs: list[Group] = Field(description="Application security groups: NICs whose address is in `members` join them.")
    virtual_network: list[IPv4Network] = Field(description="What the VirtualNetwork service tag covers: the fabric's address space.")

    @property
    def rule_count(self) -> int:
        """Security rules emitted (ours, not Azure's defaults)."""
        return sum(len(nsg.rules) for nsg in self.nsgs)


DEFAULT_RULES: list[NsgRule] = [
    NsgRule(name="AllowVnetInBound", priority=65000, direction="Inbound", access="Allow", protocol="*",
            source_address_prefixes=[VIRTUAL_NETWORK], destination_address_prefixes=[VIRTUAL_NETWORK]),
    NsgRule(name="AllowAzureLoadBalancerInBound", priority=65001, direction="Inbound", access="Allow", protocol="*",
            source_address_prefixes=["AzureLoadBalancer"], destination_address_prefixes=["*"]),
    NsgRule(name="DenyAllInBound", priority=65500, direction="Inbound", access="Deny", protocol="*",
            source_address_prefixes=["*"], destination_address_prefixes=["*"]),
    NsgRule(name="AllowVnetOutBound", priority=65000, direction="Outbound", access="Allow", protocol="*",
            source_address_prefixes=[VIRTUAL_NETWORK], destination_address_prefixes=[VIRTUAL_NETWORK]),
    NsgRule(name="AllowInternetOutBound", priority=65001, direction="Outbound", access="Allow", protocol="*",
            source_address_prefixes=["*"], destination_address_prefixes=["Internet"]),
    NsgRule(name="DenyAllOutBound", priority=65500, direction="Outbound", access="Deny", protocol="*",
            source_address_prefixes=["*"], destination_address_prefixes=["*"]),
]
"""Azure's default security rules, present in every NSG below the user's."""


def compile_azure(spec: FabricSpec, rules: Sequence[ResolvedRule] | None = None) -> AzureSegmentation:
    """Compile the policy into one NSG per Azure network plus the ASGs its rules name.

    Inbound rules guard the network as a destination, outbound rules as a
    source, so Azure agrees with the intent whichever end it holds. The final
    outbound deny only covers the fabric (`VirtualNetwork`): the policy says
    nothing about the internet, which keeps Azure's default. `rules` defaults
    to the spec's policy, resolved.
    """
    rules = resolve_rules(spec) if rules is None else rules
    nsgs: list[Nsg] = []
    asgs = GroupBook()
    allow = {"permit": "Allow", "deny": "Deny"}
    for network in (n for n in spec.networks if n.cloud == "azure"):
        scope = list(collapse_addresses(network.cidrs))
        compiled: list[NsgRule] = []
        for direction in ("Inbound", "Outbound"):
            position = 0
            for rule in rules:
                local_name, local_nets, remote_name, remote_nets = (
                    (rule.dst_name, rule.dst, rule.src_name, rule.src) if direction == "Inbound"
                    else (rule.src_name, rule.src, rule.dst_name, rule.dst)
                )
                inside = within(local_nets, scope)
                if not inside:
                    continue
                local = _local_side(spec, network.name, local_name, inside, scope, asgs)
                remote = _remote_side(spec, network.name, remote_name, remote_nets, scope, asgs)
                source, destination = (remote, local) if direction == "Inbound" else (local, remote)
                compiled.append(
                    NsgRule(
                        name=f"{rule.name}-{direction.lower()}",
                        priority=FIRST_PRIORITY + position,
                        direction=direction,  # type: ignore[arg-type]
                        access=allow[rule.action],  # type: ignore[arg-type]
                        protocol=_PROTOCOLS[rule.proto],
                        source_address_prefixes=source[0],
                        source_application_security_groups=source[1],
                        destination_address_prefixes=destination[0],
                        destination_application_security_groups=destination[1],
                        destination_port_ranges=port_items(rule.ports) or [ANY_PORT],
                    )
                )
                position += 1
            if position >= MAX_RULES_PER_NSG // 2:
                raise ValueError(f"network {network.name} needs {position} {direction.lower()} NSG rules; Azure allows {MAX_RULES_PER_NSG} per NSG")
            remote_all = ["*"] if direction == "Inbound" else [VIRTUAL_NETWORK]
            compiled.append(
                NsgRule(name=f"default-{spec.policy.default}-{direction.lower()}", priority=LAST_PRIORITY,
                        direction=direction, access=allow[spec.policy.default], protocol="*",  # type: ignore[arg-type]
                        source_address_prefixes=remote_all if direction == "Inbound" else ["*"],
                        destination_address_prefixes=["*"] if direction == "Inbound" else remote_all)
            )
        nsgs.append(Nsg(name=f"nsg-{network.name}", network=network.name, cidrs=scope, rules=compiled))
    space = list(collapse_addresses([*onboarded_space(spec), *(edge.cidr for edge in spec.edges)]))
    return AzureSegmentation(nsgs=nsgs, asgs=sorted(asgs.groups(), key=lambda a: a.name), virtual_network=space)


def _local_side(spec: FabricSpec, network: str, name: str, inside: list[IPv4Network],
                scope: list[IPv4Network], asgs: GroupBook) -> tuple[list[str], list[str]]:
    """(address prefixes, ASG names) for the rule end inside `network`.

    The whole network is `*` (the NSG guards nothing else); a group is an ASG of
    its members here; anything else is its address prefixes inside the network.
    """
    if inside == scope:
        return ["*"], []
    if name in spec.groups:
        return [], [asgs.add(asg_name(network, name), network, inside)]
    return [str(net) for net in inside], []


def _remote_side(spec: FabricSpec, network: str, name: str, nets: tuple[IPv4Network, ...],
                 scope: list[IPv4Network], asgs: GroupBook) -> tuple[list[str], list[str]]:
    """(address prefixes, ASG names) for the other end of the rule.

    A group wholly inside the network is an ASG (ASGs only work within one
    network); every other end is its address prefixes, never `*`, which would
    also match addresses outside the fabric.
    """
    addresses = list(collapse_addresses(nets))
    if name in spec.groups and within(nets, scope) == addresses:
        return [], [asgs.add(asg_name(network, name), network, addresses)]
    return [str(net) for net in addresses], []


@dataclass(frozen=True)
class _Side:
    """One side of a rule with service tags and ASGs expanded to networks."""

    anything: bool
    internet: bool
    nets: tuple[IPv4Network, ...]

    def has(self, address: IPv4Address) -> bool:
        return self.anything or (self.internet and not address.is_private) or any(address in net for net in self.nets)


@dataclass(frozen=True)
class _Rule:
    rule: NsgRule
    protocol: int | None
    source: _Side
    destination: _Side
    ports: tuple[tuple[int, int], ...]

    def matches(self, src: IPv4Address, dst: IPv4Address, proto: int, port: int | None) -> bool:
        if self.protocol is not None and self.protocol != proto:
            return False
        if not self.source.has(src) or not self.destination.has(dst):
            return False
        return covers_port(self.ports, port)


class AzureEvaluator:
    """Azure's decision over compiled NSGs: parsed once, then one ordered scan per NSG on the path."""

    def __init__(self, seg: AzureSegmentation) -> None:
        members = {asg.name: asg.members for asg in seg.asgs}
        tags = {VIRTUAL_NETWORK: seg.virtual_network, "AzureLoadBalancer": [IPv4Network("168.63.129.16/32")]}

        def side(prefixes: list[str], groups: list[str]) -> _Side:
            nets = [net for p in prefixes if p not in ("*", "Internet") for net in (tags[p] if p in tags else [IPv4Network(p)])]
            nets += [net for g in groups for net in members[g]]
            return _Side("*" in prefixes, "Internet" in prefixes, tuple(nets))

        def compiled(rule: NsgRule) -> _Rule:
            ports = () if ANY_PORT in rule.destination_port_ranges else tuple(map(port_range, rule.destination_port_ranges))
            return _Rule(rule, None if rule.protocol == "*" else _NUMBERS[rule.protocol],
                         side(rule.source_address_prefixes, rule.source_application_security_groups),
                         side(rule.destination_address_prefixes, rule.destination_application_security_groups), ports)

        self._nsgs = [
            (nsg, {d: [compiled(r) for r in sorted((r for r in [*nsg.rules, *DEFAULT_RULES] if r.direction == d), key=lambda r: r.priority)]
                   for d in ("Inbound", "Outbound")})
            for nsg in seg.nsgs
        ]

    def __call__(self, src_ip: str, dst_ip: str, proto: int, port: int | None) -> tuple[str, str] | None:
        """(permit|deny, deciding NSG/direction/rule), or None when no NSG is on the flow's path.

        Outbound is checked at the source's NSG and inbound at the destination's,
        as Azure does; the flow passes only when every NSG on the path allows it.
        """
        return decide_on_path(self._nsgs, src_ip, dst_ip, proto, port,
                              outbound="Outbound", inbound="Inbound", denies=lambda rule: rule.access == "Deny")


def evaluate(seg: AzureSegmentation, src_ip: str, dst_ip: str, proto: int, port: int | None) -> tuple[str, str] | None:
    """One-off decision; build an `AzureEvaluator` once to judge many flows."""
    return AzureEvaluator(seg)(src_ip, dst_ip, proto, port)


class AzureNsgs:
    """The Azure segmentation target: NSGs with ASGs, judged with Azure's default rules."""

    name = "azure:nsgs"

    def compile(self, rules: Sequence[ResolvedRule], context: Context) -> AzureSegmentation | None:
        """One NSG per onboarded Azure network; None when the fabric has none."""
        return compile_azure(context.spec, rules) if context.networks_of("azure") else None

    def evaluator(self, native: AzureSegmentation) -> Evaluator:
        decide = AzureEvaluator(native)
        return lambda flow: decide(flow.src, flow.dst, flow.number, flow.port)


AZURE_NSGS = AzureNsgs()
