"""Shared fixtures for end-to-end tests that drive the real Pulumi CLI.

Why: every e2e test needs the same offline, isolated CLI environment (the
binaries built by tools/build-pulumi.sh, a file backend and a PULUMI_HOME of
its own), so stacks and plugins never leak between tests or engineers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
PULUMI = TOOLS_BIN / "pulumi"
VENV = REPO_ROOT / ".venv"


@pytest.fixture
def pulumi_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running `pulumi` offline against a state dir in tmp_path.

    Ambient PULUMI_* variables are dropped so a developer's login, backend or
    plugin settings cannot change what a test sees. Skips when the CLI has not
    been built.
    """
    if not PULUMI.exists():
        pytest.skip(f"{PULUMI} is missing: run tools/build-pulumi.sh to build the Pulumi CLI")
    state = tmp_path / "state"
    home = tmp_path / "pulumi-home"
    state.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update(
        PATH=f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        PULUMI_BACKEND_URL=f"file://{state}",
        PULUMI_CONFIG_PASSPHRASE="x",
        PULUMI_SKIP_UPDATE_CHECK="true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
        PULUMI_HOME=str(home),
    )
    return env
