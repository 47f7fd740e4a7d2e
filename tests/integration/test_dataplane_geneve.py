"""Two connectors behind a Gateway Load Balancer that speaks GENEVE as AWS does (testbed/gwlb.py).

Permitted TCP, UDP and ICMP echo from the workload reach the far side, and
every reply goes back through the load balancer from the flow's own target
with the flow's header; inbound flows delivered by either target get their
replies at that target; denied flows are refused and logged; garbage on
6081 is counted and survived; the health check fails when the agent cannot
forward. Each test runs on both data paths (`geneve.datapath`): `ebpf`, the
kernel fast path (strict: the agent fails if it does not load), and `user`,
the user-space worker alone; an agent that may not load eBPF falls back.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.geneve.packet import encode
from tests.integration.conftest import AppServer, echo
from testbed.gwlb import APP_HOSTS, AZ_APP, TARGETS, GwlbFabric
from testbed.netns import UdpEcho, in_netns

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["ebpf", "user"])
def datapath(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def fabric(datapath: str) -> Iterator[GwlbFabric]:
    with GwlbFabric(geneve={"datapath": datapath}) as topology:
        yield topology


@pytest.fixture(scope="module")
def servers(fabric: GwlbFabric) -> Iterator[dict[str, AppServer]]:
    made = {
        "db": AppServer(fabric.ns("azapp"), 5432, echo),
        "ssh": AppServer(fabric.ns("azapp"), 22, echo),
        "aws": AppServer(fabric.ns("app"), 9000, echo),
    }
    yield made
    for server in made.values():
        server.close()


def _exchange(fabric: GwlbFabric, ns: str, dst: str, port: int, payload: bytes, *, source: str | None = None, timeout: float = 10) -> bytes:
    sock = fabric.ns(ns).socket()
    sock.settimeout(timeout)
    with sock:
        if source:
            sock.bind((source, 0))
        sock.connect((dst, port))
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while data := sock.recv(262144):
            chunks.append(data)
        return b"".join(chunks)


def _health(fabric: GwlbFabric, node: str) -> tuple[int, dict[str, object]]:
    def fetch() -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen("http://127.0.0.1:9464/healthz", timeout=3) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    return in_netns(fabric.ns(node).name, fetch)


def _scrape(fabric: GwlbFabric, node: str) -> dict[str, float]:
    """Every sample of the agent's /metrics, by its line's name and labels."""
    def fetch() -> str:
        with urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=3) as response:
            return response.read().decode()

    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in in_netns(fabric.ns(node).name, fetch).splitlines()
            if line and not line.startswith("#")}


def _metric(fabric: GwlbFabric, node: str, result: str) -> float:
    return _scrape(fabric, node).get(f'transit_geneve_packets_total{{result="{result}"}}', 0.0)


def _ebpf(fabric: GwlbFabric, node: str, result: str) -> float:
    return _scrape(fabric, node).get(f'transit_geneve_ebpf_packets_total{{result="{result}"}}', 0.0)


def _filters(fabric: GwlbFabric, node: str) -> str:
    """The tc filters on the connector's link to the load balancer and on its GENEVE TUN."""
    space = fabric.ns(node)
    found = [space.exec("tc", "filter", "show", "dev", "c-gwlb", "ingress", check=False).stdout]
    found.append(space.exec("tc", "filter", "show", "dev", "transit-gnv", "egress", check=False).stdout)
    return "".join(found)


def test_the_configured_path_carries_the_packets(fabric: GwlbFabric, datapath: str, servers: dict[str, AppServer]) -> None:
    before = {node: _scrape(fabric, node) for node in ("conn1", "conn2")}
    payload = os.urandom(256 * 1024)
    for _ in range(4):  # flows on both targets
        assert _exchange(fabric, "app", AZ_APP, 5432, payload) == payload
    after = {node: _scrape(fabric, node) for node in ("conn1", "conn2")}

    def grew(name: str) -> float:
        return sum(after[node].get(name, 0) - before[node].get(name, 0) for node in after)

    for node in after:
        assert after[node][f'transit_geneve_datapath{{path="{datapath}"}}'] == 1
    kernel = grew('transit_geneve_ebpf_packets_total{result="decapsulated"}'), grew('transit_geneve_ebpf_packets_total{result="encapsulated"}')
    worker = grew('transit_geneve_packets_total{result="delivered"}'), grew('transit_geneve_packets_total{result="returned"}')
    if datapath == "ebpf":
        assert min(kernel) > 0 and worker == (0, 0), (kernel, worker)
        assert "transit-gnv-in" in _filters(fabric, "conn1") and "transit-gnv-out" in _filters(fabric, "conn1")
    else:
        assert min(worker) > 0 and kernel == (0, 0), (kernel, worker)
        assert "transit-gnv" not in _filters(fabric, "conn1")


