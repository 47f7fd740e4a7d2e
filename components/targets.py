"""The target registry: every place a fabric can be built plugs in the same way.

A target is a cloud (aws, azure, gcp) or the `local` machine. Each provides:

- `section(spec, plan)`: its pure part of the plan (None when the spec gives it
  nothing to do), computed once by `plan_fabric` into `Plan.sections[name]`;
- `options(config)`: what it needs beyond the spec, read from stack config;
- `problems(spec, plan, section, options, secrets)`: what stops a build,
  found before any resource exists;
- `build(parent, section, options, secrets)`: its Pulumi components under the
  Fabric (named as "module:function" and imported only when a stack builds
  it, so `transit plan` and `check` never load Pulumi); None while the
  target has no builder, with `home` saying where it goes;
- `evaluator(section)`: its enforcement point for `transit check`, read from
  the section through the segmentation protocol (components.segmentation);
- `tables(section)`: what `transit plan` prints for it.

To add a target, write `components/<name>/target.py` with those hooks (pure)
and `components/<name>/build.py` with `build`, then add one `Target` below.
Only this module, never the plan or the Fabric, names a target. Never imports
Pulumi.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from components.aws import planning as aws_planning
from components.aws import target as aws_target
from components.aws.options import AwsOptions
from components.azure import target as azure_target
from components.gcp import target as gcp_target
from components.local import target as local_target
from components.plan import build_plan
from components.plan_models import Plan
from components.segmentation.protocol import Point
from components.spec import FabricSpec
from components.spec_providers import PROVIDER_CLOUD

PlanTable = tuple[str, list[str], list[list[str]]]
"""(title, column names, rows) of one table `transit plan` prints."""


class BuildParent(Protocol):
    """What a target's `build` gets as its parent: the Fabric component, with the spec, plan and stack name."""

    resource_name: str
    spec: FabricSpec
    plan: Plan
    environment: str


@dataclass(frozen=True)
class Target:
    """One place a fabric can be built, and the hooks it plugs in with (see the module docstring)."""

    name: str
    kind: Literal["cloud", "local"]
    section: Callable[[FabricSpec, Plan], BaseModel | None]
    problems: Callable[[FabricSpec, Plan, Any, Any, Mapping[str, Any]], list[str]]
    options: Callable[[Any], Any] = lambda config: None
    default_options: Callable[[], Any] = lambda: None
    build: str | None = None
    home: str = ""
    evaluator: Callable[[Any], Point] | None = None
    tables: Callable[[Any], list[PlanTable]] = lambda section: []

    def builder(self) -> Callable[[BuildParent, Any, Any, Mapping[str, Any]], dict[str, Any]]:
        """The target's `build`, imported now; NotImplementedError naming where it goes when there is none."""
        if self.build is None:
            raise NotImplementedError(f"target {self.name} has no builder yet; support goes in {self.home}")
        module, function = self.build.split(":")
        return getattr(importlib.import_module(module), function)


def _no_problems(spec: FabricSpec, plan: Plan, section: Any, options: Any, secrets: Mapping[str, Any]) -> list[str]:
    return []


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            name="aws", kind="cloud", section=aws_planning.aws_section, problems=aws_target.problems,
            options=AwsOptions.from_config, default_options=AwsOptions, build="components.aws.build:build",
            evaluator=aws_target.evaluator, tables=aws_target.tables,
        ),
        Target(
            name="azure", kind="cloud", section=azure_target.section, problems=_no_problems,
            home="components/azure/build.py (register it in components.targets.TARGETS)",
            evaluator=azure_target.evaluator,
        ),
        Target(
            name="gcp", kind="cloud", section=gcp_target.section, problems=_no_problems,
            home="components/gcp/build.py (register it in components.targets.TARGETS)",
            evaluator=gcp_target.evaluator,
        ),
        Target(
            name="local", kind="local", section=lambda spec, plan: None, problems=local_target.problems,
            build="components.local.build:build",
        ),
    )
}
"""Every target, by name. Cloud targets are named like the spec's `cloud:` values."""


def spec_clouds(spec: FabricSpec) -> list[str]:
    """The clouds a spec uses, in first-use order (edges, networks, circuits); on-prem is not a cloud."""
    used = [e.cloud for e in spec.edges] + [n.cloud for n in spec.networks] + [PROVIDER_CLOUD[c.provider] for c in spec.circuits]
    return [c for c in dict.fromkeys(used) if c != "onprem"]


def plan_fabric(spec: FabricSpec) -> Plan:
    """The plan with every target's section, each computed once (what the Fabric, `plan` and `check` use)."""
    plan = build_plan(spec)
    sections = {name: section for name, t in TARGETS.items() if (section := t.section(spec, plan)) is not None}
    return plan.model_copy(update={"sections": sections})


def select(spec: FabricSpec, target: str, clouds: list[str] | None = None) -> list[Target]:
    """The targets one stack builds: `local`, or (`cloud`) each cloud the spec uses, or those of `clouds`.

    Unknown clouds, and clouds without a builder, raise before anything is created,
    naming where support goes and how to build only the supported ones.
    """
    if target == "local":
        return [TARGETS["local"]]
    if target != "cloud":
        raise NotImplementedError(f"target {target!r} is not a target; valid values: cloud, local")
    used = spec_clouds(spec)
    wanted = used if clouds is None else list(clouds)
    unknown = [c for c in wanted if c not in used]
    if unknown:
        raise ValueError(f"clouds {unknown} are not used by fabric {spec.name} (it uses {used})")
    unsupported = [c for c in wanted if TARGETS[c].build is None]
    if unsupported:
        where = "; ".join(f"{c}: not built yet, support goes in {TARGETS[c].home}" for c in unsupported)
        raise NotImplementedError(
            f"fabric {spec.name} uses cloud(s) {unsupported} that have no builder ({where}). "
            f"To build only the supported ones, pass clouds={[c for c in wanted if c not in unsupported]}."
        )
    return [TARGETS[c] for c in wanted]


def read_options(config: Any) -> dict[str, Any]:
    """Every target's options from stack config (`transit:<target>*` keys), by target name."""
    return {name: t.options(config) for name, t in TARGETS.items()}
