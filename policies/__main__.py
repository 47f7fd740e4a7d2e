"""The pack's entry point: builds the PolicyPack and serves it (never import this in tests).

The validators live in `components.checks.crossguard`, so tests exercise them
without the gRPC server `PolicyPack` starts here.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from components.checks.crossguard import policies  # noqa: E402

PolicyPack("multicloud-transit", policies(), EnforcementLevel.ADVISORY)
