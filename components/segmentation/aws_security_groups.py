"""Compile the ordered segmentation policy into allow-only AWS security groups.

Why this shape (seed 002's warning): exploding groups into addresses makes the
rule count the product of sources, destinations and ports. Here a rule's peer is
one managed prefix list (or a security-group reference inside one VPC), so the
count grows with rules and groups, not with addresses.

Correctness: the policy is ordered (first match decides, default deny) and may
deny; security groups only allow. The permitted flow space is
`union_i (permit_i - union_{j<i} deny_j)`, computed exactly in `segmentation.intervals`. Each
AWS network is cut into *members*: the coarsest pieces that every rule endpoint
either covers or misses, one security group each. A member's ingress rules are
the permitted boxes whose destinations cover it, peer = the box's sources; its
egress rules are the boxes whose sources cover it, peer = the destinations.
Security groups have no "all protocols but tcp": where a deny carves an `any`
rule, tcp, udp and icmp stay exact and other IP protocols are left closed (a
note says so). `AWS_SECURITY_GROUPS` is the segmentation target
(`segmentation.protocol`). Nothing here imports Pulumi.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Literal, Protocol

from components.segmentation.intervals import PORTED, AddressSet, Box, Interval, ServiceSet
from components.segmentation.ports import covers_port, port_range
from components.segmentation.protocol import Context, Decision, Evaluator, Flow
from components.segmentation.resolve import ResolvedRule, endpoint_entries, resolve_rules
from components.spec import FabricSpec

Action = Literal["permit", "deny"]
Direction = Literal["ingress", "egress"]
PeerKind = Literal["prefix_list", "security_group", "cidr"]

PREFIX_LIST_MAX_ENTRIES = 1000
"""AWS quota: entries in one customer-managed prefix list."""


@dataclass(frozen=True)
class Endpoint:
    """A named rule endpoint (network, group or `any`) resolved to its CIDRs.

    `entries` are the address entries the spec names before any merging (one
    per member network CIDR or literal): what a per-address compiler explodes,
    so the Cartesian count uses them. Defaults to `cidrs`.
    """

    name: str
    cidrs: tuple[IPv4Network, ...]
    entries: tuple[IPv4Network, ...] = ()

    def exploded(self) -> tuple[IPv4Network, ...]:
        return self.entries or self.cidrs


@dataclass(frozen=True)
class IntentRule:
    """One ordered policy rule with resolved endpoints; empty `ports` = every port."""

    name: str
    action: Action
    src: Endpoint
    dst: Endpoint
    proto: Literal["tcp", "udp", "icmp", "any"]
    ports: tuple[Interval, ...] = ()


@dataclass(frozen=True)
class Segment:
    """An AWS network (one VPC) whose workloads get security groups."""

    network: str
    region: str
    cidrs: tuple[IPv4Network, ...]
    delivered_from: tuple[IPv4Network, ...] = ()
    """The connector subnets that deliver inbound flows from their own addresses (`deliver_from: node`): the
    workloads see those addresses, not the remote client's, so their groups admit them on the permitted services."""


@dataclass(frozen=True)
class Member:
    """One security group: the addresses of a network that every rule treats alike."""

    key: str
    network: str
    region: str
    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class PrefixList:
    """A managed prefix list shared by every rule whose peer is this address set."""

    key: str
    region: str
    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class SgRule:
    """One security-group rule resource."""

    member: str
    direction: Direction
    protocol: str  # tcp | udp | icmp | -1
    from_port: int
    to_port: int
    peer_kind: PeerKind
    peer: str  # prefix-list key, member key or CIDR
    rules: tuple[str, ...]  # the intent rules this grant comes from


