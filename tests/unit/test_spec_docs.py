"""docs/spec.md documents every field of every spec model and every provider bandwidth."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from components import spec
from components.spec_providers import BANDWIDTHS_MBPS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "spec.md").read_text()
MODELS = [spec.Edge, spec.Network, spec.OnPremBgp, spec.Circuit, spec.CircuitBgp, spec.CloudRouter, spec.Rule,
          spec.PolicyTest, spec.Policy, spec.Underlay, spec.FabricSpec]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_is_documented(model: type[BaseModel]) -> None:
    missing = [f.alias or name for name, f in model.model_fields.items() if f"`{f.alias or name}`" not in DOC
               and f"`bgp.{f.alias or name}`" not in DOC]
    assert missing == []


@pytest.mark.parametrize(("provider", "connection"), sorted(BANDWIDTHS_MBPS))
def test_bandwidth_tables_match_the_docs(provider: str, connection: str) -> None:
    row = next(line for line in DOC.splitlines() if line.startswith(f"| {provider} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    cell = cells[1] if connection == "hosted" else cells[2]
    listed = cell.split(" (")[0]
    assert listed == ", ".join(str(b) for b in BANDWIDTHS_MBPS[(provider, connection)])
