"""Large fabrics: `transit check` holds at 1,000 networks; the local target names its limit instead of a traceback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bench.aws_scale import fabric_spec
from components.local.layout import attachment_pool_capacity, build_layout
from components.local.target import problems
from components.plan import build_plan
from components.spec import validate_spec
from transit_cli.main import app


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_transit_check_on_a_1000_network_fabric_finishes_without_a_traceback(tmp_path: Path) -> None:
    document = fabric_spec(1000)
    path = tmp_path / "scale.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = CliRunner().invoke(app, ["check", str(path), "--json", "--samples", "200"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    report = json.loads(result.stdout)
    assert report["passed"] and "aws:security-groups" in report["enforcement_points"]
    connectors = sum(n["attach"] == "connector" for n in document["networks"])
    assert sum(p.startswith("dataplane:connector-") for p in report["enforcement_points"]) == connectors == 668


def test_a_fabric_too_large_for_the_local_target_is_refused_naming_the_limit() -> None:
    spec = validate_spec(fabric_spec(400))  # every third network native: 132 attachment links
    plan = build_plan(spec)
    [problem] = problems(spec, plan, None, None, {})
    assert f"at most {attachment_pool_capacity()} attachment links" in problem and "needs 132" in problem
    with pytest.raises(ValueError, match=r"holds 128 links"):
        build_layout(spec, "big", plan)


def test_a_fabric_that_fits_the_local_target_has_no_problems() -> None:
    spec = validate_spec(fabric_spec(300))  # 100 native networks
    assert problems(spec, build_plan(spec), None, None, {}) == []