@dataclass(frozen=True)
class SecurityPlan:
    """The compiled security groups, prefix lists and rules, with both counts."""

    members: tuple[Member, ...]
    prefix_lists: tuple[PrefixList, ...]
    rules: tuple[SgRule, ...]
    rules_cartesian: int
    notes: tuple[str, ...] = ()

    @property
    def rules_emitted(self) -> int:
        return len(self.rules)

    @classmethod
    def from_rows(cls, section: SectionRows) -> SecurityPlan:
        """Read back the rows the plan shows (`transit plan`'s AWS section): the inverse of how it writes them."""
        rules = []
        for row in section.rules:
            kind, _, peer = row.peer.partition(":")
            low, high = port_range(row.ports) if row.ports else (-1, -1)
            rules.append(SgRule(row.security_group, row.direction, "-1" if row.protocol == "all" else row.protocol,  # type: ignore[arg-type]
                                low, high, kind, peer, tuple(row.policy_rules)))  # type: ignore[arg-type]
        return cls(
            members=tuple(Member(g.name, g.network, g.region, tuple(g.cidrs)) for g in section.security_groups),
            prefix_lists=tuple(PrefixList(p.name, p.region, tuple(p.cidrs)) for p in section.prefix_lists),
            rules=tuple(rules), rules_cartesian=section.rules_cartesian, notes=tuple(section.notes),
        )

    def allows(self, src: str, dst: str, proto: str, port: int | None) -> bool | None:
        """Would the security groups pass this flow? None when neither end is in AWS.

        `proto` is tcp, udp, icmp or other. One-off: build the evaluator of
        `AWS_SECURITY_GROUPS` once to judge many flows.
        """
        decision = AWS_SECURITY_GROUPS.evaluator(self)(Flow(src, dst, proto, port))
        return None if decision is None else decision[0] == "permit"


class _Row(Protocol):
    name: str
    region: str
    cidrs: list[str]


class _GroupRow(_Row, Protocol):
    network: str


class _RuleRow(Protocol):
    security_group: str
    direction: str
    protocol: str
    ports: str
    peer: str
    policy_rules: list[str]


class SectionRows(Protocol):
    """The shape of the plan's AWS section as far as security goes (`aws.planning.AwsPlanSection`)."""

    security_groups: Sequence[_GroupRow]
    prefix_lists: Sequence[_Row]
    rules: Sequence[_RuleRow]
    rules_cartesian: int
    notes: Sequence[str]


class _Judge:
    """AWS's decision over a SecurityPlan: the source's egress and the destination's ingress must both allow.

    A workload holds its member's group; a rule's peer is a prefix list, a
    security group or a CIDR. Members are disjoint, so the member of an address
    is one bisection; rules are grouped by (member, direction) in plan order.
    """

    def __init__(self, plan: SecurityPlan) -> None:
        spans = sorted((low, high, m.key) for m in plan.members for low, high in AddressSet.from_cidrs(m.cidrs).intervals)
        self._starts = [low for low, _, _ in spans]
        self._spans = spans
        peers: dict[tuple[str, str], AddressSet] = {("security_group", m.key): AddressSet.from_cidrs(m.cidrs) for m in plan.members}
        peers.update({("prefix_list", p.key): AddressSet.from_cidrs(p.cidrs) for p in plan.prefix_lists})
        self._rules: dict[tuple[str, str], list[tuple[AddressSet, SgRule]]] = {}
        for rule in plan.rules:
            peer = peers[(rule.peer_kind, rule.peer)] if rule.peer_kind != "cidr" else AddressSet.from_cidrs([rule.peer])
            self._rules.setdefault((rule.member, rule.direction), []).append((peer, rule))

    def _member(self, address: int) -> str | None:
        index = bisect_right(self._starts, address) - 1
        return self._spans[index][2] if index >= 0 and address <= self._spans[index][1] else None

    def _grant(self, member: str, direction: str, peer: int, flow: Flow) -> str | None:
        service = flow.service
        for addresses, rule in self._rules.get((member, direction), ()):
            if peer not in addresses:
                continue
            ports = () if rule.from_port == -1 else ((rule.from_port, rule.to_port),)
            if rule.protocol == "-1" or (rule.protocol == service and (service not in PORTED or covers_port(ports, flow.port))):
                return f"{member}/{direction}/{'+'.join(rule.rules)}"
        return None

    def __call__(self, flow: Flow) -> Decision | None:
        src, dst = int(IPv4Address(flow.src)), int(IPv4Address(flow.dst))
        src_member, dst_member = self._member(src), self._member(dst)
        if src_member is None and dst_member is None:
            return None
        reasons = []
        for member, direction, peer in ((dst_member, "ingress", src), (src_member, "egress", dst)):
            if member is None:
                continue
            reason = self._grant(member, direction, peer, flow)
            if reason is None:
                return "deny", f"{member}/{direction}: no rule allows it"
            reasons.append(reason)
        return "permit", ", ".join(reasons)


