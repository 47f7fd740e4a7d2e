"""Preview builds the same resources as an update: nothing is created inside `apply`.

During a preview, outputs of resources not yet created are unknown and
`apply` callbacks do not run; a resource created inside one would exist in an
update and be missing from the preview. So equal resource sets prove the rule.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _resources(fabric: str, mode: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("preview_program.py")), str(ROOT / "stacks" / "fabrics" / f"{fabric}.yaml"), mode],
        check=True, capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("fabric", ["seed000_aws_azure", "seed004_dx_er_cloud_router"])
def test_preview_and_update_build_the_same_resources(fabric: str) -> None:
    preview, update = _resources(fabric, "preview"), _resources(fabric, "update")
    assert len(update) > 50
    assert preview == update
