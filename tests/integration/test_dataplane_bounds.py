"""Attacks on the agent's resources, reload and restart (issue 12, attacks 3-7), each against real agents in namespaces.

Every load here is bounded in count and time: at most 2,000 connections or
datagrams, each test a few seconds.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.flowlog import FlowLogReader
from tests.integration.conftest import AppServer, echo
from testbed.netns import Netns, in_netns
from testbed.seed000 import AWS_APP, AZ_APP, EDGE_B, Seed000

pytestmark = pytest.mark.integration

SILENT = 2000
THREAD_CAP = 160  # what the agent may hold under one attacking address: its fixed threads, the per-source handshake cap (16), idle workers and the streams in flight
CGROUP_PIDS = Path("/sys/fs/cgroup/pids")


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _open_silent(ns: Netns, address: tuple[str, int], count: int, sources: tuple[str, ...] = ()) -> list[socket.socket]:
    """`count` TCP connections that never send a byte (connected in the kernel, whatever the agent does with them).

    From `sources` in turn when given (addresses of `ns`), else from its default address.
    """

    def make() -> list[socket.socket]:
        socks = []
        for index in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                if sources:
                    sock.bind((sources[index % len(sources)], 0))
                sock.connect(address)
            except BlockingIOError:
                pass
            except OSError:
                sock.close()
                continue
            socks.append(sock)
        return socks

    return in_netns(ns.name, make)


def _close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def _get(ns: Netns, path: str, timeout: float = 3.0) -> tuple[int, bytes]:
    def fetch() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:9464{path}", timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    return in_netns(ns.name, fetch)


def _series(text: bytes) -> set[str]:
    """Every sample line's name and labels (the series), without values."""
    return {line.rsplit(" ", 1)[0] for line in text.decode().splitlines() if line and not line.startswith("#")}


@pytest.fixture(scope="module")
def seed() -> Iterator[Seed000]:
    with Seed000(tag="bnd") as topology:
        server = AppServer(topology.ns("azapp"), 5432, echo)
        yield topology
        server.close()


def test_two_thousand_silent_connections_keep_threads_under_the_cap_while_a_stream_round_trips(seed: Seed000) -> None:
    edgeb = seed.agents["edgeb"]
    assert edgeb.proc is not None
    # The attacker sits in the Azure app network and dials edge B's tunnel port; peers keep their own handshake slots.
    socks = _open_silent(seed.ns("azapp"), (EDGE_B["app"], 7443), SILENT)
    try:
        assert len(socks) > SILENT * 0.9
        peak = 0
        round_trips = []
        deadline = time.monotonic() + 1.5  # inside the 2 s handshake deadline: the silent connections are all still open
        while time.monotonic() < deadline:
            peak = max(peak, _threads(edgeb.proc.pid))
            round_trips.append(seed.round_trip(b"still here"))
        assert peak < THREAD_CAP, f"edge B ran {peak} threads under {SILENT} silent connections"
        assert round_trips and all(round_trips), round_trips
    finally:
        _close_all(socks)
    assert edgeb.proc.poll() is None
    assert edgeb.wait_for("listener.refused", timeout=3), "refusals are logged"


def test_thread_start_failure_does_not_stop_the_listener(seed: Seed000) -> None:
    """Edge B in a pids cgroup at its current thread count: new threads fail for real (EAGAIN from clone)."""
    if not (CGROUP_PIDS / "tasks").exists():
        pytest.skip("needs the cgroup v1 pids controller")
    edgeb = seed.agents["edgeb"]
    assert edgeb.proc is not None
    deadline = time.monotonic() + 10
    while _threads(edgeb.proc.pid) > 60 and time.monotonic() < deadline:  # earlier attacks' connections wind down
        time.sleep(0.2)
    group = CGROUP_PIDS / f"{seed.lab.prefix}-edgeb"
    group.mkdir()
    try:
        (group / "cgroup.procs").write_text(str(edgeb.proc.pid))
        (group / "pids.max").write_text((group / "pids.current").read_text().strip())
        # From four addresses (each within the per-source cap), more than the agent has idle workers.
        sources = tuple(f"172.18.40.{20 + i}" for i in range(4))
        for source in sources:
            seed.ns("azapp").exec("ip", "addr", "add", f"{source}/24", "dev", "eth0", check=False)
        socks = _open_silent(seed.ns("azapp"), (EDGE_B["app"], 7443), 60, sources)
        try:
            assert edgeb.wait_for("reason=threads", timeout=3), edgeb.current_log()[-1500:]
            time.sleep(0.3)
            assert int((group / "pids.events").read_text().split()[1]) > 0, "no thread start was refused"
        finally:
            _close_all(socks)
        (group / "pids.max").write_text("max")
        assert seed.round_trip(b"after the limit"), "the tunnel listener stopped accepting after a thread-start failure"
        assert edgeb.proc.poll() is None
    finally:
        if edgeb.proc.poll() is None:
            (CGROUP_PIDS / "cgroup.procs").write_text(str(edgeb.proc.pid))
        group.rmdir()


