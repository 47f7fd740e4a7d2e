"""Hundreds of concurrent UDP sessions park when quiet: the agents' threads stay few, every session still answers.

Each of `SESSIONS` client sockets in aws-app (one source port each) sends one
datagram to az-app's UDP echo server and gets it back, which opens a session at
the connector, a spliced stream at edge A and a delivery at edge B. Once the
sessions have been quiet for `timeouts.park` their pumps hand their sockets to
the parking thread and give their worker threads back, so the connector's and
edge B's thread counts stay far below the session count; a second datagram on
every session wakes it and is answered on the same session.
"""
from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator

import pytest

from testbed.seed000 import AZ_APP, Seed000
from testbed.netns import UdpEcho
from tests.integration.test_dataplane_datagrams import POLICY

pytestmark = pytest.mark.integration

SESSIONS = 300
BATCH = 50  # datagrams in flight at once (the shared intercept socket's buffer takes this many easily)
PORT = 5001
PARK = 0.5
THREAD_LIMIT = SESSIONS // 5  # "far below": parked sessions hold no thread; a few workers stay pooled


@pytest.fixture(scope="module")
def seed() -> Iterator[Seed000]:
    # datagram_idle longer than the test: every session must survive its park and answer on resume.
    timeouts = {"idle": 30, "connect": 2, "handshake": 2, "drain": 2, "park": PARK, "datagram_idle": 60}
    overrides = {node: {"timeouts": timeouts} for node in ("conn", "edgea", "edgeb")}
    with Seed000(policy=json.loads(json.dumps(POLICY)), overrides=overrides, tag="dgs") as topology:
        server = UdpEcho(topology.ns("azapp"), PORT)
        yield topology
        server.close()


def _threads(seed: Seed000, node: str) -> int:
    proc = seed.agents[node].proc
    assert proc is not None and proc.poll() is None, seed.agents[node].log()[-2000:]
    return len(os.listdir(f"/proc/{proc.pid}/task"))


def _udp_flows(seed: Seed000, node: str) -> list[dict[str, object]]:
    path = seed.workdir / node / "flows.jsonl"
    flows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [flow for flow in flows if flow.get("proto") == "udp"]


def _exchange_all(socks: list[socket.socket], tag: bytes, *, attempts: int = 5, wait: float = 2.0) -> dict[int, bytes]:
    """Send `tag + index` on every socket, BATCH at a time, resending what is unanswered; index -> answer."""
    answers: dict[int, bytes] = {}
    for start in range(0, len(socks), BATCH):
        batch = range(start, min(start + BATCH, len(socks)))
        for _ in range(attempts):
            missing = [i for i in batch if i not in answers]
            if not missing:
                break
            for i in missing:
                socks[i].send(tag + b"%d" % i)
            deadline = time.monotonic() + wait
            while missing and time.monotonic() < deadline:
                for i in list(missing):
                    try:
                        answers[i] = socks[i].recv(100)
                        missing.remove(i)
                    except (BlockingIOError, InterruptedError):
                        pass
                if missing:
                    time.sleep(0.01)
    return answers


def _wait_parked(seed: Seed000, nodes: tuple[str, ...], limit: int, timeout: float) -> dict[str, int]:
    """Thread counts once every node is under `limit` (or at `timeout`, for the assertion to report)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = {node: _threads(seed, node) for node in nodes}
        if all(count < limit for count in counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def test_quiet_udp_sessions_park_and_resume(seed: Seed000) -> None:
    nodes = ("conn", "edgeb")
    baseline = {node: _threads(seed, node) for node in nodes}
    socks: list[socket.socket] = []
    try:
        for _ in range(SESSIONS):
            sock = seed.ns("awsapp").socket(socket.SOCK_DGRAM)
            sock.connect((AZ_APP, PORT))  # a fresh source port: a session of its own
            sock.setblocking(False)
            socks.append(sock)
        assert len({sock.getsockname()[1] for sock in socks}) == SESSIONS
        first = _exchange_all(socks, b"first-")
        assert {i: first.get(i) for i in range(SESSIONS)} == {i: b"first-%d" % i for i in range(SESSIONS)}

        # Past the park delay the pumps give their threads back (the pool keeps a few idle workers).
        time.sleep(PARK)
        counts = _wait_parked(seed, nodes, THREAD_LIMIT, timeout=10)
        print(f"\nthreads with {SESSIONS} parked UDP sessions: " + ", ".join(f"{n} {counts[n]} (idle {baseline[n]})" for n in nodes))
        for node in nodes:
            assert counts[node] < THREAD_LIMIT, f"{node} holds {counts[node]} threads for {SESSIONS} quiet sessions"

        second = _exchange_all(socks, b"second-")
        assert {i: second.get(i) for i in range(SESSIONS)} == {i: b"second-%d" % i for i in range(SESSIONS)}
        # Resumed, not replaced: a session that ended (reset, idle) would have written its flow record by now.
        for node in nodes:
            assert _udp_flows(seed, node) == [], f"{node} ended sessions: {_udp_flows(seed, node)[:3]}"
    finally:
        for sock in socks:
            sock.close()
