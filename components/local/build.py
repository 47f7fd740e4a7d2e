"""The `local` target's entry points for `components.fabric.Fabric` (TARGET_BUILDERS).

`check` runs before anything is created; `build` adds one LocalFabric under the
Fabric component and returns its hand-off outputs under the key `local`
(what `transit local-check` reads).
"""
from __future__ import annotations

from typing import Any

import pulumi

from components.local.fabric import LocalFabric, LocalFabricArgs, required_secrets
from components.local.layout import build_layout, name_prefix
from components.plan_models import Plan


def check(args: Any, plan: Plan) -> list[str]:
    """Problems that stop a local build: secret config keys the BGP sessions need but the stack lacks."""
    layout = build_layout(args.spec, name_prefix(args.spec.name, args.environment), plan)
    return [f"secret config key {key} is not set (pulumi config set --secret transit:{key} ...)"
            for key in required_secrets(layout) if key not in args.secrets]


def build(fabric: pulumi.ComponentResource, args: Any, plan: Plan) -> dict[str, Any]:
    """Create the fabric in network namespaces; namespace names carry `<fabric>-<stack>`."""
    local = LocalFabric(
        f"{fabric.resource_name}-local",  # type: ignore[attr-defined]
        LocalFabricArgs(spec=args.spec, secrets=args.secrets, stack=args.environment, plan=plan),
        pulumi.ResourceOptions(parent=fabric),
    )
    return {"local": local.outputs}