def test_two_thousand_denied_datagrams_write_a_handful_of_lines_and_count_all(seed: Seed000) -> None:
    flows = Path(seed.read_config("conn")["flow_log"])
    port = 5353  # no rule permits UDP: the kernel filter table drops every datagram at the connector

    def flood() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.bind((AWS_APP, 40053))
            for _ in range(SILENT):
                sock.sendto(b"x", (AZ_APP, port))

    in_netns(seed.ns("awsapp").name, flood)
    time.sleep(3)  # the aggregation window closes, the last line is written
    lines = [entry for entry in FlowLogReader(flows).read() if entry.dport == port and entry.sport == 40053]
    assert 1 <= len(lines) <= 5, f"{len(lines)} flow log lines for one denied 5-tuple"
    assert sum(entry.count for entry in lines) == SILENT


def test_twenty_denied_replies_with_distinct_rule_names_create_no_metric_series(seed: Seed000) -> None:
    edgeb_config = seed.read_config("edgeb")
    evil = [{"name": f"evil-{i:03d}", "action": "deny", "proto": "tcp", "ports": [8050 + i]} for i in range(21)]
    policy = {**edgeb_config["filter"], "rules": evil + edgeb_config["filter"]["rules"]}
    seed.write_config("edgeb", {**edgeb_config, "filter": policy})
    seed.agents["edgeb"].signal(signal.SIGHUP)
    try:
        assert seed.agents["edgeb"].wait_for("agent.reloaded", timeout=5)

        def attempt(port: int) -> None:
            sock = seed.ns("awsapp").socket()
            sock.settimeout(3)
            with sock:
                try:
                    sock.connect((AZ_APP, port))
                    sock.sendall(b"x")
                    sock.recv(1)
                except OSError:
                    pass

        attempt(8050)  # the first refusal may add the one series for a far end's rule
        time.sleep(0.3)
        before = _series(_get(seed.ns("conn"), "/metrics")[1])
        for port in range(8051, 8071):
            attempt(port)
        time.sleep(0.3)
        after = _series(_get(seed.ns("conn"), "/metrics")[1])
        assert seed.agents["conn"].log().count("flow.refused") >= 20
        assert not [series for series in after if "evil" in series]
        assert after == before, sorted(after ^ before)
    finally:
        seed.write_config("edgeb", edgeb_config)
        seed.agents["edgeb"].signal(signal.SIGHUP)
        seed.agents["edgeb"].wait_for("agent.reloaded", timeout=5)


