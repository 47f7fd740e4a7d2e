"""What an outsider can make the GENEVE listener spend is bounded: a flood of new flows, oversize and foreign packets.

The attacker sits where a compromised host of the load balancer's subnet
would (the emulator's socket, inside `gwlb_cidrs`) and outside it (the
workload). The flow table stays at `flow_limit`, flows already carried keep
working, new ones work again once the flood's entries age out, the worker's
memory stays flat, and every refused packet is counted. On both data paths:
the user-space worker refuses a new flow when its table is full; the eBPF
fast path's table is an LRU, which forgets the least recently used flow (a
carried flow is learned again from its next packet through the load balancer).
"""
from __future__ import annotations

import json
import socket
import struct
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane.geneve.packet import encode
from tests.integration.conftest import AppServer, echo
from testbed.gwlb import AZ_APP, TARGETS, GwlbFabric
from testbed.netns import in_netns

pytestmark = pytest.mark.integration

FLOW_LIMIT = 64
FLOW_IDLE = 3.0


@pytest.fixture(scope="module", params=["ebpf", "user"])
def datapath(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def fabric(datapath: str) -> Iterator[GwlbFabric]:
    settings = {"flow_limit": FLOW_LIMIT, "flow_idle": FLOW_IDLE, "datapath": datapath}
    with GwlbFabric(connectors=("conn1",), mtu=1500, geneve=settings, tag="gwa") as topology:
        yield topology


def _metrics(fabric: GwlbFabric) -> dict[str, float]:
    def fetch() -> str:
        with urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=3) as response:
            return response.read().decode()

    found: dict[str, float] = {}
    for line in in_netns(fabric.ns("conn1").name, fetch).splitlines():
        if line.startswith("transit_geneve_packets_total{"):
            found[line.split('"')[1]] = float(line.split()[-1])
        elif line.startswith("transit_geneve_ebpf_packets_total{"):
            found["ebpf_" + line.split('"')[1]] = float(line.split()[-1])
        elif line.startswith("transit_geneve_flows "):
            found["flows"] = float(line.split()[-1])
        elif line.startswith("transit_geneve_ebpf_flows "):
            found["ebpf_flows"] = float(line.split()[-1])
    return found


def _worker_rss_kb(fabric: GwlbFabric) -> int:
    log = fabric.agents["conn1"].current_log()
    pid = log.rsplit(" worker=", 1)[1].split()[0]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _udp(src_port: int, size: int = 8) -> bytes:
    """An IPv4/UDP packet from 10.30.40.10:src_port to 172.18.40.10:9 with `size` bytes of UDP (header included)."""
    total = 20 + size
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 17, 0, socket.inet_aton("10.30.40.10"), socket.inet_aton(AZ_APP))
    return header + struct.pack("!HHHH", src_port, 9, size, 0) + bytes(size - 8)


def _round_trip(sock: socket.socket, payload: bytes) -> bool:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            return False
        received += chunk
    return received == payload


def test_a_flood_of_new_flows_fills_the_table_to_its_limit_and_never_evicts_a_flow_in_progress(fabric: GwlbFabric, datapath: str) -> None:
    gwlb = fabric.gwlb
    assert gwlb is not None
    server = AppServer(fabric.ns("azapp"), 5432, echo)
    carried = fabric.ns("app").socket()
    carried.settimeout(5)
    try:
        carried.connect((AZ_APP, 5432))
        assert _round_trip(carried, b"before")
        before, rss_before = _metrics(fabric), _worker_rss_kb(fabric)
        for port in range(20000, 25000):  # 5,000 new flows from inside the load balancer's subnet
            gwlb.send_raw(TARGETS["conn1"], encode(_udp(port), endpoint_id=1, attachment_id=2, flow_cookie=port))
            if port % 500 == 0:
                time.sleep(0.01)  # let the worker keep up: the point is the table, not the socket buffer
        time.sleep(1.0)
        after = _metrics(fabric)
        assert after["flows"] <= FLOW_LIMIT and after.get("ebpf_flows", 0) <= FLOW_LIMIT
        if datapath == "user":
            refused = after.get("flow_table_full", 0) - before.get("flow_table_full", 0)
            learned = after.get("delivered", 0) - before.get("delivered", 0)
            assert refused >= 5000 - FLOW_LIMIT - 10 and refused + learned >= 4990, (refused, learned)
        else:  # every flood flow learned (the LRU made room) and decapsulated; nothing reached the worker
            learned = after.get("ebpf_learned", 0) - before.get("ebpf_learned", 0)
            assert learned >= 4900 and after.get("ebpf_flows", 0) >= FLOW_LIMIT // 2, (learned, after)
            assert after.get("delivered", 0) == before.get("delivered", 0)
        assert _round_trip(carried, b"during")  # the flow already carried keeps its entry and its path
        assert _worker_rss_kb(fabric) - rss_before < 8 * 1024  # no memory per refused flow
        deadline = time.monotonic() + FLOW_IDLE + 5
        while time.monotonic() < deadline:  # the flood's entries age out; a new flow gets in again
            fresh = fabric.ns("app").socket()
            fresh.settimeout(1)
            try:
                fresh.connect((AZ_APP, 5432))
                if _round_trip(fresh, b"after"):
                    break
            except OSError:
                pass
            finally:
                fresh.close()
            time.sleep(0.5)
        else:
            pytest.fail("no new flow got through after the flood aged out")
    finally:
        carried.close()
        server.close()


def test_oversize_unknown_option_and_foreign_packets_are_dropped_and_counted(fabric: GwlbFabric) -> None:
    gwlb = fabric.gwlb
    assert gwlb is not None
    before = _metrics(fabric)
    big = _udp(30000, size=1600)  # larger than the TUN's 1,500-byte MTU
    for _ in range(50):
        gwlb.send_raw(TARGETS["conn1"], encode(big, endpoint_id=1, attachment_id=2, flow_cookie=3))
    unknown = encode(_udp(30001), endpoint_id=1, attachment_id=2, flow_cookie=3)
    unknown = struct.pack("!BBHI", 9, 0, 0x0800, 0) + unknown[8:40] + bytes.fromhex("01080900") + unknown[40:]
    for _ in range(50):
        gwlb.send_raw(TARGETS["conn1"], unknown)
    outsider = fabric.ns("app").socket(socket.SOCK_DGRAM)
    with outsider:
        for port in range(31000, 31200):
            outsider.sendto(encode(_udp(port), endpoint_id=1, attachment_id=2, flow_cookie=port), (TARGETS["conn1"], 6081))
    time.sleep(0.5)
    after = _metrics(fabric)
    assert after.get("oversize", 0) - before.get("oversize", 0) == 50
    assert after.get("unknown_option", 0) - before.get("unknown_option", 0) == 50
    assert after.get("foreign_source", 0) - before.get("foreign_source", 0) >= 190  # UDP may drop a few under load
    assert after["flows"] <= FLOW_LIMIT
    status = in_netns(fabric.ns("conn1").name, lambda: urllib.request.urlopen("http://127.0.0.1:9464/healthz", timeout=3).status)
    assert status == 200
    assert json.loads(in_netns(fabric.ns("conn1").name, lambda: urllib.request.urlopen("http://127.0.0.1:9464/healthz", timeout=3).read()))["checks"]["geneve"]["ok"]
