"""Golden files: the three-cloud test fabric -> Azure NSGs/ASGs and GCP firewall rules.

The compiled artefacts are what the Azure and GCP components will create, so a
change to them must be deliberate. After one, regenerate with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/checks/test_check_golden.py` and review the diff.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from checks_fabric import spec

from components.segmentation.azure_nsgs import compile_azure
from components.segmentation.gcp_firewall import compile_gcp

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(("name", "compile_"), [("azure_nsgs", compile_azure), ("gcp_firewall", compile_gcp)])
def test_compiled_rules_match_golden(name: str, compile_) -> None:  # type: ignore[no-untyped-def]
    actual = json.dumps(compile_(spec()).model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(actual)
    assert golden.exists(), f"no golden for {name}; run with UPDATE_GOLDEN=1 and review it"
    assert actual == golden.read_text()
