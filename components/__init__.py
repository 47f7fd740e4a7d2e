"""The multicloud-transit IaC library.

`load_spec`, `FabricSpec`, `SpecError` and `build_plan` are pure and import
no Pulumi; the Pulumi components (`Fabric`, and the `aws`/`local`
subpackages) load lazily on first access, so `transit validate` and `plan`
stay fast and work without a cloud SDK.
"""
from __future__ import annotations

import importlib
from typing import Any

from components.loader import load_spec
from components.plan import build_plan
from components.plan_models import Plan
from components.spec import FabricSpec, validate_spec
from components.spec_types import Problem, SpecError

# Only the pure names: `from components import *` must not import Pulumi.
__all__ = ["FabricSpec", "Plan", "Problem", "SpecError", "build_plan", "load_spec", "validate_spec"]

_LAZY_ATTRS = {"Fabric": "components.fabric"}
_LAZY_MODULES = {"aws", "azure", "gcp", "local"}


def __getattr__(name: str) -> Any:
    """Import Pulumi-backed parts only when they are asked for."""
    if name in _LAZY_ATTRS:
        return getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"components.{name}")
    raise AttributeError(f"module 'components' has no attribute {name!r}")
