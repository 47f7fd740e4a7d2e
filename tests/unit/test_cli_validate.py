"""`transit validate` and `transit plan` through the real typer app."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spec_helpers import EXAMPLES, FABRICS
from transit_cli.main import app

runner = CliRunner()

BAD = """\
name: acme
edges:
  - {name: aws-use1, cloud: aws, region: us-east-1, cidr: 10.250.37.0/24, colour: blue}
networks:
  - {name: aws-app, cloud: aws, region: us-east-1, cidrs: [10.30.40.0/24], attach: connector}
circuits:
  - name: dx
    provider: aws-direct-connect
    location: EqFA5
    bandwidth_mbps: 60
    vlan: 101
    bgp: {customer_asn: 65000, peer_asn: 64512, peering: [10.0.0.0/31, 10.0.0.4/31], md5_secret: dxMd5}
    attaches: [aws-app]
"""


@pytest.mark.parametrize("name", EXAMPLES)
def test_validate_accepts_examples(name: str) -> None:
    result = runner.invoke(app, ["validate", str(FABRICS / f"{name}.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid fabric" in result.output


def test_validate_prints_one_line_per_problem_starting_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line]
    assert [line.split(": ", 1)[0] for line in lines] == [
        "circuits[0].bandwidth_mbps",
        "circuits[0].bgp.peering",
        "edges[0].colour",
    ]
    assert "unknown key" in lines[2]


def test_validate_reports_yaml_syntax_with_a_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: acme\nedges: [\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{path}:3:")


def test_validate_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "cannot read" in result.stdout


def test_plan_json_is_the_plan(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "--json", str(FABRICS / "architecture_example.yaml")])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    golden = json.loads((Path(__file__).parent / "golden" / "architecture_example.plan.json").read_text())
    assert plan == golden


def test_plan_table_shows_each_cloud_and_region() -> None:
    result = runner.invoke(app, ["plan", str(FABRICS / "seed004_dx_er_cloud_router.yaml")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("aws eu-central-1", "azure northeurope", "aws-euc1", "az-vnet-attach", "10.0.0.13 / 10.0.0.14",
                 "dx-er-cloud-router-cloud-router"):
        assert text in result.stdout


def test_plan_refuses_an_invalid_spec(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 1
    assert "circuits[0].bgp.peering" in result.stdout


def test_console_script_exit_codes(tmp_path: Path) -> None:
    """The installed `transit` entry point, as a user runs it."""
    transit = Path(sys.executable).with_name("transit")
    ok = subprocess.run([transit, "validate", FABRICS / "seed000_aws_azure.yaml"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    bad = subprocess.run([transit, "validate", path], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[0].startswith("circuits[0].bandwidth_mbps: ")
