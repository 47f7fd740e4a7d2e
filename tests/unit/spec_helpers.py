"""Shared helpers for the spec and plan tests: example fabrics as dicts, problem lookups."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from components.spec import FabricSpec, validate_spec
from components.spec_types import Problem, SpecError

FABRICS = Path(__file__).resolve().parents[2] / "stacks" / "fabrics"
EXAMPLES = sorted(p.stem for p in FABRICS.glob("*.yaml"))


def example(name: str = "architecture_example") -> dict[str, Any]:
    """A fresh, mutable copy of an example fabric."""
    return copy.deepcopy(yaml.safe_load((FABRICS / f"{name}.yaml").read_text()))


def problems_of(data: dict[str, Any]) -> list[Problem]:
    """Every problem validate_spec reports; [] when valid."""
    try:
        validate_spec(data)
    except SpecError as exc:
        return exc.problems
    return []


def spec_of(data: dict[str, Any]) -> FabricSpec:
    return validate_spec(data)
