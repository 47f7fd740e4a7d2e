"""Garbage on every listening port never stops an agent: random bytes, truncated TLS, malformed headers and frames."""
from __future__ import annotations

import os
import random
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address

import pytest

from dataplane.header import FLAG_END_TO_END, Status, StreamHeader, decode_reply
from tests.integration.conftest import AppServer, echo
from testbed.seed000 import AWS_APP, AZ_APP, CONNECTOR, EDGE_A, EDGE_B, Seed000, identity

pytestmark = pytest.mark.integration

# (agent, namespace to attack from, address) for each tunnel listener.
TUNNEL_TARGETS = [("conn", "edgea", CONNECTOR["edge"]), ("edgea", "conn", EDGE_A["conn"]), ("edgeb", "edgea", EDGE_B["private"])]
AGENTS = ("conn", "edgea", "edgeb")


@pytest.fixture(scope="module")
def seed() -> Iterator[Seed000]:
    with Seed000(tag="rob") as topology:
        server = AppServer(topology.ns("azapp"), 5432, echo)
        yield topology
        server.close()


def _all(calls: list[Callable[[], None]]) -> None:
    """Run the attacks at once (each may sit in a timeout) and wait for all of them."""
    with ThreadPoolExecutor(max_workers=32) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def _send(seed: Seed000, ns: str, address: tuple[str, int], blob: bytes, *, kind: int = socket.SOCK_STREAM) -> None:
    sock = seed.ns(ns).socket(kind)
    sock.settimeout(2)
    try:
        with sock:
            if kind == socket.SOCK_DGRAM:
                sock.sendto(blob, address)
                return
            sock.connect(address)
            sock.sendall(blob)
            try:
                sock.recv(4096)
            except OSError:
                pass
    except OSError:
        pass


