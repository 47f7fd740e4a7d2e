"""UDP and ICMP policy tests on the local target: hosts echo the UDP ports, flows carry a command, probes per protocol."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from components import load_spec
from components.local.fabric import flow_command
from components.local.layout import build_layout
from transit_cli.local_check import probe_argv

ROOT = Path(__file__).resolve().parents[3]


def _layout(fabric: str):
    return build_layout(load_spec(ROOT / "stacks" / "fabrics" / f"{fabric}.yaml"), "t")


def test_udp_test_ports_are_served_by_the_destination_host() -> None:
    layout = _layout("seed004_dx_er_cloud_router")
    hosts = {h.address: h for h in layout.hosts}
    assert hosts["10.6.0.10"].udp_ports == [5001]  # aws-vpc -> az-vnet udp 5001
    assert hosts["10.6.0.4"].ports == [5001] and hosts["10.6.0.4"].udp_ports == []


def test_every_flow_has_a_command_for_its_protocol() -> None:
    flows = {f.proto: f for f in _layout("seed004_dx_er_cloud_router").flows}
    assert flow_command(flows["icmp"]).endswith(f"ping -c 1 -W 1 {flows['icmp'].dst}")
    assert f"('{flows['udp'].dst}', 5001)" in flow_command(flows["udp"])
    assert "curl" in flow_command(flows["tcp"])


def test_probe_per_protocol() -> None:
    base = {"src_ns": "ns", "dst": "10.6.0.10", "port": 5001}
    tcp, udp, icmp = (probe_argv({**base, "proto": p}) for p in ("tcp", "udp", "icmp"))
    assert tcp[:5] == udp[:5] == ["ip", "netns", "exec", "ns", "python3"]
    assert "SOCK_DGRAM" in udp[6] and "create_connection" in tcp[6]
    assert icmp == ["ip", "netns", "exec", "ns", "ping", "-n", "-c", "1", "-W", "3", "10.6.0.10"]  # the ping users paste
    assert probe_argv({**base, "port": 443})[6] == tcp[6]  # no proto: tcp (older outputs)


def test_app_server_echoes_udp_and_answers_tcp_on_loopback() -> None:
    with socket.socket() as probe_tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_udp:
        probe_tcp.bind(("127.0.0.1", 0))
        probe_udp.bind(("127.0.0.1", 0))
        tcp_port, udp_port = probe_tcp.getsockname()[1], probe_udp.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "components.local.app_server", "--bind", "127.0.0.1",
                             "--port", str(tcp_port), "--udp-port", str(udp_port)], cwd=ROOT)
    try:
        answer = b""
        for _ in range(50):  # up to 5 s for the server to bind
            try:
                with socket.create_connection(("127.0.0.1", tcp_port), timeout=1) as conn:
                    conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    answer = conn.recv(200)
                break
            except ConnectionRefusedError:
                time.sleep(0.1)
        assert answer.startswith(b"HTTP/1.0 200")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(b"echo me", ("127.0.0.1", udp_port))
            assert sock.recv(100) == b"echo me"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_local_check_sends_and_prints_every_protocol(monkeypatch) -> None:
    import typer
    from typer.testing import CliRunner

    from transit_cli import local_check

    flows = [
        {"test": "policy.tests[0]", "src_ns": "h", "src": "172.31.0.10", "dst": "10.6.0.10", "proto": "udp", "port": 5001, "expect": "permit"},
        {"test": "policy.tests[1]", "src_ns": "h", "src": "10.6.0.10", "dst": "172.31.0.10", "proto": "icmp", "port": None, "expect": "permit"},
        {"test": "policy.tests[2]", "src_ns": "h", "src": "10.6.0.10", "dst": "172.31.0.10", "proto": "tcp", "port": 5001, "expect": "deny"},
    ]
    sent: list[str] = []

    def fake_run(argv, **kwargs):
        sent.append(argv[4])
        return subprocess.CompletedProcess(argv, 0 if argv[4] == "ping" or "SOCK_DGRAM" in argv[6] else 1)

    monkeypatch.setattr(local_check, "stack_outputs", lambda stack, cwd: {"local": {"prefix": "p", "flows": flows, "routers": []}})
    monkeypatch.setattr(local_check.subprocess, "run", fake_run)
    app = typer.Typer()
    local_check.register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["local-check", "--wait", "0"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert len(sent) == 3
    assert "10.6.0.10:5001/udp" in result.output and "172.31.0.10/icmp" in result.output
    assert "not sent" not in result.output and "MISMATCH" not in result.output
