"""The one ingress path: a TCP connection, a UDP session and an ICMP echo flow meet the same checks.

Real sockets on loopback and a real Forwarder; the runtime holds a real
config, router, compiled policy and trust. Each refusal happens before a
tunnel is taken, so the pool must never be touched.
"""
from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pytest

from dataplane.config import parse_config
from dataplane.datagram_endpoints import Endpoint
from dataplane.filter_compile import compile_policy
from dataplane.forward import FlowRecord, Forwarder, Router, Runtime
from dataplane.header import ICMP, TCP, UDP, Status
from dataplane.trust import Trust

ME, EDGE, FAR = (f"spiffe://acme/{n}" for n in ("conn", "edgea", "edgeb"))
PERMIT_LOOPBACK = {"default": "deny", "rules": [{"name": "to-loopback", "action": "permit", "dst": ["127.0.0.0/8"]}]}


def _runtime(*, policy: dict[str, object], peer_cidrs: list[str], far_cidrs: list[str]) -> Runtime:
    config = parse_config({
        "name": "conn", "role": "connector", "identity": ME, "local_cidrs": ["10.30.40.0/24"],
        "peers": [{"name": "edgea", "identity": EDGE, "private_addr": "100.64.37.1", "cidrs": peer_cidrs}],
        "members": [{"identity": ME, "cidrs": ["10.30.40.0/24"]}, {"identity": EDGE}, {"identity": FAR, "cidrs": far_cidrs}],
        "filter": policy,
        "tls": {"ca": "ca.pem", "cert": "node.pem", "key": "node.key"},
    })
    # No TLS contexts: every case here ends before a tunnel or a handshake.
    return Runtime(config, None, Router(config), compile_policy(config.filter), Trust.from_config(config))  # type: ignore[arg-type]


class _Untouchable:
    """A pool, parking or worker pool that fails the test if the ingress reaches it."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the ingress reached {name} for a flow it should have refused")


@dataclass
class _App:
    """What the application side heard."""

    refused: list[Status] = field(default_factory=list)
    closed: bool = False
    reset: bool = False


def _forwarder(rt: Runtime, records: list[FlowRecord]) -> Forwarder:
    untouchable = _Untouchable()
    return Forwarder(runtime=lambda: rt, pool=untouchable, parking=untouchable, workers=untouchable, on_flow=records.append)  # type: ignore[arg-type]


@pytest.fixture
def loopback() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server
    server.close()


def _open(kind: int, forwarder: Forwarder, loopback: socket.socket, app: _App) -> None:
    """Hand one flow of `kind` to the ingress, as the interception would, and record what its application heard."""
    if kind == TCP:
        client = socket.create_connection(loopback.getsockname())
        accepted, _ = loopback.accept()
        try:
            forwarder.handle_intercepted(accepted)
            client.settimeout(2)
            try:
                app.closed = client.recv(1) == b""
            except ConnectionResetError:
                app.closed = app.reset = True
        finally:
            client.close()
        return
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    writer.close()

    def closed() -> None:
        app.closed = True

    endpoint = Endpoint([reader], lambda _payload: None, refuse=app.refused.append, on_close=closed)
    sport, dport = (40000, 53) if kind == UDP else (7, 0)
    forwarder.handle_datagrams(endpoint, IPv4Address("127.0.0.2"), sport, IPv4Address("127.0.0.1"), dport, kind, [b"\x00\x01ping"])


KINDS = pytest.mark.parametrize("kind", [TCP, UDP, ICMP], ids=["tcp", "udp", "icmp"])


@KINDS
def test_a_flow_the_policy_denies_is_refused_and_logged_whatever_its_kind(kind: int, loopback: socket.socket) -> None:
    records: list[FlowRecord] = []
    app = _App()
    rt = _runtime(policy={"default": "deny", "rules": []}, peer_cidrs=["127.0.0.0/8"], far_cidrs=["127.0.0.0/8"])
    _open(kind, _forwarder(rt, records), loopback, app)
    assert app.closed
    assert app.reset if kind == TCP else app.refused == [Status.DENIED]
    [record] = records
    assert (record.role, record.verdict, record.outcome, record.peer) == ("ingress", "deny", "refused", None)
    assert record.proto == {TCP: "tcp", UDP: "udp", ICMP: "icmp"}[kind]


@KINDS
def test_a_flow_without_a_route_is_dropped_without_a_refusal_whatever_its_kind(kind: int, loopback: socket.socket) -> None:
    records: list[FlowRecord] = []
    app = _App()
    rt = _runtime(policy=PERMIT_LOOPBACK, peer_cidrs=["100.100.0.0/16"], far_cidrs=["127.0.0.0/8"])
    _open(kind, _forwarder(rt, records), loopback, app)
    assert app.closed and not app.refused
    [record] = records
    assert (record.verdict, record.outcome, record.rule) == ("error", "refused", "to-loopback")


@KINDS
def test_an_end_to_end_flow_nobody_delivers_never_takes_a_tunnel_whatever_its_kind(kind: int, loopback: socket.socket) -> None:
    """The session would have nobody to be pinned to: it is dropped before anything is sent to the peer."""
    records: list[FlowRecord] = []
    app = _App()
    rt = _runtime(policy=PERMIT_LOOPBACK, peer_cidrs=["127.0.0.0/8"], far_cidrs=["172.18.40.0/24"])
    _open(kind, _forwarder(rt, records), loopback, app)
    assert app.closed and not app.refused
    [record] = records
    assert (record.verdict, record.outcome, record.peer, record.dst_identity) == ("error", "reset", "edgea", "")