def test_permitted_tcp_crosses_the_fabric_and_replies_return_through_the_load_balancer(fabric: GwlbFabric, servers: dict[str, AppServer]) -> None:
    payload = os.urandom(2 * 1024 * 1024)
    before = len(servers["db"].peers)
    echoed = _exchange(fabric, "app", AZ_APP, 5432, payload)
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    assert servers["db"].peers[before][0] == APP_HOSTS[0]  # delivered with the workload's own address
    assert fabric.gwlb is not None and fabric.gwlb.bad_returns == 0 and fabric.gwlb.packets_back > 0


def test_many_outbound_flows_spread_over_both_targets_and_each_returns_from_its_own(fabric: GwlbFabric, servers: dict[str, AppServer]) -> None:
    gwlb = fabric.gwlb
    assert gwlb is not None

    def one(index: int) -> bool:
        payload = f"flow {index}".encode() * 50
        return _exchange(fabric, "app", AZ_APP, 5432, payload) == payload

    results = [one(index) for index in range(60)]  # one after the other: concurrency is the scale tests' business
    assert all(results)
    by_target = {target: len(keys) for target, keys in gwlb.returns_by_target.items()}
    assert set(by_target) == set(TARGETS.values()), by_target  # the hash used both targets
    for target, keys in gwlb.returns_by_target.items():
        assert all(gwlb.targets[gwlb.sent[key]] == target for key in keys)  # every reply from the flow's own target
    assert gwlb.bad_returns == 0


def test_inbound_flows_get_every_reply_at_the_target_that_delivered_them(fabric: GwlbFabric, servers: dict[str, AppServer]) -> None:
    gwlb = fabric.gwlb
    assert gwlb is not None
    peers_before = len(servers["aws"].peers)
    seen_before = set(gwlb.sent)

    def one(index: int) -> bool:
        payload = f"inbound {index}".encode() * 20
        return _exchange(fabric, "azapp", APP_HOSTS[index % 2], 9000, payload, timeout=5) == payload

    results = [one(index) for index in range(60)]
    assert all(results), f"{results.count(False)} of 60 inbound flows failed"
    # The workload saw each flow from the connector that delivered it (its own address, deliver_from=node),
    # so its replies went straight back to that VM and never through the load balancer.
    sources = {peer[0] for peer in servers["aws"].peers[peers_before:]}
    assert sources == {"10.30.41.2", "10.30.41.6"}
    assert not [key for key in set(gwlb.sent) - seen_before if 9000 in (key[2], key[4])]
    records = [r for node in ("conn1", "conn2") for r in fabric.flow_records(node) if r.get("dport") == 9000]
    assert records and all(r["src"] == AZ_APP for r in records)  # the flow log keeps the real client


def test_denied_flows_are_refused_through_the_load_balancer_and_logged(fabric: GwlbFabric, servers: dict[str, AppServer]) -> None:
    sock = fabric.ns("app").socket()
    sock.settimeout(5)
    with sock, pytest.raises(ConnectionRefusedError):
        sock.connect((AZ_APP, 22))  # the kernel filter table's reset travels back in GENEVE
    assert servers["ssh"].peers == []
    time.sleep(0.5)
    denied = [r for node in ("conn1", "conn2") for r in fabric.flow_records(node) if r.get("dport") == 22]
    assert denied and all(r["verdict"] == "deny" and r["rule"] == "no-ssh" for r in denied)


