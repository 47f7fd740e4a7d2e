"""1,000 concurrent flows stay under 150 MB per agent; new streams get their first byte in milliseconds."""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import AppServer, echo
from testbed.seed000 import AZ_APP, Seed000

pytestmark = pytest.mark.integration

FLOWS = 1000
RSS_LIMIT_MB = 150


@pytest.fixture(scope="module")
def seed() -> Iterator[Seed000]:
    with Seed000(tag="scl") as topology:
        server = AppServer(topology.ns("azapp"), 5432, echo)
        yield topology
        server.close()


def _rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def test_time_to_first_byte_of_new_streams(seed: Seed000) -> None:
    samples = []
    for _ in range(150):
        sock = seed.ns("awsapp").socket()
        sock.settimeout(5)
        with sock:
            started = time.perf_counter()
            sock.connect((AZ_APP, 5432))
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
            samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
    print(f"\nnew stream connect + first byte back, 3 agents: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {samples[-1]:.2f} ms")
    assert p50 < 10


def test_thousand_concurrent_flows_fit_in_memory(seed: Seed000) -> None:
    socks: list[socket.socket] = []
    try:
        for index in range(FLOWS):
            if index % 100 == 99:
                time.sleep(0.05)  # a steady ramp, not a handshake storm
            sock = seed.ns("awsapp").socket()
            sock.settimeout(15)
            sock.connect((AZ_APP, 5432))
            sock.sendall(b"y")
            socks.append(sock)
        assert all(sock.recv(1) == b"y" for sock in socks)
        time.sleep(2.5)  # quiet flows park
        usage = {node: _rss_mb(agent.proc.pid) for node, agent in seed.agents.items() if agent.proc}
        print(f"\nRSS / peak MB with {FLOWS} open flows: " + ", ".join(f"{n} {r:.0f}/{p:.0f}" for n, (r, p) in usage.items()))
        for node, (rss, peak) in usage.items():
            assert peak < RSS_LIMIT_MB, f"{node} peaked at {peak:.0f} MB"
        # Every flow still works after parking.
        for sock in socks[:: FLOWS // 50]:
            sock.sendall(b"z")
            assert sock.recv(1) == b"z"
    finally:
        for sock in socks:
            sock.close()
