"""`transit flows` and `transit status` against real agents on seed 000's topology."""
from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from testbed.seed000 import AWS_APP, AZ_APP, Seed000
from transit_cli.main import app

pytestmark = pytest.mark.integration

TRANSIT = str(Path(sys.executable).parent / "transit")


@pytest.fixture(scope="module")
def topo() -> Iterator[Seed000]:
    with Seed000(tag="obs") as seed:
        listener = seed.ns("azapp").socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((AZ_APP, 5432))
        listener.listen(16)

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(b"hello from az-app" * 100)

        threading.Thread(target=serve, daemon=True).start()
        try:
            yield seed
        finally:
            listener.close()


def _flow_lines(seed: Seed000, node: str) -> list[dict]:
    path = Path(seed.read_config(node)["flow_log"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_flows_and_status_show_a_permitted_flow(topo: Seed000) -> None:
    with topo.ns("awsapp").socket() as sock:
        sock.settimeout(5)
        sock.connect((AZ_APP, 5432))
        sock.sendall(b"q" * 300)
        received = b""
        while len(received) < 1700:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (_flow_lines(topo, "conn") and _flow_lines(topo, "edgeb")):
        time.sleep(0.05)
    log = topo.read_config("conn")["flow_log"]

    result = CliRunner().invoke(app, ["flows", log, "--verdict", "permit"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert f"{AWS_APP}:" in result.output and f"{AZ_APP}:5432" in result.output and "app-to-db" in result.output
    assert "1 of 1 flows (verdict permit)" in result.output

    status = topo.ns("conn").exec(TRANSIT, "status", "--json", "-m", "http://127.0.0.1:9464", check=False)
    assert status.returncode == 0, status.stdout + status.stderr
    agent = json.loads(status.stdout)[0]
    assert agent["ok"] and agent["health"]["node"] == "conn"
    assert agent["health"]["paths"]["edgea"]["private"]["up"] is True
    flows = {tuple(sorted(labels.items())): value for labels, value in agent["metrics"]["transit_flows_total"]}
    assert flows[(("role", "ingress"), ("verdict", "permit"))] >= 1
    up = sum(value for labels, value in agent["metrics"]["transit_bytes_total"] if labels["direction"] == "up")
    assert up >= 300

    table = topo.ns("edgeb").exec(TRANSIT, "status", "-m", "127.0.0.1:9464", check=False)
    assert table.returncode == 0 and "edgeb" in table.stdout and "edgea" in table.stdout

    # From the host: read every agent from inside its namespace.
    spaces = [topo.ns(node).name for node in ("conn", "edgea", "edgeb")]
    result = CliRunner().invoke(app, ["status", "--json", *(arg for space in spaces for arg in ("--netns", space))])
    assert result.exit_code == 0, result.output
    assert [agent["health"]["node"] for agent in json.loads(result.output)] == ["conn", "edgea", "edgeb"]


def test_status_fails_when_an_agent_is_gone(topo: Seed000) -> None:
    result = topo.ns("conn").exec(TRANSIT, "status", "--json", "-m", "http://127.0.0.1:9464", "-m", "http://127.0.0.1:9", "--timeout", "1", check=False)
    assert result.returncode == 1
    agents = json.loads(result.stdout)
    assert agents[0]["ok"] and not agents[1]["ok"]


def test_kernel_denied_connection_is_in_the_flow_log(topo: Seed000) -> None:
    with topo.ns("awsapp").socket() as sock:
        sock.settimeout(3)
        start = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            sock.connect((AZ_APP, 22))
        assert time.monotonic() - start < 0.5  # refused at once by the connector's filter table
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not any(line["verdict"] == "deny" for line in _flow_lines(topo, "conn")):
        time.sleep(0.05)
    log = topo.read_config("conn")["flow_log"]
    result = CliRunner().invoke(app, ["flows", log, "--verdict", "deny"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert f"{AZ_APP}:22" in result.output and "no-ssh" in result.output
    status = topo.ns("conn").exec(TRANSIT, "status", "--json", check=False)
    agent = json.loads(status.stdout)[0]
    verdicts = {tuple(sorted(labels.items())): value for labels, value in agent["metrics"]["transit_verdicts_total"]}
    assert verdicts[(("rule", "no-ssh"), ("verdict", "deny"))] >= 1
    filtered = {labels["rule"]: value for labels, value in agent["metrics"]["transit_filter_packets_total"]}
    assert filtered["no-ssh"] >= 1
