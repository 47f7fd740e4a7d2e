"""The CrossGuard pack with the real CLI: `pulumi preview --policy-pack policies` on local fabrics.

Why: unit tests call the validators directly; only the engine proves that the
pack loads through our language host, receives the preview's resources (here
the agents LocalFabric would start, each carrying its filter in agent.json),
applies the per-environment levels from policies/config/<env>.json, and fails
the preview on a mandatory violation. A preview creates nothing, so there is
nothing on the machine to clean up beyond the scratch stack itself.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components.local.scratch_stack import ScratchStack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "policies"
FABRIC = REPO / "stacks" / "fabrics" / "seed000_aws_azure.yaml"
OPEN_SSH = {"name": "open-ssh", "from": "any", "to": "az-app", "proto": "tcp", "ports": [22], "action": "permit"}


@pytest.fixture
def scratch(tmp_path: Path, pulumi_env: dict[str, str]) -> Iterator:
    """Make a scratch stack for a fabric document; always removed afterwards."""
    made: list[ScratchStack] = []

    def make(document: dict) -> ScratchStack:
        fabric = tmp_path / "fabric.yaml"
        fabric.write_text(yaml.safe_dump(document, sort_keys=False))
        stack = ScratchStack(tmp_path / "project", pulumi_env)
        made.append(stack)
        stack.create(fabric)
        return stack

    yield make
    for stack in made:
        stack.remove()


def preview(stack: ScratchStack, env: str) -> subprocess.CompletedProcess[str]:
    return stack.pulumi("preview", "--color=never", "--policy-pack", str(PACK),
                        "--policy-pack-config", str(PACK / "config" / f"{env}.json"), check=False)


def violating() -> dict:
    document = yaml.safe_load(FABRIC.read_text())
    document["policy"]["rules"].insert(0, OPEN_SSH)
    return document


def test_violating_fabric_fails_preview_in_prod(scratch) -> None:
    result = preview(scratch(violating()), "prod")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "[mandatory]  no-open-admin-ports" in output
    assert "rule 'open-ssh' permits every source to administrative port(s) 22" in output


def test_same_violation_is_advisory_in_dev(scratch) -> None:
    result = preview(scratch(violating()), "dev")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "[advisory]  no-open-admin-ports" in output


def test_compliant_fabric_passes_in_prod(scratch) -> None:
    result = preview(scratch(yaml.safe_load(FABRIC.read_text())), "prod")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "multicloud-transit" in output and "mandatory" not in output
