"""The Fabric component: a validated spec in, every cloud's components out.

`Fabric` builds the plan once (with every target's section) and hands each
selected target its section, options and secrets through the registry
(components.targets); it names no cloud. A cloud the spec uses but no builder
supports is an error that says where its support goes, raised before anything
is created; nothing is skipped unless the caller names the clouds to build.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi

from components.spec import FabricSpec
from components.targets import plan_fabric, select, spec_clouds

GC_THRESHOLD = (50_000, 20, 20)
"""Garbage-collector thresholds for a program that builds a large fabric.

A fabric of hundreds of networks allocates millions of small, long-lived
objects (Outputs, futures); with CPython's default gen-0 threshold (700) the
run spends about half its time in the cyclic collector (bench/aws_scale.py
measures both). Stack programs set it with `gc.set_threshold(*GC_THRESHOLD)`.
"""


@dataclass(frozen=True, kw_only=True)
class FabricArgs:
    """Inputs of a whole fabric."""

    spec: FabricSpec
    """The validated fabric spec (components.load_spec / validate_spec)."""
    environment: str
    """Environment (stack) name, tagged on every resource, e.g. dev."""
    secrets: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    """Secret config key name -> its Pulumi secret Output (MD5 keys). Defaults to none."""
    target: Literal["cloud", "local"] = "cloud"
    """Where the fabric runs. Valid values: cloud, local. Defaults to cloud."""
    clouds: list[str] | None = None
    """Clouds to build (target cloud). Defaults to every cloud the spec uses."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Each target's options by target name (e.g. {"aws": AwsOptions(...)}; components.targets.read_options
    reads them all from stack config). Defaults to each target's own defaults."""


def _external(spec: FabricSpec) -> list[dict[str, str]]:
    """What a cloud stack cannot create, said out loud: on-prem connectors and the NaaS cloud router."""
    out = [
        {"name": f"{n.name}-connector", "kind": "onprem-connector", "how": "run the Packer QCOW2/VMDK image at the site"}
        for n in spec.networks
        if n.cloud == "onprem"
    ]
    if spec.cloud_router is not None:
        out.append({"name": f"{spec.name}-cloud-router", "kind": "cloud-router", "how": "ordered from the NaaS provider (seed 004)"})
    return out


class Fabric(pulumi.ComponentResource):
    """A whole multicloud transit fabric, built from its spec for one environment."""

    def __init__(self, name: str, args: FabricArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        selected = select(args.spec, args.target, args.clouds)
        plan = plan_fabric(args.spec)
        options = {t.name: args.options[t.name] if t.name in args.options else t.default_options() for t in selected}
        problems = [
            p for t in selected for p in t.problems(args.spec, plan, plan.sections.get(t.name), options[t.name], args.secrets)
        ]
        if problems:
            raise ValueError(f"fabric {args.spec.name}: " + "; ".join(problems))
        # The spec as an input (names of secrets only, never values): the CrossGuard
        # pack runs the spec rules on it (components/checks/crossguard.py).
        super().__init__("transit:index:Fabric", name, {"spec": args.spec.model_dump(mode="json", by_alias=True, exclude_none=True)}, opts)
        self.resource_name = name
        self.spec = args.spec
        self.plan = plan
        self.environment = args.environment
        outputs: dict[str, Any] = {}
        for t in selected:
            outputs.update(t.builder()(self, plan.sections.get(t.name), options[t.name], args.secrets))
        if args.target == "cloud":
            outputs["not_built"] = [c for c in spec_clouds(args.spec) if c not in {t.name for t in selected}]
            outputs["external"] = _external(args.spec)
        self.outputs = outputs
        self.register_outputs(
            {
                "fabric": args.spec.name,
                "environment": args.environment,
                "target": args.target,
                "edges": [e.name for e in plan.edges],
                "networks": [n.name for n in args.spec.networks],
                **outputs,
            }
        )
