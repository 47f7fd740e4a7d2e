"""The Fabric component: a validated spec in, every cloud's components out.

`Fabric` builds the plan once and hands it to a builder per target and, for
the `cloud` target, per cloud, through lookup tables (never `if cloud == ...`).
A cloud the spec uses but no builder supports is an error that says where its
support goes; nothing is skipped unless the caller names the clouds to build.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi

from components.aws.options import AwsOptions
from components.plan import build_plan
from components.plan_models import Plan
from components.spec import FabricSpec
from components.spec_providers import PROVIDER_CLOUD

GC_THRESHOLD = (50_000, 20, 20)
"""Garbage-collector thresholds for a program that builds a large fabric.

A fabric of hundreds of networks allocates millions of small, long-lived
objects (Outputs, futures); with CPython's default gen-0 threshold (700) the
run spends about half its time in the cyclic collector (bench/aws_scale.py
measures both). Stack programs set it with `gc.set_threshold(*GC_THRESHOLD)`.
"""

CLOUD_BUILDERS: dict[str, str] = {
    "aws": "components.aws.build",
}
"""Cloud -> module with `check(args, plan) -> list[str]` and `build(fabric, args, plan) -> dict` (outputs)."""

CLOUD_HOMES: dict[str, str] = {
    "azure": "components/azure/build.py (register it in components.fabric.CLOUD_BUILDERS)",
    "gcp": "components/gcp/build.py (register it in components.fabric.CLOUD_BUILDERS)",
}
"""Where support for a cloud without a builder would go, for the error message."""

TARGET_BUILDERS: dict[str, tuple[str, str]] = {
    "cloud": ("components.fabric:check_clouds", "components.fabric:build_clouds"),
    "local": ("components.local.build:check", "components.local.build:build"),
}
"""Target -> ("module:check", "module:build"): check(args, plan) -> problems; build(fabric, args, plan) -> outputs."""


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
    aws: AwsOptions | None = None
    """AWS options (image id, TGW ASN, existing VPCs, hosted dxcon ids). Defaults to AwsOptions()."""


def spec_clouds(spec: FabricSpec) -> list[str]:
    """The clouds a spec uses, in first-use order (edges, networks, circuits); on-prem is not a cloud."""
    used = [e.cloud for e in spec.edges] + [n.cloud for n in spec.networks] + [PROVIDER_CLOUD[c.provider] for c in spec.circuits]
    return [c for c in dict.fromkeys(used) if c != "onprem"]


def _load(path: str) -> Callable[..., Any]:
    module, function = path.split(":")
    return getattr(importlib.import_module(module), function)


def _wanted_clouds(args: FabricArgs) -> list[str]:
    """The clouds to build; unknown or unsupported ones raise, naming where support goes."""
    used = spec_clouds(args.spec)
    wanted = used if args.clouds is None else list(args.clouds)
    unknown = [c for c in wanted if c not in used]
    if unknown:
        raise ValueError(f"clouds {unknown} are not used by fabric {args.spec.name} (it uses {used})")
    unsupported = [c for c in wanted if c not in CLOUD_BUILDERS]
    if unsupported:
        where = "; ".join(f"{c}: not built yet, support goes in {CLOUD_HOMES.get(c, 'components/' + c + '/build.py')}" for c in unsupported)
        raise NotImplementedError(
            f"fabric {args.spec.name} uses cloud(s) {unsupported} that have no builder ({where}). "
            f"To build only the supported ones, pass clouds={[c for c in wanted if c in CLOUD_BUILDERS]}."
        )
    return wanted


def check_clouds(args: FabricArgs, plan: Plan) -> list[str]:
    """The `cloud` target's checks: the cloud list, then each cloud builder's own."""
    return [p for cloud in _wanted_clouds(args) for p in importlib.import_module(CLOUD_BUILDERS[cloud]).check(args, plan)]


def build_clouds(fabric: Fabric, args: FabricArgs, plan: Plan) -> dict[str, Any]:
    """The `cloud` target: each cloud's builder, and what this stack leaves to others."""
    wanted = _wanted_clouds(args)
    outputs: dict[str, Any] = {}
    for cloud in wanted:
        outputs.update(importlib.import_module(CLOUD_BUILDERS[cloud]).build(fabric, args, plan))
    outputs["not_built"] = [c for c in spec_clouds(args.spec) if c not in wanted]
    outputs["external"] = _external(args.spec)
    return outputs


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
        if args.target not in TARGET_BUILDERS:
            raise NotImplementedError(
                f"target {args.target!r} has no builder yet; register it in components.fabric.TARGET_BUILDERS "
                f"(available: {sorted(TARGET_BUILDERS)})"
            )
        plan = build_plan(args.spec)
        check_path, build_path = TARGET_BUILDERS[args.target]
        problems = _load(check_path)(args, plan)
        if problems:
            raise ValueError(f"fabric {args.spec.name}: " + "; ".join(problems))
        # The spec as an input (names of secrets only, never values): the CrossGuard
        # pack runs the spec rules on it (components/checks/crossguard.py).
        super().__init__("transit:index:Fabric", name, {"spec": args.spec.model_dump(mode="json", by_alias=True, exclude_none=True)}, opts)
        self.resource_name = name
        self.plan = plan
        outputs = dict(_load(build_path)(self, args, plan))
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