def _client_hello() -> bytes:
    """The first flight of a real TLS 1.3 client, to cut short."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def _tls_send(seed: Seed000, ns: str, address: str, ctx: ssl.SSLContext, blob: bytes) -> None:
    sock = seed.ns(ns).socket()
    sock.settimeout(3)
    try:
        sock.connect((address, 7443))
        tls = ctx.wrap_socket(sock, server_side=False)
        tls.sendall(blob)
        try:
            tls.recv(4096)
        except (OSError, ssl.SSLError):
            pass
    except (OSError, ssl.SSLError):
        pass
    finally:
        sock.close()


def _all_alive(seed: Seed000) -> None:
    for node in AGENTS:
        proc = seed.agents[node].proc
        assert proc is not None and proc.poll() is None, f"agent {node} died:\n{seed.agents[node].log()[-3000:]}"
    assert seed.round_trip(b"alive")


def test_random_bytes_on_every_port(seed: Seed000) -> None:
    rng = random.Random(3)
    blobs = [b"", b"\x00", os.urandom(5), os.urandom(300), os.urandom(70000), b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\xff\xff" + os.urandom(100)]
    calls: list[Callable[[], None]] = []
    for _node, ns, address in TUNNEL_TARGETS:
        calls += [lambda ns=ns, address=address, blob=blob: _send(seed, ns, (address, 7443), blob) for blob in blobs]
    for node in AGENTS:
        for blob in blobs:
            calls.append(lambda node=node, blob=blob: _send(seed, node, ("127.0.0.1", 9464), blob))  # metrics
            calls.append(lambda node=node, blob=blob: _send(seed, node, ("127.0.0.1", 7440), blob))  # interception listener
            calls.append(lambda node=node, blob=blob: _send(seed, node, ("127.0.0.1", 7444), blob[:1400], kind=socket.SOCK_DGRAM))
        datagrams = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))) for _ in range(50)]
        calls += [lambda node=node, blob=blob: _send(seed, node, ("127.0.0.1", 7444), blob, kind=socket.SOCK_DGRAM) for blob in datagrams]
    _all(calls)
    _all_alive(seed)


def test_truncated_tls_on_every_tunnel_port(seed: Seed000) -> None:
    hello = _client_hello()
    _all([
        lambda ns=ns, address=address, cut=cut: _send(seed, ns, (address, 7443), hello[:cut])
        for _node, ns, address in TUNNEL_TARGETS
        for cut in (1, 5, len(hello) // 2, len(hello) - 1, len(hello))
    ])
    for _node, ns, address in TUNNEL_TARGETS:
        # A handshake that stops half way, left hanging: the handshake timeout frees it.
        sock = seed.ns(ns).socket()
        sock.connect((address, 7443))
        sock.sendall(hello[: len(hello) // 2])
        time.sleep(0.1)
        sock.close()
    _all_alive(seed)


def test_malformed_headers_and_frames_from_trusted_members(seed: Seed000) -> None:
    as_conn = seed.member_context("conn")
    # The fabric runs end to end: a header of the other mode would be refused before any frame is read.
    good = StreamHeader(IPv4Address(AWS_APP), IPv4Address(AZ_APP), 40000, 5432, identity("conn"), 7, flags=FLAG_END_TO_END)
    e2e = StreamHeader(IPv4Address(AWS_APP), IPv4Address(AZ_APP), 40000, 5432, identity("conn"), 8, flags=FLAG_END_TO_END)
    blobs = [
        os.urandom(200),                                      # not a header
        good.encode()[:10],                                   # a header cut short
        b"MCT\x01\x06\x04\x00\x00" + os.urandom(40),          # right magic, garbage after
        b"MCT\x01\x2f\x04\x00\x00" + good.encode()[8:],       # GRE is not carried
        good.encode() + struct.pack("!I", 0xFFFFFFFF) + b"x",  # a frame longer than allowed
        good.encode() + struct.pack("!I", 100) + b"short",    # a frame cut short by the close
        good.encode() + bytes(4) + b"after the end frame",    # bytes after the end frame
        e2e.encode() + os.urandom(300),                       # end-to-end: garbage where close_notify belongs
        e2e.encode(),                                         # end-to-end: then silence until the timeout
    ]
    calls: list[Callable[[], None]] = []
    for blob in blobs:
        calls.append(lambda blob=blob: _tls_send(seed, "conn", EDGE_A["conn"], as_conn, blob))      # relay at edge A
        # egress at edge B: the connector's own stream, as it arrives spliced through edge A (frames read at once)
        calls.append(lambda blob=blob: _tls_send(seed, "edgea", EDGE_B["private"], as_conn, blob))
    _all(calls)
    _all_alive(seed)
    assert seed.agents["edgea"].wait_for("tunnel.reject")
    assert seed.agents["edgeb"].wait_for("tunnel.reject")


@pytest.mark.parametrize("flags", [0, FLAG_END_TO_END], ids=["hop-by-hop", "end-to-end"])
@pytest.mark.parametrize("dst", ["192.0.2.10", "10.30.40.99"], ids=["nowhere", "back-where-it-came-from"])
def test_a_relay_refuses_what_it_cannot_route_onward(seed: Seed000, flags: int, dst: str) -> None:
    """Edge A answers NO_ROUTE for a destination no peer holds, and for one that would go back to the sender."""
    header = StreamHeader(IPv4Address(AWS_APP), IPv4Address(dst), 40000, 5432, identity("conn"), 11, flags=flags)
    mode = seed.read_config("edgea")
    try:
        if not flags:  # an agent only takes headers of its own mode: run edge A hop-by-hop for this one
            seed.reload("edgea", {**mode, "end_to_end": False})
        with seed.open_stream("conn", EDGE_A["conn"], header) as tls:
            assert decode_reply(tls.recv(64)) == (Status.NO_ROUTE, None)
        assert seed.agents["edgea"].wait_for(f"flow.no_route dst={dst}")
    finally:
        if not flags:
            seed.reload("edgea", mode)

