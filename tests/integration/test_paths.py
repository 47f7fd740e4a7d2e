"""Path failover between two namespaces joined by a private and a public link.

The monitor and the responder run as separate processes, one per namespace,
like two agents. The private link is cut by a silent blackhole (nftables drop
on the far side, the link stays up), the hardest failure to notice.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from testbed.netns import Lab

pytestmark = pytest.mark.integration

HOLD = 1.5
PROBE_PORT = 7444

_MONITOR = f"""
import json, sys, time
from dataplane.paths import PathMonitor, PeerPaths
def changed(peer, old, new):
    print(json.dumps({{"event": "change", "peer": peer, "old": old, "new": new, "t": time.time()}}), flush=True)
monitor = PathMonitor([PeerPaths("b", "10.99.0.2", "10.99.1.2", {PROBE_PORT}, 7443)],
                      interval=0.1, timeout=0.25, misses=3, hold={HOLD}, on_change=changed)
monitor.start()
print(json.dumps({{"event": "ready"}}), flush=True)
for line in sys.stdin:
    if line.strip() == "stats":
        print(json.dumps({{"event": "stats", "stats": monitor.stats(), "active": monitor.active("b"), "address": monitor.address("b")}}), flush=True)
monitor.stop()
"""

_RESPONDER = f"""
import sys
from dataplane.paths import ProbeResponder
responder = ProbeResponder("0.0.0.0", {PROBE_PORT})
responder.start()
print("ready", flush=True)
sys.stdin.read()
responder.stop()
"""


class TwoLinks:
    """Namespaces a and b with a private (10.99.0.0/30) and a public (10.99.1.0/30) link."""

    def __init__(self, lab: Lab) -> None:
        self.a, self.b = lab.ns("a"), lab.ns("b")
        lab.link(self.a, "priv", "10.99.0.1/30", self.b, "priv", "10.99.0.2/30")
        lab.link(self.a, "pub", "10.99.1.1/30", self.b, "pub", "10.99.1.2/30")
        self.b.exec("nft", "add table inet tpcut")
        self.b.exec("nft", "add chain inet tpcut in { type filter hook input priority -10; policy accept; }")
        self.events: queue.Queue[dict] = queue.Queue()
        self.monitor: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        responder = self.b.spawn(sys.executable, "-c", _RESPONDER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert responder.stdout is not None and responder.stdout.readline().strip() == "ready"
        self.monitor = self.a.spawn(sys.executable, "-c", _MONITOR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()
        assert self.next_event(5)["event"] == "ready"

    def _read(self) -> None:
        assert self.monitor is not None and self.monitor.stdout is not None
        for line in self.monitor.stdout:
            self.events.put(json.loads(line))

    def next_event(self, timeout: float) -> dict:
        return self.events.get(timeout=timeout)

    def no_event(self, seconds: float) -> None:
        with pytest.raises(queue.Empty):
            event = self.events.get(timeout=seconds)
            pytest.fail(f"unexpected event {event}")

    def stats(self) -> dict:
        assert self.monitor is not None and self.monitor.stdin is not None
        self.monitor.stdin.write("stats\n")
        self.monitor.stdin.flush()
        event = self.next_event(5)
        assert event["event"] == "stats"
        return event

    def cut_private(self) -> float:
        self.b.exec("nft", "add rule inet tpcut in ip daddr 10.99.0.2 udp dport 7444 drop")
        return time.time()

    def repair_private(self) -> float:
        self.b.exec("nft", "flush chain inet tpcut in")
        return time.time()


@pytest.fixture()
def links() -> Iterator[TwoLinks]:
    with Lab("pth") as lab:
        topo = TwoLinks(lab)
        topo.start()
        yield topo


def test_failover_under_one_second_and_failback_after_hold(links: TwoLinks) -> None:
    time.sleep(0.5)
    before = links.stats()
    assert before["active"] == "private" and before["address"] == ["10.99.0.2", 7443]
    assert before["stats"]["b"]["private"]["up"] and before["stats"]["b"]["private"]["rtt_ms"] is not None

    cut = links.cut_private()
    event = links.next_event(3)
    failover = event["t"] - cut
    print(f"failover private->public after cut: {failover * 1000:.0f} ms")
    assert (event["old"], event["new"]) == ("private", "public")
    assert failover < 1.0
    during = links.stats()
    assert during["address"] == ["10.99.1.2", 7443]
    assert not during["stats"]["b"]["private"]["up"] and during["stats"]["b"]["private"]["loss"] > 0

    repaired = links.repair_private()
    event = links.next_event(HOLD + 3)
    failback = event["t"] - repaired
    print(f"failback public->private after repair: {failback * 1000:.0f} ms (hold {HOLD} s)")
    assert (event["old"], event["new"]) == ("public", "private")
    assert HOLD <= failback < HOLD + 1.0


def test_flapping_private_path_does_not_pull_traffic_back(links: TwoLinks) -> None:
    time.sleep(0.3)
    links.cut_private()
    assert links.next_event(3)["new"] == "public"
    for _ in range(2):  # up for less than the hold time, then down again
        links.repair_private()
        time.sleep(HOLD / 3)
        links.cut_private()
        time.sleep(0.5)
    links.no_event(0.5)
    assert links.stats()["active"] == "public"
    links.repair_private()
    assert links.next_event(HOLD + 3)["new"] == "private"


def test_responder_survives_garbage(links: TwoLinks) -> None:
    garbage = "import os, socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor n in (0, 1, 16, 17, 1400):\n    s.sendto(os.urandom(n), ('10.99.0.2', 7444))\ns.sendto(b'TXP1' + bytes(13), ('10.99.0.2', 7444))\n"
    links.a.exec(sys.executable, "-c", garbage)
    links.no_event(0.8)
    assert links.stats()["stats"]["b"]["private"]["up"]


def test_monitor_starts_with_a_path_down_and_sees_it_come_up() -> None:
    with Lab("pth") as lab:
        topo = TwoLinks(lab)
        topo.a.exec("ip", "link", "set", "pub", "down")  # no route to the public address at all
        topo.start()
        time.sleep(0.8)
        stats = topo.stats()
        assert stats["active"] == "private"
        assert stats["stats"]["b"]["public"]["up"] is False and stats["stats"]["b"]["private"]["up"] is True
        topo.a.exec("ip", "link", "set", "pub", "up")
        deadline = time.monotonic() + 3
        while not topo.stats()["stats"]["b"]["public"]["up"]:
            assert time.monotonic() < deadline, "public path never came up"
            time.sleep(0.1)
