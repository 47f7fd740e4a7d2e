"""`transit status`: reads /healthz and /metrics of an agent endpoint on loopback."""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from dataplane.metrics import Metrics, MetricsServer, Sources
from transit_cli.main import app

HEALTH = {
    "node": "conn-aws-app", "role": "connector", "identity": "spiffe://acme/conn-aws-app", "streams": 4, "warm_tunnels": 2,
    "paths": {"edge-aws-use1": {"private": {"rtt_ms": 0.42, "loss": 0.0, "up": True}, "public": {"rtt_ms": None, "loss": 1.0, "up": False}}},
    "active_paths": {"edge-aws-use1": "private"},
}


@pytest.fixture()
def endpoint() -> Iterator[str]:
    metrics = Metrics(node="conn-aws-app", sources=Sources(streams=lambda: 4, filter_counters=lambda: {"no-ssh": (3, 180), "app-to-db": (9, 540), "default": (0, 0)}))
    metrics.flow({"ts": 1.0, "role": "ingress", "src": "10.30.40.5", "sport": 1, "dst": "172.18.40.10", "dport": 5432,
                  "verdict": "permit", "rule": "app-to-db", "bytes_up": 3 * 1024 * 1024, "bytes_down": 512, "path": "private", "peer": "edge-aws-use1"})
    metrics.flow({"ts": 1.0, "role": "ingress", "src": "10.30.40.5", "sport": 2, "dst": "172.18.40.10", "dport": 22, "verdict": "deny", "rule": "no-ssh"})
    server = MetricsServer("127.0.0.1", 0, metrics, lambda: HEALTH)
    server.start()
    try:
        host, port = server.address
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_status_shows_paths_and_totals(endpoint: str) -> None:
    result = CliRunner().invoke(app, ["status", "--metrics", f"{endpoint}/metrics"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "conn-aws-app" in result.output and "healthy" in result.output
    assert "permit 1  deny 1  error 0" in result.output
    assert "up 3.0 MiB  down 512 B" in result.output
    assert "0.42" in result.output and "down" in result.output and "100%" in result.output
    assert "app-to-db 9  no-ssh 3" in result.output


def test_status_json_and_unreachable_endpoint_fails(endpoint: str) -> None:
    result = CliRunner().invoke(app, ["status", "--json", "-m", endpoint, "-m", "http://127.0.0.1:9", "--timeout", "1"])
    assert result.exit_code == 1
    agents = json.loads(result.output)
    assert agents[0]["ok"] and agents[0]["health"]["streams"] == 4
    assert agents[1]["ok"] is False and agents[1]["error"]


def test_unknown_namespace_is_reported_not_raised() -> None:
    result = CliRunner().invoke(app, ["status", "--json", "--netns", "no-such-namespace-xyz"])
    assert result.exit_code == 1
    (agent,) = json.loads(result.output)
    assert agent["netns"] == "no-such-namespace-xyz" and not agent["ok"] and agent["error"]
