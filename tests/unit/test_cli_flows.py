"""`transit flows`: the flow log as a table, filtered by verdict; garbage lines counted."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dataplane.flowlog import FlowLogWriter
from transit_cli.main import app


def _write(log: Path) -> None:
    writer = FlowLogWriter(log)
    for index, (verdict, rule, port) in enumerate([("permit", "app-to-db", 5432), ("deny", "no-ssh", 22), ("deny", None, 8080)]):
        writer.write({"ts": 1_790_000_000 + index, "role": "ingress", "src": "10.30.40.5", "sport": 40000 + index,
                      "dst": "172.18.40.10", "dport": port, "src_identity": "spiffe://acme/conn-aws-app",
                      "bytes_up": 2048 * index, "bytes_down": 10 * 1024 * 1024 if verdict == "permit" else 0,
                      "duration_s": 0.5, "verdict": verdict, "rule": rule, "path": "private", "rtt_ms": 0.31})
    writer.close()
    with open(log, "a") as handle:
        handle.write("garbage\n")


def test_flows_table_lists_every_flow(tmp_path: Path) -> None:
    log = tmp_path / "flows.jsonl"
    _write(log)
    result = CliRunner().invoke(app, ["flows", str(log)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "3 of 3 flows" in result.output
    assert "172.18.40.10:5432" in result.output and "10.0 MiB" in result.output
    assert "no-ssh" in result.output and "default" in result.output
    assert "skipped 1 line" in result.output


def test_flows_filtered_by_verdict(tmp_path: Path) -> None:
    log = tmp_path / "flows.jsonl"
    _write(log)
    result = CliRunner().invoke(app, ["flows", str(log), "--verdict", "deny", "--last", "1"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "1 of 2 flows (verdict deny)" in result.output
    assert "172.18.40.10:8080" in result.output
    assert "5432" not in result.output and "no-ssh" not in result.output


def test_flows_bad_verdict_and_missing_file(tmp_path: Path) -> None:
    assert CliRunner().invoke(app, ["flows", str(tmp_path / "x"), "--verdict", "maybe"]).exit_code == 2
    result = CliRunner().invoke(app, ["flows", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 1 and "cannot read" in result.output
