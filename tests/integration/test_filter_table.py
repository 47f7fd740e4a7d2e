"""The filter table in a real kernel: client -> router (table on forward) -> server namespaces.

Checks permit, deny (refused at once with a TCP reset), counters per rule, a
10,000-rule apply time, and that a refused policy leaves the running table.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from dataplane import filter_compile, filter_table
from dataplane.filter_model import FilterPolicy, FilterRule

pytestmark = pytest.mark.integration

TABLE = "transit_filter"
CLIENT_IP = "10.30.40.2"
SERVER_IP = "172.18.40.10"

_LISTENER = """
import socket, sys, selectors
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64); s.setblocking(False); sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept(); conn.sendall(b"ok"); conn.close()
"""

_CONNECT = """
import socket, sys, time
start = time.monotonic()
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    data = s.recv(2); s.close(); outcome = "open" if data == b"ok" else "closed"
except ConnectionRefusedError:
    outcome = "refused"
except OSError:
    outcome = "timeout"
print(outcome, round((time.monotonic() - start) * 1000, 1))
"""


def _ip(*args: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, *args], check=True, capture_output=True)


class Routed:
    """Three namespaces in a line; the router forwards between two /24s."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.client, self.router, self.server = (f"tf{tag}c", f"tf{tag}r", f"tf{tag}s")
        self._tag = tag
        self._procs: list[subprocess.Popen[str]] = []

    def up(self) -> None:
        for ns in (self.client, self.router, self.server):
            _ip("ip", "netns", "add", ns)
            _ip("ip", "link", "set", "lo", "up", netns=ns)
        for side, ns, net, host in (("a", self.client, "10.30.40", CLIENT_IP), ("b", self.server, "172.18.40", SERVER_IP)):
            outer, inner = f"tf{self._tag}{side}0", f"tf{self._tag}{side}1"
            _ip("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("ip", "link", "set", outer, "netns", self.router)
            _ip("ip", "link", "set", inner, "netns", ns)
            _ip("ip", "addr", "add", f"{net}.1/24", "dev", outer, netns=self.router)
            _ip("ip", "link", "set", outer, "up", netns=self.router)
            _ip("ip", "addr", "add", f"{host}/24", "dev", inner, netns=ns)
            _ip("ip", "link", "set", inner, "up", netns=ns)
            _ip("ip", "route", "add", "default", "via", f"{net}.1", netns=ns)
        _ip("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=self.router)

    def listen(self, *ports: int) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", self.server, sys.executable, "-c", _LISTENER, *map(str, ports)], stdout=subprocess.PIPE, text=True)
        self._procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def connect(self, port: int) -> tuple[str, float]:
        out = subprocess.run(["ip", "netns", "exec", self.client, sys.executable, "-c", _CONNECT, SERVER_IP, str(port)], check=True, capture_output=True, text=True).stdout.split()
        return out[0], float(out[1])

    def down(self) -> None:
        for proc in self._procs:
            proc.kill()
            proc.wait()
        for ns in (self.client, self.router, self.server):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def net() -> Iterator[Routed]:
    routed = Routed()
    try:
        routed.up()
        routed.listen(22, 5432, 8080)
        yield routed
    finally:
        routed.down()


@pytest.fixture()
def table(net: Routed) -> Iterator[str]:
    try:
        yield TABLE
    finally:
        filter_table.remove(TABLE, netns=net.router)


def _seed_policy(extra: list[FilterRule] | None = None) -> FilterPolicy:
    return FilterPolicy(rules=[
        FilterRule(name="no-ssh", action="deny", proto="tcp", ports=[(22, 22)]),
        *(extra or []),
        FilterRule(name="app-to-db", action="permit", src=["10.30.40.0/24"], dst=[f"{SERVER_IP}/32"], proto="tcp", ports=[(5432, 5432), (22, 22)]),
    ])


def test_permit_deny_and_counters(net: Routed, table: str) -> None:
    assert net.connect(8080)[0] == "open"  # no table yet
    filter_table.apply(_seed_policy(), table=table, hook="forward", netns=net.router)
    assert net.connect(5432)[0] == "open"
    outcome, ms = net.connect(22)
    assert outcome == "refused" and ms < 500, (outcome, ms)  # deny beats the later permit, refused at once
    outcome, ms = net.connect(8080)
    assert outcome == "refused" and ms < 500, (outcome, ms)  # default deny
    counters = filter_table.read_counters(table, netns=net.router)
    assert counters["no-ssh"][0] == 1
    assert counters["app-to-db"][0] == 1  # only the SYN is judged; the rest rides conntrack
    assert counters["default"][0] == 1
    assert counters["app-to-db"][1] > 0


def test_ten_thousand_rules_apply_fast_and_still_decide(net: Routed, table: str) -> None:
    extra = [
        FilterRule(name=f"app{i}", action="permit" if i % 2 else "deny", src=[f"10.{100 + i // 256}.{i % 256}.0/24"], dst=[f"172.{16 + i // 65536}.{(i // 256) % 256}.{i % 256}/32"], proto="tcp", ports=[(1000 + i % 100, 1000 + i % 100)])
        for i in range(9_998)
    ]
    policy = _seed_policy(extra)
    assert len(policy.rules) == 10_000
    start = time.monotonic()
    filter_table.apply(policy, table=table, hook="forward", netns=net.router)
    elapsed = time.monotonic() - start
    print(f"filter_table.apply of 10,000 rules: {elapsed:.2f} s (compile + nft transaction)")
    assert elapsed < 4.0
    assert net.connect(5432)[0] == "open"
    assert net.connect(22)[0] == "refused"
    assert net.connect(8080)[0] == "refused"


def _listing(net: Routed, table: str) -> object:
    out = subprocess.run(["ip", "netns", "exec", net.router, "nft", "-j", "list", "table", "inet", table], check=True, capture_output=True, text=True).stdout
    items = json.loads(out)["nftables"]
    return [item for item in items if "metainfo" not in item]


def test_refused_policy_leaves_running_table(net: Routed, table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    filter_table.apply(_seed_policy(), table=table, hook="forward", netns=net.router)
    before = _listing(net, table)
    # The kernel side refuses: a mark that does not fit in 32 bits.
    with pytest.raises(filter_table.FilterTableError):
        filter_table.apply(FilterPolicy(default="permit"), table=table, hook="forward", netns=net.router, mark=2**40)
    # The compiler refuses before nft is run.
    monkeypatch.setattr(filter_compile, "MAX_ELEMENTS", 1)
    with pytest.raises(filter_compile.PolicyTooComplexError):
        filter_table.apply(_seed_policy([FilterRule(name="x", action="deny", dst=["172.18.40.0/24"], proto="tcp", ports=[(1, 2)])]), table=table, hook="forward", netns=net.router)
    assert _listing(net, table) == before
    assert net.connect(5432)[0] == "open"
    assert net.connect(8080)[0] == "refused"


def test_remove_is_idempotent(net: Routed) -> None:
    filter_table.apply(FilterPolicy(), table=TABLE, hook="forward", netns=net.router)
    assert net.connect(5432)[0] == "refused"
    filter_table.remove(TABLE, netns=net.router)
    filter_table.remove(TABLE, netns=net.router)
    assert net.connect(5432)[0] == "open"
