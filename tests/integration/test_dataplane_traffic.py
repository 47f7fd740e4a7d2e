"""Seed 000 end to end: permitted flows pass transparently, denied ones are refused, no plaintext on tunnel links."""
from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import AppServer, capture, echo
from testbed.seed000 import AWS_APP, AZ_APP, DEFAULT_POLICY, TUNNEL_LINKS, Seed000

pytestmark = pytest.mark.integration

# Edge B alone denies 8081: the connector's ingress check lets it through, so only egress can stop it.
EDGE_B_POLICY = {
    "default": "deny",
    "rules": [{"name": "egress-only-deny", "action": "deny", "proto": "tcp", "ports": [8081]}, *DEFAULT_POLICY["rules"]],
}


@pytest.fixture(scope="module", params=[True, False], ids=["end-to-end", "hop-by-hop"])
def seed(request: pytest.FixtureRequest) -> Iterator[Seed000]:
    overrides = {node: {"end_to_end": request.param} for node in ("conn", "edgea", "edgeb")}
    overrides["edgeb"]["filter"] = EDGE_B_POLICY
    with Seed000(overrides=overrides, tag="trf") as topology:
        yield topology


@pytest.fixture(scope="module")
def servers(seed: Seed000) -> Iterator[dict[str, AppServer]]:
    made = {
        "db": AppServer(seed.ns("azapp"), 5432, echo),
        "web": AppServer(seed.ns("azapp"), 8081, echo),
        "ssh": AppServer(seed.ns("azapp"), 22, echo),
        "closed": AppServer(seed.ns("azapp"), 5433, echo),
        "aws": AppServer(seed.ns("awsapp"), 9000, echo),
    }
    yield made
    for server in made.values():
        server.close()


def _exchange(seed: Seed000, ns: str, dst: str, port: int, payload: bytes, timeout: float = 10) -> bytes:
    sock = seed.ns(ns).socket()
    sock.settimeout(timeout)
    with sock:
        sock.connect((dst, port))
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while data := sock.recv(262144):
            chunks.append(data)
        return b"".join(chunks)


def test_permitted_flow_passes_transparently(seed: Seed000, servers: dict[str, AppServer]) -> None:
    payload = os.urandom(4 * 1024 * 1024)
    before = len(servers["db"].peers)
    echoed = _exchange(seed, "awsapp", AZ_APP, 5432, payload)
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    # The app connected to the remote address itself and the server saw the real client address.
    assert servers["db"].peers[before][0] == AWS_APP


def test_reverse_direction_from_native_network(seed: Seed000, servers: dict[str, AppServer]) -> None:
    assert _exchange(seed, "azapp", AWS_APP, 9000, b"from azure") == b"from azure"
    assert servers["aws"].peers[-1][0] == AZ_APP


@pytest.mark.parametrize("port,rule", [(22, "no-ssh"), (5433, "default")])
def test_denied_at_ingress_is_refused_at_once(seed: Seed000, servers: dict[str, AppServer], port: int, rule: str) -> None:
    sock = seed.ns("awsapp").socket()
    sock.settimeout(5)
    started = time.perf_counter()
    with sock, pytest.raises(ConnectionRefusedError):
        sock.connect((AZ_APP, port))
    elapsed = time.perf_counter() - started
    print(f"\ningress deny port {port}: refused in {elapsed * 1000:.1f} ms")
    assert elapsed < 0.5
    assert not [peer for peer in servers["ssh" if port == 22 else "closed"].peers if peer[0] == AWS_APP]


def test_denied_at_egress_is_reset(seed: Seed000, servers: dict[str, AppServer]) -> None:
    sock = seed.ns("awsapp").socket()
    sock.settimeout(5)
    started = time.perf_counter()
    with sock:
        sock.connect((AZ_APP, 8081))  # the connector accepts: its own policy permits 8081
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
    elapsed = time.perf_counter() - started
    print(f"\negress deny: reset in {elapsed * 1000:.1f} ms")
    assert elapsed < 1.0
    assert servers["web"].peers == []
    assert seed.agents["edgeb"].wait_for("flow.deny stage=egress")
    assert "rule=egress-only-deny" in seed.agents["edgeb"].log()


def test_no_plaintext_between_connector_and_far_edge(seed: Seed000, servers: dict[str, AppServer], tmp_path: Path) -> None:
    marker = b"PLAINTEXT-MARKER-" + os.urandom(4).hex().encode()
    links = [*TUNNEL_LINKS, ("awsapp", "eth0")]  # the app link is the control: the marker must show there
    captures = {link: tmp_path / f"{link[0]}-{link[1]}.pcap" for link in links}
    procs = [capture(seed.ns(ns), ifname, path) for (ns, ifname), path in captures.items()]
    try:
        for _ in range(3):
            assert _exchange(seed, "awsapp", AZ_APP, 5432, marker * 200) == marker * 200
        time.sleep(0.5)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=5)
    sizes = {link: path.stat().st_size for link, path in captures.items()}
    assert marker in captures[("awsapp", "eth0")].read_bytes(), "control capture must see the plaintext"
    for link in TUNNEL_LINKS:
        data = captures[link].read_bytes()
        assert marker not in data, f"plaintext on {link}"
    assert sizes[("conn", "c-edge")] > len(marker) * 200
    assert sizes[("edgea", "a-priv")] > len(marker) * 200
