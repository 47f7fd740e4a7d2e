"""One protocol for every enforcement point: compile the resolved policy, then judge flows on what was compiled.

Each target enforces the same ordered policy in its own terms: AWS security
groups and prefix lists, Azure NSGs with ASGs, GCP firewall rules with tags,
an agent's nftables document. Each implements `SegmentationTarget`:

- `compile(rules, context)` turns the resolved rules into its native rules,
  or None when the fabric holds nothing it guards;
- `evaluator(native)` reads native rules once (compiled here, or read back
  from what was deployed) and returns a function that answers each `Flow` as
  the platform would, or None when the flow never crosses it.

`transit check` proves every target against the intent with one loop
(`compile_points`), and a new target plugs in by implementing the two
methods. Never imports Pulumi.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from components.segmentation.resolve import ResolvedRule, resolve_rules
from components.spec import FabricSpec
from dataplane.filter_model import proto_number

Verdict = Literal["permit", "deny"]
Decision = tuple[str, str]
"""(permit | deny, what decided: a rule, an NSG rule, a chain's counter)."""
Native = TypeVar("Native")
PORTED = ("tcp", "udp")


@dataclass(frozen=True)
class Flow:
    """One concrete flow, the first packet of a connection: the unit every check and every report speaks in.

    `proto` is tcp, udp, icmp or an IP protocol number as text ("47");
    `port` is the destination port (tcp and udp only).
    """

    src: str
    dst: str
    proto: str
    port: int | None

    @property
    def number(self) -> int:
        """The IP protocol number (tcp 6, udp 17, icmp 1)."""
        return proto_number(int(self.proto) if self.proto.isdigit() else self.proto)

    @property
    def service(self) -> str:
        """tcp, udp, icmp, or `other` for every other IP protocol (how the clouds' rules name them)."""
        return self.proto if self.proto in (*PORTED, "icmp") else "other"

    def __str__(self) -> str:
        proto = f"ip-proto {self.proto}" if self.proto.isdigit() else self.proto
        where = f"{proto}/{self.port}" if self.port is not None else proto
        return f"{self.src} -> {self.dst} {where}"


Evaluator = Callable[[Flow], Decision | None]


@dataclass(frozen=True)
class Context:
    """What a compiler reads besides the rules: the spec (networks, groups, edges, default) and the rules resolved once."""

    spec: FabricSpec
    rules: tuple[ResolvedRule, ...]

    @classmethod
    def of(cls, spec: FabricSpec) -> Context:
        return cls(spec, tuple(resolve_rules(spec)))

    def networks_of(self, cloud: str) -> list[str]:
        """Names of the onboarded networks in `cloud`: what that cloud's target guards."""
        return [n.name for n in self.spec.networks if n.cloud == cloud]


class SegmentationTarget(Protocol[Native]):
    """An enforcement point's compiler and evaluator."""

    name: str
    """The point's name in reports (`aws:security-groups`, `azure:nsgs`, `dataplane:<agent>`)."""

    def compile(self, rules: Sequence[ResolvedRule], context: Context) -> Native | None:
        """The native rules that enforce `rules`; None when the fabric has nothing this target guards."""
        ...

    def evaluator(self, native: Native) -> Evaluator:
        """Read `native` once; the function judges a flow (None: the flow does not cross this point)."""
        ...


@dataclass(frozen=True)
class Point:
    """An enforcement point: a name and a pure decision function (None: not on the flow's path)."""

    name: str
    decide: Evaluator


def point(target: SegmentationTarget[Native], native: Native) -> Point:
    """The point that judges flows on `native` as `target` would."""
    return Point(target.name, target.evaluator(native))


def compile_points(
    targets: Iterable[SegmentationTarget[Any]], context: Context, compiled: Mapping[str, object] | None = None
) -> list[Point]:
    """Compile every target from the same resolved rules; one point per target that guards something.

    `compiled` holds native rules already made elsewhere (the plan's), by
    target name: those targets are read, not compiled again.
    """
    compiled = compiled or {}
    points = []
    for target in targets:
        native = compiled[target.name] if target.name in compiled else target.compile(context.rules, context)
        if native is not None:
            points.append(point(target, native))
    return points


def evaluate(target: SegmentationTarget[Native], native: Native, flow: Flow) -> Decision | None:
    """One-off decision; build `target.evaluator(native)` once to judge many flows."""
    return target.evaluator(native)(flow)
