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
  denies, `parity-block` when it denies what the intent permits).
Never imports Pulumi.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from components.checks.points import Decision, Flow, Point
from components.dataplane_policy import resolve_rules
from components.policy_intent import resolve_endpoint
from components.spec import FabricSpec

FindingKind = Literal["test-fails", "point-disagrees", "parity-hole", "parity-block"]
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

    def __str__(self) -> str:
        said = "; ".join(f"{name} {verdict} ({why})" for name, (verdict, why) in self.decisions.items())
        return f"{self.path}: {self.kind}: {self.message} [flow {self.flow}: {said}]"


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


def parity(spec: FabricSpec, points: list[Point], samples: int = 2000, seed: int = 0) -> tuple[Finding | None, int]:
    """The first flow on which a point disagrees with the intent, and how many flows were checked."""
    checked = 0
    for flow in sample_flows(spec, samples, seed):
        checked += 1
        said = decisions(points, flow)
        intent = said["intent"][0]
        for name, (verdict, _) in said.items():
            if verdict != intent:
                kind: FindingKind = "parity-hole" if verdict == "permit" else "parity-block"
                message = f"{name} says {verdict}, the intent says {intent}"
                return Finding(kind, flow, message, "policy.rules", said), checked
    return None, checked


def _boundary_addresses(nets: list[IPv4Network]) -> list[str]:
    """Both ends of each CIDR, their inner neighbours, and the addresses just outside."""
    out: list[str] = []
    for net in nets:
        low, high = int(net.network_address), int(net.broadcast_address)
        out.extend(str(IPv4Address(a)) for a in (low, low + 1, high - 1, high, low - 1, high + 1) if 0 <= a < 2**32)
    return list(dict.fromkeys(out))


def _boundary_ports(ports: tuple[tuple[int, int], ...]) -> list[int]:
    out = [p for lo, hi in ports for p in (lo - 1, lo, hi, hi + 1)] or [1, 65535]
    return [p for p in dict.fromkeys(out) if 1 <= p <= 65535]


def sample_flows(spec: FabricSpec, samples: int, seed: int) -> Iterator[Flow]:
    """Boundary flows of every rule, then `samples` seeded random flows between networks."""
    space = [cidr for network in spec.networks for cidr in network.cidrs]

    def inside(address: str) -> IPv4Network | None:
        return next((net for net in space if IPv4Address(address) in net), None)

    for rule in resolve_rules(spec):
        protos = [rule.proto] if rule.proto != "any" else ["tcp", "udp", "icmp", OTHER_PROTO]
        for src in _boundary_addresses(list(rule.src)):
            for dst in _boundary_addresses(list(rule.dst)):
                src_net, dst_net = inside(src), inside(dst)
                if src_net is None or dst_net is None or src_net == dst_net:
                    continue
                for proto in protos:
                    for port in _boundary_ports(rule.ports) if proto in ("tcp", "udp") else [None]:
                        yield Flow(src, dst, proto, port)
    rng = random.Random(seed)
    port_pool = sorted({p for r in resolve_rules(spec) for p in _boundary_ports(r.ports)})
    if len(space) < 2:
        return
    for _ in range(samples):
        src_net, dst_net = rng.sample(space, 2)
        proto = rng.choice(["tcp", "tcp", "udp", "icmp", OTHER_PROTO])
        port = None
        if proto in ("tcp", "udp"):
            port = rng.choice(port_pool) if port_pool and rng.random() < 0.5 else rng.randint(1, 65535)
        src = str(IPv4Address(int(src_net.network_address) + rng.randrange(src_net.num_addresses)))
        dst = str(IPv4Address(int(dst_net.network_address) + rng.randrange(dst_net.num_addresses)))
        yield Flow(src, dst, proto, port)