def test_two_hundred_half_sent_metrics_requests_do_not_hold_two_hundred_threads(seed: Seed000) -> None:
    conn = seed.agents["conn"]
    assert conn.proc is not None
    before = _threads(conn.proc.pid)

    def half_sent() -> list[socket.socket]:
        socks = []
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", 9464), timeout=2)
            try:
                sock.sendall(b"GET /metr")
            except OSError:
                pass
            socks.append(sock)
        return socks

    socks = in_netns(seed.ns("conn").name, half_sent)
    try:
        time.sleep(0.5)
        held = _threads(conn.proc.pid)
        assert held < before + 20, f"{held - before} more threads for 200 half-sent requests"
    finally:
        _close_all(socks)
    deadline = time.monotonic() + 5
    while _get(seed.ns("conn"), "/healthz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _get(seed.ns("conn"), "/healthz")[0] == 200


def test_idle_authenticated_tunnels_wait_without_a_thread_each(seed: Seed000) -> None:
    """150 tunnels from a real peer (edge A's certificate), handshaken and silent, as warm tunnels are."""
    edgeb = seed.agents["edgeb"]
    assert edgeb.proc is not None
    before = _threads(edgeb.proc.pid)
    context = seed.member_context("edgea")
    tunnels = []
    try:
        for _ in range(150):
            sock = seed.ns("edgea").socket()
            sock.settimeout(3)
            sock.connect((EDGE_B["private"], 7443))
            tunnels.append(context.wrap_socket(sock, server_side=False))
        time.sleep(0.5)
        held = _threads(edgeb.proc.pid)
        assert held < before + 30, f"{held - before} more threads for 150 idle tunnels"
        assert seed.round_trip(b"beside 150 idle tunnels")
    finally:
        for tunnel in tunnels:
            tunnel.close()


def test_sigusr1_reopens_the_flow_log_for_logrotate(seed: Seed000) -> None:
    conn = seed.agents["conn"]
    flows = Path(seed.read_config("conn")["flow_log"])
    rotated = flows.with_name("flows.jsonl.1")
    flows.rename(rotated)
    try:
        conn.signal(signal.SIGUSR1)
        assert conn.wait_for("flowlog.reopened", timeout=5)
        assert seed.round_trip(b"after rotation")
        deadline = time.monotonic() + 5
        while not (flows.exists() and list(FlowLogReader(flows).read())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert 5432 in [entry.dport for entry in FlowLogReader(flows).read()]
    finally:
        rotated.unlink(missing_ok=True)


def test_reload_with_a_route_table_that_has_a_default_route_is_refused_and_the_old_config_keeps_forwarding(seed: Seed000) -> None:
    conn = seed.agents["conn"]
    space = seed.ns("conn")
    space.exec("ip", "route", "add", "default", "dev", "c-app", "table", "5000")
    good = seed.read_config("conn")
    try:
        seed.write_config("conn", {**good, "intercept": {"route_table": 5000}})
        conn.signal(signal.SIGHUP)
        assert conn.wait_for("agent.reload_refused reason=kernel", timeout=5), conn.current_log()[-2000:]
        assert conn.wait_for("agent.rolled_back", timeout=5), conn.current_log()[-2000:]
        assert conn.proc is not None and conn.proc.poll() is None
        assert seed.round_trip(b"old config"), conn.current_log()[-3000:]
        assert "lookup 5000" not in space.ip_rules()
        assert "local" not in space.exec("ip", "route", "show", "table", "5000").stdout
    finally:
        seed.write_config("conn", good)
        space.exec("ip", "route", "del", "default", "table", "5000", check=False)


def test_healthz_fails_while_the_filter_table_is_gone_and_recovers_on_reload(seed: Seed000) -> None:
    conn = seed.agents["conn"]
    status, body = _get(seed.ns("conn"), "/healthz")
    document = json.loads(body)
    assert status == 200 and document["status"] == "ok"
    assert {"listeners", "filter_table", "peers", "kernel"} <= set(document["checks"])
    seed.ns("conn").exec("nft", "delete", "table", "inet", "transit_filter")
    status, body = _get(seed.ns("conn"), "/healthz")
    document = json.loads(body)
    assert status == 503 and document["status"] == "fail"
    assert not document["checks"]["filter_table"]["ok"]
    conn.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while _get(seed.ns("conn"), "/healthz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _get(seed.ns("conn"), "/healthz")[0] == 200


def _sysctls(ns: Netns) -> dict[str, str]:
    names = ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.tcp_slow_start_after_idle")
    return {name: ns.exec("sysctl", "-n", name).stdout.strip() for name in names}


def test_sigkill_then_restart_then_sigterm_restores_the_original_sysctls_and_the_forward_chain_ends_in_drop() -> None:
    """The restarted agent also removes what the killed run installed under names its new config no longer uses."""
    with Seed000(tag="kil") as topo:
        server = AppServer(topo.ns("azapp"), 5432, echo)
        fresh = topo.lab.ns("fresh")  # a namespace no agent touched: the originals every agent started from
        original = _sysctls(fresh)
        conn = topo.agents["conn"]
        assert conn.proc is not None
        assert _sysctls(topo.ns("conn")) != original  # the agent changed them
        conn.proc.kill()
        conn.proc.wait(timeout=5)
        # The restarted agent's config names every kernel object differently: the dead run's must still go.
        config = topo.read_config("conn")
        config["intercept"] = {"nft_table": "transit_icpt2", "route_table": 4700, "rule_priority": 4700,
                               "icmp_route_table": 4701, "icmp_rule_priority": 4701}
        config["filter_table"] = "transit_filter2"
        topo.write_config("conn", config)
        topo.start_agent("conn")
        topo.wait_ready("conn")
        space = topo.ns("conn")
        assert sorted(t for t in space.nft_tables() if t.startswith("transit_")) == ["transit_filter2", "transit_icpt2"]
        assert "lookup 4643" not in space.ip_rules() and "lookup 4644" not in space.ip_rules()
        assert space.exec("ip", "route", "show", "table", "4643").stdout.strip() == ""
        forward = space.exec("nft", "list", "chain", "ip", "transit_icpt2", "forward").stdout
        rules = [line.strip() for line in forward.splitlines() if line.strip() and not line.strip().startswith(("chain", "type", "}", "table"))]
        assert rules[-1] == "drop", forward
        assert topo.round_trip(b"after restart")
        conn.signal(signal.SIGTERM)
        assert conn.proc.wait(timeout=15) == 0
        assert _sysctls(topo.ns("conn")) == original
        assert [t for t in space.nft_tables() if t.startswith("transit_")] == []
        assert "lookup 47" not in space.ip_rules()
        server.close()
