"""The `local` target's builder for the registry (components.targets).

`build` adds one LocalFabric under the Fabric component and returns its
hand-off outputs under the key `local` (what `transit local-check` reads).
What stops a local build is checked first, in `components.local.target`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pulumi

from components.local.fabric import LocalFabric, LocalFabricArgs

if TYPE_CHECKING:
    from components.targets import BuildParent


def build(parent: BuildParent, section: None, options: None, secrets: Mapping[str, Any]) -> dict[str, Any]:
    """Create the fabric in network namespaces; namespace names carry `<fabric>-<stack>`."""
    local = LocalFabric(
        f"{parent.resource_name}-local",
        LocalFabricArgs(spec=parent.spec, secrets=secrets, stack=parent.environment, plan=parent.plan),
        pulumi.ResourceOptions(parent=parent),  # type: ignore[arg-type]
    )
    return {"local": local.outputs}
