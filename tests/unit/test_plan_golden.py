"""Golden files: each example fabric paired with its plan JSON (with every target's section, as `transit plan --json` prints it).

After a deliberate plan change, regenerate with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_plan_golden.py` and review the diff.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from components.loader import load_spec
from components.targets import plan_fabric
from spec_helpers import EXAMPLES, FABRICS

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", EXAMPLES)
def test_plan_matches_golden(name: str) -> None:
    plan = json.loads(plan_fabric(load_spec(FABRICS / f"{name}.yaml")).model_dump_json())
    golden = GOLDEN / f"{name}.plan.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")
    assert golden.exists(), f"no golden for {name}; run with UPDATE_GOLDEN=1 and review it"
    assert plan == json.loads(golden.read_text())


def test_every_golden_has_its_fabric() -> None:
    assert sorted(p.name.removesuffix(".plan.json") for p in GOLDEN.glob("*.plan.json")) == EXAMPLES