def test_udp_and_icmp_echo_work_through_the_load_balancer(fabric: GwlbFabric) -> None:
    server = UdpEcho(fabric.ns("azapp"), 5353)
    try:
        sock = fabric.ns("app").socket(socket.SOCK_DGRAM)
        sock.settimeout(2)
        with sock:
            sock.connect((AZ_APP, 5353))
            answers = 0
            for attempt in range(5):
                sock.send(f"query {attempt}".encode())
                try:
                    answers += sock.recv(100) == f"query {attempt}".encode()
                except TimeoutError:
                    pass
        assert answers >= 4
        assert server.peers and server.peers[0][0] == APP_HOSTS[0]
    finally:
        server.close()
    ping = fabric.ns("app").exec("ping", "-c", "3", "-i", "0.2", "-W", "2", AZ_APP, check=False)
    assert " 0% packet loss" in ping.stdout, ping.stdout


def test_garbage_truncated_and_foreign_packets_on_6081_are_counted_and_survived(fabric: GwlbFabric, datapath: str,
                                                                                  servers: dict[str, AppServer]) -> None:
    gwlb = fabric.gwlb
    assert gwlb is not None
    target = TARGETS["conn1"]
    inner = bytes.fromhex("4500001c000100004011" "0000" "0a1e280a" "ac12280a" "d4310009" "00080000")  # UDP to port 9
    valid = encode(inner, endpoint_id=1, attachment_id=2, flow_cookie=3)
    rng = random.Random(7)
    before = {reason: _metric(fabric, "conn1", reason) for reason in ("truncated", "unknown_option", "bad_inner", "foreign_source")}
    for _ in range(300):
        gwlb.send_raw(target, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200))))
    for cut in range(0, 40, 3):
        gwlb.send_raw(target, valid[:cut])
    unknown = struct.pack("!BBHI", 9, 0, 0x0800, 0) + valid[8:40] + bytes.fromhex("ffff0100") + inner
    for _ in range(20):
        gwlb.send_raw(target, unknown)
    gwlb.send_raw(target, valid[:-3])  # inner length disagrees with its header
    foreign = fabric.ns("app").socket(socket.SOCK_DGRAM)  # the workload is no load balancer
    with foreign:
        for _ in range(10):
            foreign.sendto(valid, (target, 6081))
    time.sleep(0.5)
    after = {reason: _metric(fabric, "conn1", reason) for reason in before}
    assert after["truncated"] >= before["truncated"] + 13
    assert after["unknown_option"] >= before["unknown_option"] + 20
    assert after["bad_inner"] >= before["bad_inner"] + 1
    assert after["foreign_source"] >= before["foreign_source"] + 10
    if datapath == "ebpf":  # the kernel left every one of them to the worker, unchanged
        assert _ebpf(fabric, "conn1", "up_malformed") >= 13 + 20 + 1 and _ebpf(fabric, "conn1", "up_foreign_source") >= 10
    assert fabric.agents["conn1"].proc is not None and fabric.agents["conn1"].proc.poll() is None
    payload = b"still carrying" * 100
    assert _exchange(fabric, "app", AZ_APP, 5432, payload) == payload


def test_health_check_fails_when_the_agent_cannot_forward(fabric: GwlbFabric) -> None:
    status, body = _health(fabric, "conn1")
    assert status == 200 and body["checks"]["geneve"]["ok"], body  # type: ignore[index]
    fabric.ns("conn1").exec("ip", "link", "set", "transit-gnv", "down")
    try:
        status, body = _health(fabric, "conn1")
        assert status == 503 and "transit-gnv is down" in str(body["checks"]), body
    finally:
        fabric.ns("conn1").exec("ip", "link", "set", "transit-gnv", "up")
    assert _health(fabric, "conn1")[0] == 200
    edge = fabric.agents["edge"]
    edge.stop()  # nothing to forward to: probes go unanswered
    try:
        deadline = time.monotonic() + 5
        while (status := _health(fabric, "conn1")[0]) == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 503
        assert not _health(fabric, "conn1")[1]["checks"]["peers"]["ok"]  # type: ignore[index]
    finally:
        edge.start()
        edge.wait_ready()
    deadline = time.monotonic() + 5
    while _health(fabric, "conn1")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _health(fabric, "conn1")[0] == 200


def _worker_pid(fabric: GwlbFabric, node: str) -> int:
    found = re.findall(r"(?:listener=geneve|geneve.worker_restart).* worker=(\d+)", fabric.agents[node].current_log())
    assert found, fabric.agents[node].current_log()
    return int(found[-1])


