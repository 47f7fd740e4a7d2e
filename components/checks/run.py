"""One `transit check` run: rules with their levels, assertions, parity; one report.

Pure and fast (no Pulumi, no cloud): what the CLI prints and what CI gates on.
A mandatory violation, a failing assertion or a disagreeing enforcement point
makes the report fail; advisory violations are reported and let it pass.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from components.checks.config import RuleSettings
from components.checks.points import build_points
from components.checks.reachability import Finding, prove
from components.checks.rules import REACHABILITY_RULE, RULES, Context
from components.checks.violation import Level, Violation
from components.segmentation.protocol import Point
from components.spec import FabricSpec
from components.targets import plan_fabric


@dataclass(frozen=True)
class LeveledViolation:
    """A violation with the enforcement level it has in this environment."""

    violation: Violation
    level: Level


@dataclass
class Report:
    """Everything one check found, and how long it took.

    Findings (failed assertions, disagreeing points) carry the level of the
    `policy-tests-hold` rule: mandatory in every shipped config.
    """

    violations: list[LeveledViolation] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    findings_level: Level = "mandatory"
    points: list[str] = field(default_factory=list)
    tests: int = 0
    flows_sampled: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """True when CI must stop: a mandatory violation or a mandatory reachability finding."""
        return (bool(self.findings) and self.findings_level == "mandatory") or any(v.level == "mandatory" for v in self.violations)

    def as_json(self) -> dict[str, Any]:
        """The report for machines (`transit check --json`)."""
        return {
            "passed": not self.failed,
            "violations": [
                {"rule": v.violation.rule, "path": v.violation.path, "message": v.violation.message, "level": v.level}
                for v in self.violations
            ],
            "findings": [
                {"rule": REACHABILITY_RULE, "kind": f.kind, "path": f.path, "message": f.message, "level": self.findings_level,
                 "flow": {"src": f.flow.src, "dst": f.flow.dst, "proto": f.flow.proto, "port": f.flow.port},
                 "points": {name: {"verdict": d[0], "by": d[1]} for name, d in f.decisions.items()}}
                for f in self.findings
            ],
            "enforcement_points": self.points,
            "tests": self.tests,
            "flows_sampled": self.flows_sampled,
            "seconds": round(self.seconds, 3),
        }


def run_rules(ctx: Context, settings: dict[str, RuleSettings], skip: frozenset[str] = frozenset()) -> list[LeveledViolation]:
    """Every enabled spec rule but `skip`, with its level."""
    out: list[LeveledViolation] = []
    for rule in RULES:
        setting = settings[rule.name]
        if rule.spec is None or setting.level == "disabled" or rule.name in skip:
            continue
        out.extend(LeveledViolation(v, setting.level) for v in rule.spec(ctx, setting.options))
    return out


def run_check(
    spec: FabricSpec,
    settings: dict[str, RuleSettings],
    *,
    stack_config: dict[str, Any] | None = None,
    samples: int = 2000,
    seed: int = 0,
    points: list[Point] | None = None,
) -> Report:
    """Rules, assertions and parity for one spec; `points` overrides the compiled points (tests).

    The reachability rule runs here with the CLI's `samples` and `seed` and its
    findings keep their flows, instead of running as a plain rule.
    """
    started = time.perf_counter()
    report = Report()
    plan = plan_fabric(spec)
    report.violations = run_rules(Context(spec, plan, stack_config), settings, skip=frozenset({REACHABILITY_RULE}))
    points = build_points(spec, plan) if points is None else points
    report.points = [p.name for p in points]
    report.tests = len(spec.policy.tests)
    report.findings_level = settings[REACHABILITY_RULE].level
    if report.findings_level != "disabled":
        report.findings, report.flows_sampled = prove(spec, points, samples, seed)
    report.seconds = time.perf_counter() - started
    return report