class AwsSecurityGroups:
    """The AWS segmentation target: security groups per member, prefix lists per peer set."""

    name = "aws:security-groups"

    def compile(self, rules: Sequence[ResolvedRule], context: Context) -> SecurityPlan | None:
        """The security plan of the fabric's AWS networks; None when it has none."""
        intent, segments = aws_intent(context.spec, rules)
        return compile_security(intent, segments) if segments else None

    def evaluator(self, native: SecurityPlan) -> Evaluator:
        return _Judge(native)


AWS_SECURITY_GROUPS = AwsSecurityGroups()


def aws_intent(spec: FabricSpec, rules: Sequence[ResolvedRule] | None = None) -> tuple[list[IntentRule], list[Segment]]:
    """The AWS compiler's inputs: the resolved ordered rules (default: the spec's) and the AWS networks."""
    rules = resolve_rules(spec) if rules is None else rules
    intent = [
        IntentRule(
            r.name, r.action,  # type: ignore[arg-type]
            Endpoint(r.src_name, r.src, endpoint_entries(spec, r.src_name)),
            Endpoint(r.dst_name, r.dst, endpoint_entries(spec, r.dst_name)),
            r.proto, r.ports,  # type: ignore[arg-type]
        )
        for r in rules
    ]
    segments = [Segment(n.name, n.region or "", tuple(n.cidrs)) for n in spec.networks if n.cloud == "aws"]
    return intent, segments


def permitted_boxes(rules: list[IntentRule]) -> list[tuple[Box, str]]:
    """The permitted flow space as disjoint-from-denies boxes, each with its rule name."""
    denies: list[Box] = []
    out: list[tuple[Box, str]] = []
    for rule in rules:
        box = Box(
            AddressSet.from_cidrs(rule.src.cidrs),
            AddressSet.from_cidrs(rule.dst.cidrs),
            ServiceSet.for_rule(rule.proto, rule.ports),
        )
        if not box:
            continue
        if rule.action == "deny":
            denies.append(box)
            continue
        pieces = [box]
        for deny in denies:
            pieces = [part for piece in pieces for part in piece.minus(deny)]
        out.extend((piece, rule.name) for piece in pieces)
    return out


