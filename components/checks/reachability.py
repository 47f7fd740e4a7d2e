"""Prove `policy.tests` against every enforcement point, and sample for parity.

Two questions, one answer format (a `Finding` naming a concrete flow):

- Does each written assertion hold? It is evaluated for representative
  addresses of its two ends (first and last host of every CIDR) against the
  intent and against every point the flow crosses; a wrong intent verdict is a
  `test-fails`, a point that answers otherwise is a `point-disagrees`.
- Do all points agree everywhere else? The parity run walks the boundaries of
  every CIDR and port range in the spec (where compilers slip: off-by-one
  ports, a /32 inside a /24, an edge of a summarised prefix), then random flows
  from a seeded generator, and stops at the first flow on which a point and
  the intent differ (`parity-hole` when the point permits what the intent
  denies, `parity-block` when it denies what the intent permits); its path
  is the rule that decides the flow in the intent, or `policy.default`.
Never imports Pulumi.
"""
from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from components.segmentation.intent import resolve_endpoint
from components.segmentation.protocol import Decision, Flow, Point
from components.segmentation.resolve import ResolvedRule, resolve_rules
from components.spec import FabricSpec

FindingKind = Literal["test-fails", "point-disagrees", "parity-hole", "parity-block"]
BOUNDARY_BUDGET = 6000
"""At most this many boundary flows in all, shared between the rules, so big fabrics stay fast."""
OTHER_PROTO = "47"
"""A protocol that is neither tcp, udp nor icmp (GRE), to exercise `any` rules."""


@dataclass(frozen=True)
class Finding:
    """One failed proof, as a concrete flow and what each point said."""

    kind: FindingKind
    flow: Flow
    message: str
    path: str
    decisions: dict[str, Decision] = field(default_factory=dict)

    def describe(self) -> str:
        """What failed and the flow, with every point's answer (no path)."""
        said = "; ".join(f"{name} {verdict} ({why})" for name, (verdict, why) in self.decisions.items())
        return f"{self.kind}: {self.message} [flow {self.flow}: {said}]"

    def __str__(self) -> str:
        return f"{self.path}: {self.describe()}"


def hosts(network: IPv4Network) -> list[str]:
    """First and last host of a CIDR (the whole /31 or /32 when it has no others)."""
    if network.prefixlen >= 31:
        return sorted({str(network.network_address), str(network.broadcast_address)})
    return [str(network.network_address + 1), str(network.broadcast_address - 1)]


def decisions(points: list[Point], flow: Flow) -> dict[str, Decision]:
    """What every point on the flow's path says (points it never crosses are left out)."""
    out: dict[str, Decision] = {}
    for point in points:
        decision = point.decide(flow)
        if decision is not None:
            out[point.name] = decision
    return out


def prove_tests(spec: FabricSpec, points: list[Point]) -> list[Finding]:
    """Every `policy.tests` assertion against the intent and every point it crosses."""
    findings: list[Finding] = []
    for index, test in enumerate(spec.policy.tests):
        path = f"policy.tests[{index}]"
        for flow in _test_flows(spec, test.from_, test.to, test.proto, test.port):
            said = decisions(points, flow)
            intent = said["intent"][0]
            if intent != test.expect:
                findings.append(Finding("test-fails", flow, f"expects {test.expect}, the policy gives {intent}", path, said))
                break
            wrong = {name: d for name, d in said.items() if d[0] != test.expect}
            if wrong:
                names = ", ".join(wrong)
                findings.append(Finding("point-disagrees", flow, f"expects {test.expect}; {names} gives {_other(test.expect)}", path, said))
                break
    return findings


def _other(verdict: str) -> str:
    return "deny" if verdict == "permit" else "permit"


def _test_flows(spec: FabricSpec, src: str, dst: str, proto: str, port: int | None) -> Iterator[Flow]:
    for src_net in resolve_endpoint(spec, src):
        for dst_net in resolve_endpoint(spec, dst):
            for src_ip in hosts(src_net):
                for dst_ip in hosts(dst_net):
                    if src_ip != dst_ip:
                        yield Flow(src_ip, dst_ip, proto, port)


def prove(spec: FabricSpec, points: list[Point], samples: int, seed: int) -> tuple[list[Finding], int]:
    """Assertions, then parity: every finding, and how many flows parity compared."""
    findings = prove_tests(spec, points)
    disagreement, checked = parity(spec, points, samples, seed)
    return findings + ([disagreement] if disagreement is not None else []), checked


