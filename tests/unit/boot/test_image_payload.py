"""What the image installs is enough and no more: the `agent` extra and the boot step's imports."""
from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_boot_step_and_the_agent_import_neither_components_nor_pulumi() -> None:
    code = (
        "import sys, dataplane.boot, dataplane.agent;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('components', 'pulumi', 'transit_cli'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_agent_extra_covers_every_third_party_import_of_the_data_plane() -> None:
    extra = {_name(r) for r in PROJECT["optional-dependencies"]["agent"]}
    owners = importlib.metadata.packages_distributions()
    imported: set[str] = set()
    for path in (ROOT / "dataplane").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"dataplane", "__future__"}
    missing = {module: owners.get(module) for module in third_party if not extra & {_name(d) for d in owners.get(module, [])}}
    assert missing == {}, f"add these distributions to the agent extra in pyproject.toml: {missing}"


def test_the_agent_extra_is_a_subset_of_the_distributions_dependencies() -> None:
    base = {_name(r): r for r in PROJECT["dependencies"]}
    for requirement in PROJECT["optional-dependencies"]["agent"]:
        assert base.get(_name(requirement)) == requirement, f"{requirement} differs from the dependencies list"