def compile_security(rules: list[IntentRule], segments: list[Segment]) -> SecurityPlan:
    """Compile ordered intent into security groups, prefix lists and rules."""
    boxes = permitted_boxes(rules)
    endpoints = [(e.name, AddressSet.from_cidrs(e.cidrs)) for e in _distinct_endpoints(rules)]
    sets: dict[str, AddressSet] = {}
    members: list[Member] = []
    for segment in segments:
        for member, addresses in _members(segment, endpoints):
            members.append(member)
            sets[member.key] = addresses
    grants = _grants(members, sets, boxes)
    named = {addresses: name for name, addresses in endpoints}
    deliveries = set()
    for segment in segments:
        if segment.delivered_from:
            delivery = AddressSet.from_cidrs(segment.delivered_from)
            deliveries.add(delivery)
            _delivery_grants(grants, [m for m in members if m.network == segment.network], sets, boxes, segment, delivery)
    prefix_lists: dict[tuple[str, AddressSet], PrefixList] = {}
    by_network: dict[str, list[Member]] = {m.network: [] for m in members}
    for m in members:
        by_network[m.network].append(m)
    sg_rules: list[SgRule] = []
    notes: list[str] = []
    for (member, direction, peer), (svc, names) in grants.items():
        # The connector subnets are a few CIDRs of the member's own VPC, one set per network: named by CIDR, they
        # cost no prefix list (AWS allows 100 per region) and count the same against the group's rule quota.
        peers = [("cidr", str(c)) for c in peer.cidrs()] if peer in deliveries else [
            _peer(member, peer, by_network, sets, named, prefix_lists, names)]
        for kind, key in peers:
            for protocol, low, high in _protocol_entries(svc):
                sg_rules.append(SgRule(member.key, direction, protocol, low, high, kind, key, names))  # type: ignore[arg-type]
        if svc.other and not svc.is_everything():
            notes.append(
                f"{member.key} {direction} ({', '.join(names)}): a deny carves an 'any' rule; "
                "protocols other than tcp, udp and icmp stay closed"
            )
    for plist in prefix_lists.values():
        if len(plist.cidrs) > PREFIX_LIST_MAX_ENTRIES:
            raise ValueError(
                f"prefix list {plist.key} needs {len(plist.cidrs)} entries, over the AWS quota of "
                f"{PREFIX_LIST_MAX_ENTRIES}; summarise the networks in that group"
            )
    return SecurityPlan(
        members=tuple(members),
        prefix_lists=tuple(prefix_lists.values()),
        rules=tuple(sg_rules),
        rules_cartesian=cartesian_count(rules, segments),
        notes=tuple(dict.fromkeys(notes)),
    )


def cartesian_count(rules: list[IntentRule], segments: list[Segment]) -> int:
    """Rules a per-address compiler would emit for the same AWS enforcement points.

    Each permit rule explodes into source entry x destination entry x port range
    (groups into their member networks, as seed 002 describes),
    once on the ingress side (destinations inside AWS) and once on the egress
    side (sources inside AWS); denies are ignored, which only flatters it.
    """
    aws = AddressSet.from_cidrs(c for s in segments for c in s.cidrs)
    total = 0
    for rule in rules:
        if rule.action != "permit":
            continue
        services = max(1, len(rule.ports))
        src, dst = rule.src.exploded(), rule.dst.exploded()
        src_in = sum(1 for c in src if _clip(aws, AddressSet.from_cidrs([c])))
        dst_in = sum(1 for c in dst if _clip(aws, AddressSet.from_cidrs([c])))
        total += (len(src) * dst_in + src_in * len(dst)) * services
    return total


def _distinct_endpoints(rules: list[IntentRule]) -> list[Endpoint]:
    seen: dict[str, Endpoint] = {}
    for rule in rules:
        for endpoint in (rule.src, rule.dst):
            seen.setdefault(endpoint.name, endpoint)
    return list(seen.values())


def _members(segment: Segment, endpoints: list[tuple[str, AddressSet]]) -> list[tuple[Member, AddressSet]]:
    """Cut a network into the pieces every endpoint covers whole or misses whole."""
    whole = AddressSet.from_cidrs(segment.cidrs)
    cutters = []
    for name, addresses in endpoints:
        part = _clip(addresses, whole)
        if part and part != whole and name != segment.network:
            cutters.append((name, part))
    bounds = sorted(
        {b for low, high in whole.intervals for b in (low, high + 1)}
        | {b for _, part in cutters for low, high in part.intervals for b in (low, high + 1)}
    )
    pieces: dict[tuple[str, ...], list[Interval]] = {}
    for low, high in zip(bounds, bounds[1:]):
        if low not in whole:
            continue
        signature = tuple(sorted(name for name, part in cutters if low in part))
        pieces.setdefault(signature, []).append((low, high - 1))
    out = []
    for signature, intervals in sorted(pieces.items(), key=lambda item: item[1][0]):
        addresses = AddressSet.of(intervals)
        key = ".".join((segment.network, *signature))
        out.append((Member(key, segment.network, segment.region, tuple(map(str, addresses.cidrs()))), addresses))
    return out


