"""The segmentation policy's meaning, as pure functions: the reference evaluator.

Every enforcement point is compiled from the policy (cloud security rules,
the data plane's nftables filter table); each is tested against `evaluate`
here, so they can never disagree about what a rule means. It resolves the
spec's names on its own rather than through `segmentation.resolve`, so a slip
in the shared resolver shows up as a disagreement instead of being copied.
`INTENT` is the reference as a segmentation target (`segmentation.protocol`).

Semantics (docs/spec.md, "Policy semantics"):
- A flow is (source address, destination address, protocol, destination port),
  seen as the first packet of a connection; replies of a permitted connection
  are permitted (every enforcement point is stateful).
- Rules are evaluated in order; the first rule whose from, to, proto and ports
  all match decides; when none matches, `policy.default` (deny) decides.
- An endpoint is a network name (its cidrs), a group name (its CIDRs plus the
  cidrs of the networks it names) or `any` (every cidr of every onboarded
  network: the fabric never carries other traffic, so `any` never means the
  internet).
- proto `any` matches every protocol; tcp/udp rules without ports match every
  port; ports are single ports or inclusive `lo-hi` ranges of the destination
  port.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from components.segmentation.protocol import Context, Evaluator, Flow
from components.segmentation.resolve import ResolvedRule
from components.spec import FabricSpec, Rule
from components.spec_types import parse_address, parse_port_range

Verdict = Literal["permit", "deny"]
IPv4 = ipaddress.IPv4Address
Networks = list[ipaddress.IPv4Network]


class IntentRule(BaseModel):
    """A rule with its endpoints resolved to CIDRs and its ports to merged ranges."""

    model_config = ConfigDict(frozen=True)

    name: str
    src: list[str]
    dst: list[str]
    proto: Literal["tcp", "udp", "icmp", "any"]
    ports: list[tuple[int, int]] | None
    action: Verdict


class IntentPolicy(BaseModel):
    """The ordered, resolved rules and the default: what every compiler compiles."""

    model_config = ConfigDict(frozen=True)

    rules: list[IntentRule]
    default: Verdict


class TestResult(BaseModel):
    """The outcome of one `policy.tests` entry against the intent."""

    model_config = ConfigDict(frozen=True)

    index: int
    src_ip: str
    dst_ip: str
    proto: str
    port: int | None
    expect: Verdict
    got: Verdict
    rule: str | None

    @property
    def passed(self) -> bool:
        return self.got == self.expect


def resolve_endpoint(spec: FabricSpec, endpoint: str) -> Networks:
    """The CIDRs an endpoint stands for, collapsed and sorted.

    Accepts `any`, a network name, a group name, or (as in policy tests) one
    IPv4 address, which becomes a /32.
    """
    networks = {n.name: n for n in spec.networks}
    if endpoint == "any":
        cidrs = [c for n in spec.networks for c in n.cidrs]
    elif endpoint in networks:
        cidrs = list(networks[endpoint].cidrs)
    elif endpoint in spec.groups:
        cidrs = []
        for member in spec.groups[endpoint]:
            if member in networks:
                cidrs += networks[member].cidrs
            else:
                cidrs.append(ipaddress.IPv4Network(member))
    else:
        try:
            cidrs = [ipaddress.IPv4Network(parse_address(endpoint))]
        except ValueError:
            raise KeyError(f"unknown endpoint '{endpoint}'") from None
    return list(ipaddress.collapse_addresses(cidrs))


def port_ranges(rule: Rule) -> list[tuple[int, int]] | None:
    """A rule's ports as sorted, merged inclusive ranges; None means every port."""
    if rule.ports is None:
        return None
    ranges = sorted(parse_port_range(p) for p in rule.ports)
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def compile_intent(spec: FabricSpec) -> IntentPolicy:
    """Resolve every rule of the spec's policy, keeping the order."""
    return IntentPolicy(
        rules=[
            IntentRule(
                name=r.name,
                src=[str(c) for c in resolve_endpoint(spec, r.from_)],
                dst=[str(c) for c in resolve_endpoint(spec, r.to)],
                proto=r.proto,
                ports=port_ranges(r),
                action=r.action,
            )
            for r in spec.policy.rules
        ],
        default=spec.policy.default,
    )


def _matches(rule: IntentRule, src: IPv4, dst: IPv4, proto: str, port: int | None) -> bool:
    if rule.proto != "any" and rule.proto != proto:
        return False
    if rule.ports is not None and (port is None or not any(lo <= port <= hi for lo, hi in rule.ports)):
        return False
    return any(src in ipaddress.IPv4Network(c) for c in rule.src) and any(
        dst in ipaddress.IPv4Network(c) for c in rule.dst
    )


def evaluate(
    policy: IntentPolicy | FabricSpec, src_ip: str | IPv4, dst_ip: str | IPv4, proto: str, port: int | None
) -> tuple[Verdict, str | None]:
    """The verdict for one flow and the name of the deciding rule (None: the default decided)."""
    intent = compile_intent(policy) if isinstance(policy, FabricSpec) else policy
    src, dst = ipaddress.IPv4Address(src_ip), ipaddress.IPv4Address(dst_ip)
    for rule in intent.rules:
        if _matches(rule, src, dst, proto, port):
            return rule.action, rule.name
    return intent.default, None


def sample_address(spec: FabricSpec, endpoint: str) -> IPv4:
    """The address a policy test uses for an endpoint: the first usable host of its lowest CIDR."""
    first = resolve_endpoint(spec, endpoint)[0]
    return first.network_address if first.prefixlen >= 31 else first.network_address + 1


def run_tests(spec: FabricSpec) -> list[TestResult]:
    """Evaluate every `policy.tests` entry against the intent."""
    intent = compile_intent(spec)
    results = []
    for i, test in enumerate(spec.policy.tests):
        src, dst = sample_address(spec, test.from_), sample_address(spec, test.to)
        got, rule = evaluate(intent, src, dst, test.proto, test.port)
        results.append(
            TestResult(
                index=i, src_ip=str(src), dst_ip=str(dst), proto=test.proto, port=test.port,
                expect=test.expect, got=got, rule=rule,
            )
        )
    return results


class Intent:
    """The reference as a target: the spec's ordered rules, first match decides."""

    name = "intent"

    def compile(self, rules: Sequence[ResolvedRule], context: Context) -> IntentPolicy:
        """The policy resolved by this module alone (`rules` unused: the reference does not trust the shared resolver)."""
        return compile_intent(context.spec)

    def evaluator(self, native: IntentPolicy) -> Evaluator:
        def decide(flow: Flow) -> tuple[str, str]:
            action, rule = evaluate(native, flow.src, flow.dst, flow.proto, flow.port)
            return action, rule or "default"

        return decide


INTENT = Intent()
