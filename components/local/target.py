"""The `local` target's pure hooks for the registry (components.targets).

The local target needs no section of its own: its layout (namespaces, links,
daemons) depends on the stack's name and is made from the plan when the stack
builds (`components.local.build.build`). What it checks first: the secret
config keys its BGP sessions need, and whether the fabric fits the local
address pools.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.local.layout import attachment_links_needed, attachment_pool_capacity
from components.plan_models import Plan
from components.spec import FabricSpec


def required_secrets(plan: Plan) -> list[str]:
    """The secret config keys the local BGP sessions need: the DC routers' and the circuits' MD5 keys, in order."""
    keys = [c.bgp.md5_secret for c in plan.connectors if c.bgp is not None] + [c.md5_secret for c in plan.circuits]
    return list(dict.fromkeys(keys))


def problems(spec: FabricSpec, plan: Plan, section: None, options: None, secrets: Mapping[str, Any]) -> list[str]:
    """Missing secret config keys, and a fabric too large for the local attachment pool."""
    out = [f"secret config key {key} is not set (pulumi config set --secret transit:{key} ...)"
           for key in required_secrets(plan) if key not in secrets]
    need, capacity = attachment_links_needed(spec, plan), attachment_pool_capacity()
    if need > capacity:
        out.append(
            f"the local target holds at most {capacity} attachment links (native networks plus circuit attachments, "
            f"one /31 each from the last /24 of underlay.backbone_cidr); this fabric needs {need}: "
            "build fewer native networks or circuit attachments locally, or build it on a cloud target"
        )
    return out