def parity(spec: FabricSpec, points: list[Point], samples: int = 2000, seed: int = 0,
           boundary: int = BOUNDARY_BUDGET) -> tuple[Finding | None, int]:
    """The first flow on which a point disagrees with the intent, and how many flows were checked."""
    positions = {r.name: f"policy.rules[{i}]" for i, r in enumerate(spec.policy.rules)}
    checked = 0
    for flow in sample_flows(spec, samples, seed, boundary):
        checked += 1
        said = decisions(points, flow)
        intent, rule = said["intent"]
        for name, (verdict, _) in said.items():
            if verdict != intent:
                kind: FindingKind = "parity-hole" if verdict == "permit" else "parity-block"
                message = f"{name} says {verdict}, the intent says {intent}"
                return Finding(kind, flow, message, positions.get(rule, "policy.default"), said), checked
    return None, checked


def _boundary_addresses(nets: list[IPv4Network]) -> list[int]:
    """Both ends of each CIDR, their inner neighbours, and the addresses just outside."""
    out: list[int] = []
    for net in nets:
        low, high = int(net.network_address), int(net.broadcast_address)
        out.extend(a for a in (low, low + 1, high - 1, high, low - 1, high + 1) if 0 <= a < 2**32)
    return list(dict.fromkeys(out))


def _boundary_ports(ports: tuple[tuple[int, int], ...]) -> list[int]:
    out = [p for lo, hi in ports for p in (lo - 1, lo, hi, hi + 1)] or [1, 65535]
    return [p for p in dict.fromkeys(out) if 1 <= p <= 65535]


class _Space:
    """The onboarded networks as sorted integer intervals, to place an address in O(log n)."""

    def __init__(self, spec: FabricSpec) -> None:
        self.nets = sorted((int(c.network_address), int(c.broadcast_address)) for n in spec.networks for c in n.cidrs)
        self._starts = [low for low, _ in self.nets]

    def network_of(self, address: int) -> int | None:
        index = bisect_right(self._starts, address) - 1
        return index if index >= 0 and address <= self.nets[index][1] else None


def _rule_boundary(rule: ResolvedRule, space: _Space, budget: int, rng: random.Random) -> Iterator[Flow]:
    """The rule's boundary flows between two different networks; a seeded sample of `budget` when there are more."""
    protos = [rule.proto] if rule.proto != "any" else ["tcp", "udp", "icmp", OTHER_PROTO]
    services = [(proto, port) for proto in protos for port in (_boundary_ports(rule.ports) if proto in ("tcp", "udp") else [None])]
    srcs, dsts = _boundary_addresses(list(rule.src)), _boundary_addresses(list(rule.dst))
    total = len(srcs) * len(dsts) * len(services)
    picks = range(total) if total <= budget else sorted(rng.sample(range(total), budget))
    for pick in picks:
        pair, service = divmod(pick, len(services))
        src, dst = divmod(pair, len(dsts))
        src_net, dst_net = space.network_of(srcs[src]), space.network_of(dsts[dst])
        if src_net is None or dst_net is None or src_net == dst_net:
            continue
        proto, port = services[service]
        yield Flow(str(IPv4Address(srcs[src])), str(IPv4Address(dsts[dst])), proto, port)


def sample_flows(spec: FabricSpec, samples: int, seed: int, boundary: int = BOUNDARY_BUDGET) -> Iterator[Flow]:
    """Boundary flows of every rule (at most `boundary` in all), then `samples` seeded random flows between networks."""
    rng = random.Random(seed)
    space = _Space(spec)
    rules = resolve_rules(spec)
    for rule in rules:
        yield from _rule_boundary(rule, space, max(1, boundary // max(1, len(rules))), rng)
    if len(space.nets) < 2:
        return
    port_pool = sorted({p for r in rules for p in _boundary_ports(r.ports)})
    for _ in range(samples):
        (src_low, src_high), (dst_low, dst_high) = rng.sample(space.nets, 2)
        proto = rng.choice(["tcp", "tcp", "udp", "icmp", OTHER_PROTO])
        port = None
        if proto in ("tcp", "udp"):
            port = rng.choice(port_pool) if port_pool and rng.random() < 0.5 else rng.randint(1, 65535)
        yield Flow(str(IPv4Address(rng.randint(src_low, src_high))), str(IPv4Address(rng.randint(dst_low, dst_high))), proto, port)