def test_health_check_fails_while_the_packet_loops_are_stuck_and_a_dead_worker_is_restarted(fabric: GwlbFabric, servers: dict[str, AppServer]) -> None:
    worker = _worker_pid(fabric, "conn1")
    os.kill(worker, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 6
        while (status := _health(fabric, "conn1")[0]) == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 503 and "the GENEVE loop stopped" in str(_health(fabric, "conn1")[1]["checks"])
    finally:
        os.kill(worker, signal.SIGCONT)
    os.kill(worker, signal.SIGKILL)
    assert fabric.agents["conn1"].wait_for("geneve.worker_restart", timeout=10)
    assert _worker_pid(fabric, "conn1") != worker
    assert _health(fabric, "conn1")[0] == 200
    payload = b"after a restart" * 100
    for _ in range(6):  # flows on either target
        assert _exchange(fabric, "app", AZ_APP, 5432, payload) == payload


def test_agents_leave_no_geneve_state_behind(fabric: GwlbFabric) -> None:
    conn = fabric.agents["conn2"]
    conn.stop()
    try:
        space = fabric.ns("conn2")
        assert "transit_geneve" not in space.nft_tables()
        assert "0x4d45" not in space.ip_rules()
        links = space.exec("ip", "-o", "link").stdout
        assert "transit-gnv" not in links
        assert "transit-gnv-in" not in space.exec("tc", "filter", "show", "dev", "c-gwlb", "ingress", check=False).stdout
        pids = subprocess.run(["ip", "netns", "pids", space.name], capture_output=True, text=True, check=True).stdout.split()
        assert not [pid for pid in pids if b"dataplane.geneve.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    finally:
        conn.start()
        conn.wait_ready()


def _inbound_results(fabric: GwlbFabric, count: int, *, timeout: float) -> list[bool]:
    def one(index: int) -> bool:
        payload = f"inbound {index}".encode()
        try:
            return _exchange(fabric, "azapp", APP_HOSTS[index % 2], 9000, payload, timeout=timeout) == payload
        except OSError:
            return False

    return [one(index) for index in range(count)]


def test_delivering_from_the_client_address_behind_two_targets_loses_replies_to_the_other_target(datapath: str) -> None:
    """Why `deliver_from: node` is the default: the harness really hashes replies the load balancer never saw."""
    client = {"networks": [{"cidrs": ["10.30.40.0/24"], "deliver_from": "client"}], "datapath": datapath}
    with GwlbFabric(geneve=client, tag="gwc") as fabric:
        server = AppServer(fabric.ns("app"), 9000, echo)
        try:
            results = _inbound_results(fabric, 20, timeout=1.5)  # a lost reply is a timeout: keep it short
        finally:
            server.close()
        assert server.peers and {peer[0] for peer in server.peers} == {AZ_APP}  # the workload saw the real client
        assert 0 < results.count(True) < len(results), results  # those hashed to the other target were lost


def test_delivering_from_the_client_address_works_behind_a_single_target(datapath: str) -> None:
    client = {"networks": [{"cidrs": ["10.30.40.0/24"], "deliver_from": "client"}], "datapath": datapath}
    with GwlbFabric(geneve=client, connectors=("conn1",), tag="gw1") as fabric:
        server = AppServer(fabric.ns("app"), 9000, echo)
        try:
            results = _inbound_results(fabric, 20, timeout=8)
        finally:
            server.close()
        assert all(results), results
        assert {peer[0] for peer in server.peers} == {AZ_APP}
        assert fabric.gwlb is not None and fabric.gwlb.bad_returns == 0


def test_a_killed_agent_takes_its_worker_along_and_its_restart_leaves_one_set_of_rules(fabric: GwlbFabric, datapath: str, servers: dict[str, AppServer]) -> None:
    agent = fabric.agents["conn2"]
    worker = _worker_pid(fabric, "conn2")
    assert agent.proc is not None
    agent.proc.kill()  # SIGKILL: no teardown
    agent.proc.wait()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{worker}").exists()  # PR_SET_PDEATHSIG ended it with the agent
    agent.start()
    agent.wait_ready()
    rules = fabric.ns("conn2").ip_rules()
    assert rules.count("fwmark 0x4d45") == 1, rules
    assert fabric.ns("conn2").nft_tables().count("transit_geneve") == 1
    assert _filters(fabric, "conn2").count("transit-gnv-in") == (datapath == "ebpf")  # the killed agent's filter went by name
    assert _filters(fabric, "conn2").count("transit-gnv-out") == (datapath == "ebpf")
    assert _health(fabric, "conn2")[0] == 200
    payload = b"after a kill" * 100
    for _ in range(6):
        assert _exchange(fabric, "app", AZ_APP, 5432, payload) == payload


def test_the_health_check_fails_when_the_fast_path_filters_are_removed(fabric: GwlbFabric, datapath: str) -> None:
    if datapath != "ebpf":
        pytest.skip("the user-space path has no filters")
    fabric.ns("conn1").exec("tc", "filter", "del", "dev", "c-gwlb", "ingress", "pref", str(0x6081))
    try:
        status, body = _health(fabric, "conn1")
        assert status == 503 and "tc filters are gone" in str(body["checks"]), body
    finally:
        agent = fabric.agents["conn1"]
        agent.stop()  # a restart attaches them again
        agent.start()
        agent.wait_ready()
    assert _health(fabric, "conn1")[0] == 200
    assert "transit-gnv-in" in _filters(fabric, "conn1")


def test_an_agent_that_may_not_load_ebpf_falls_back_to_the_user_space_path() -> None:
    """`datapath: auto` without CAP_BPF and CAP_SYS_ADMIN: a log line, the metrics say so, and traffic flows."""
    with GwlbFabric(connectors=("conn1",), drop_caps=("bpf", "sys_admin"), tag="gwf") as fabric:
        agent = fabric.agents["conn1"]
        assert "geneve.fastpath_unavailable reason=no_privilege" in agent.current_log()
        assert "datapath=user" in agent.current_log()
        server = AppServer(fabric.ns("azapp"), 5432, echo)
        try:
            payload = os.urandom(512 * 1024)
            assert _exchange(fabric, "app", AZ_APP, 5432, payload) == payload
        finally:
            server.close()
        ping = fabric.ns("app").exec("ping", "-c", "2", "-i", "0.2", "-W", "2", AZ_APP, check=False)
        assert " 0% packet loss" in ping.stdout, ping.stdout
        metrics = _scrape(fabric, "conn1")
        assert metrics['transit_geneve_datapath{path="user"}'] == 1 and metrics['transit_geneve_datapath{path="ebpf"}'] == 0
        assert metrics['transit_geneve_ebpf_load_failures_total{reason="no_privilege"}'] == 1
        assert metrics['transit_geneve_packets_total{result="delivered"}'] > 0
        assert "transit-gnv" not in _filters(fabric, "conn1")
        # `datapath: ebpf` makes the same failure fatal: the agent does not start half a gateway.
        config = json.loads(agent.config_path.read_text())
        config["geneve"]["datapath"] = "ebpf"
        agent.config_path.write_text(json.dumps(config))
        agent.stop()
        agent.start()
        assert agent.proc is not None and agent.proc.wait(timeout=20) != 0
        assert "the GENEVE eBPF fast path did not load: no_privilege" in agent.current_log()


def test_listening_on_every_address_attaches_to_the_interface_the_load_balancer_is_routed_through() -> None:
    """The components write `listen.host` 0.0.0.0: the fast path finds the interface and address by the route to `gwlb_cidrs`."""
    settings = {"listen": {"host": "0.0.0.0", "port": 6081}, "datapath": "ebpf"}
    with GwlbFabric(connectors=("conn1",), geneve=settings, tag="gw0") as fabric:
        server = AppServer(fabric.ns("azapp"), 5432, echo)
        try:
            payload = os.urandom(256 * 1024)
            assert _exchange(fabric, "app", AZ_APP, 5432, payload) == payload
        finally:
            server.close()
        assert "transit-gnv-in" in _filters(fabric, "conn1")  # on c-gwlb, the link to 10.30.41.0/24
        assert _ebpf(fabric, "conn1", "decapsulated") > 0 and _ebpf(fabric, "conn1", "encapsulated") > 0
        assert _metric(fabric, "conn1", "delivered") == 0
        assert fabric.gwlb is not None and fabric.gwlb.bad_returns == 0