def _clip(big: AddressSet, small: AddressSet) -> AddressSet:
    """big & small, by binary search on big's intervals (small has few intervals)."""
    starts = [low for low, _ in big.intervals]
    out: list[Interval] = []
    for low, high in small.intervals:
        index = max(0, bisect_right(starts, low) - 1)
        while index < len(big.intervals) and big.intervals[index][0] <= high:
            b_low, b_high = big.intervals[index]
            if b_high >= low:
                out.append((max(low, b_low), min(high, b_high)))
            index += 1
    return AddressSet.of(out)


def _covers(big: AddressSet, small: AddressSet) -> bool:
    """small is a subset of big, by binary search on big's intervals."""
    starts = [low for low, _ in big.intervals]
    for low, high in small.intervals:
        index = bisect_right(starts, low) - 1
        if index < 0 or big.intervals[index][1] < high:
            return False
    return True


def _grants(
    members: list[Member], sets: dict[str, AddressSet], boxes: list[tuple[Box, str]]
) -> dict[tuple[Member, Direction, AddressSet], tuple[ServiceSet, tuple[str, ...]]]:
    """Per member and direction: peer address set -> the services allowed, merged."""
    grants: dict[tuple[Member, Direction, AddressSet], tuple[ServiceSet, tuple[str, ...]]] = {}
    for member in members:
        addresses = sets[member.key]
        for box, name in boxes:
            for direction, own, peer in (("ingress", box.dst, box.src), ("egress", box.src, box.dst)):
                if not _clip(own, addresses):
                    continue
                if not _covers(own, addresses):
                    raise AssertionError(f"member {member.key} is split by rule {name}; members are cut wrongly")
                key = (member, direction, peer)
                svc, names = grants.get(key, (ServiceSet(), ()))
                grants[key] = (svc | box.svc, names if name in names else (*names, name))
    return grants


def _delivery_grants(
    grants: dict[tuple[Member, Direction, AddressSet], tuple[ServiceSet, tuple[str, ...]]], members: list[Member],
    sets: dict[str, AddressSet], boxes: list[tuple[Box, str]], segment: Segment, delivery: AddressSet,
) -> None:
    """Admit the connector subnets into each member on exactly the services the policy lets remote sources reach it
    with: what arrives from outside the network comes through the connector, from the connector's own address."""
    own = AddressSet.from_cidrs(segment.cidrs)
    for member in members:
        for box, name in boxes:
            if not _clip(box.dst, sets[member.key]) or _covers(own, box.src):
                continue  # not to this member, or only from inside its own network (which never crosses the connector)
            key = (member, "ingress", delivery)
            svc, names = grants.get(key, (ServiceSet(), ()))
            grants[key] = (svc | box.svc, names if name in names else (*names, name))


def _peer(
    member: Member,
    peer: AddressSet,
    by_network: dict[str, list[Member]],
    sets: dict[str, AddressSet],
    named: dict[AddressSet, str],
    prefix_lists: dict[tuple[str, AddressSet], PrefixList],
    names: tuple[str, ...],
) -> tuple[PeerKind, str]:
    """Say who the peer is: 0.0.0.0/0, a member of the same VPC, or a shared prefix list."""
    if peer == AddressSet.everything():
        return "cidr", "0.0.0.0/0"
    for other in by_network[member.network]:
        if sets[other.key] == peer:
            return "security_group", other.key
    index = (member.region, peer)
    if index not in prefix_lists:
        base = named.get(peer) or f"{names[0]}-peer"
        taken = {p.key for p in prefix_lists.values()}
        key, n = base, 1
        while key in taken:
            n += 1
            key = f"{base}-{n}"
        prefix_lists[index] = PrefixList(key, member.region, tuple(map(str, peer.cidrs())))
    return "prefix_list", prefix_lists[index].key


def _protocol_entries(svc: ServiceSet) -> list[tuple[str, int, int]]:
    """One (protocol, from_port, to_port) per security-group rule for this service set."""
    if svc.is_everything():
        return [("-1", -1, -1)]
    out = [(proto, low, high) for proto in PORTED for low, high in getattr(svc, proto).intervals]
    if svc.icmp:
        out.append(("icmp", -1, -1))
    return out
