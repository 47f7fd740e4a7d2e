"""`transit ca create`: the pair a stack's config holds, the key written private and never printed."""
from __future__ import annotations

import stat
from pathlib import Path

from typer.testing import CliRunner

from components.fabric_ca import cert_problems
from transit_cli.main import app

runner = CliRunner()


def test_creates_a_ca_pair_with_a_private_key_it_never_prints_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ca", "create", "acme", "--out", str(tmp_path / "ca")])
    assert result.exit_code == 0, result.output
    key = (tmp_path / "ca" / "ca.key").read_text()
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in result.output and key.strip() not in result.output
    assert "--secret transit:fabricCaKey" in result.output
    assert cert_problems((tmp_path / "ca" / "ca.pem").read_text()) == []
    again = runner.invoke(app, ["ca", "create", "acme", "--out", str(tmp_path / "ca")])
    assert again.exit_code == 1 and (tmp_path / "ca" / "ca.key").read_text() == key
