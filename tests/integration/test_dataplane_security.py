"""Trust: only the fabric CA and the configured identities get in, in either direction."""
from __future__ import annotations

import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from dataplane import pki
from dataplane.config import TlsPaths
from dataplane.header import FLAG_END_TO_END, StreamHeader
from dataplane.tls import build_contexts
from tests.integration.conftest import AppServer, echo
from testbed.seed000 import AWS_APP, AZ_APP, EDGE_A, EDGE_B, FABRIC, Seed000, identity

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=[True, False], ids=["end-to-end", "hop-by-hop"])
def seed(request: pytest.FixtureRequest) -> Iterator[Seed000]:
    overrides = {node: {"end_to_end": request.param} for node in ("conn", "edgea", "edgeb")}
    with Seed000(tag="sec", overrides=overrides) as topology:
        server = AppServer(topology.ns("azapp"), 5432, echo)
        yield topology
        server.close()


def _contexts(folder: Path, ca: pki.KeyPair, node_identity: str) -> ssl.SSLContext:
    ca_path, cert, key = pki.write_node_files(folder, ca.cert_pem, pki.issue(ca, node_identity))
    return build_contexts(TlsPaths(ca=ca_path, cert=cert, key=key)).client


def _dial(seed: Seed000, ns: str, ctx: ssl.SSLContext, address: str) -> Exception | None:
    """Handshake with an agent's tunnel port and try one exchange; the error, or None if it let us in."""
    sock = seed.ns(ns).socket()
    sock.settimeout(5)
    try:
        sock.connect((address, 7443))
        tls = ctx.wrap_socket(sock, server_side=False)
        tls.sendall(b"x")
        if tls.recv(1) == b"":
            return ConnectionError("closed")
        return None
    except (OSError, ssl.SSLError) as exc:
        return exc
    finally:
        sock.close()


def test_peer_with_certificate_from_another_ca_is_refused(seed: Seed000) -> None:
    rogue = _contexts(seed.workdir / "rogue", pki.create_ca(FABRIC), identity("conn"))
    error = _dial(seed, "conn", rogue, EDGE_A["conn"])
    assert isinstance(error, (ssl.SSLError, ConnectionError, OSError))
    assert seed.agents["edgea"].wait_for("tunnel.reject")
    assert seed.round_trip(b"still ok")


def test_fabric_member_with_unexpected_identity_is_refused(seed: Seed000) -> None:
    stranger = _contexts(seed.workdir / "stranger", seed.ca, identity("stranger"))
    error = _dial(seed, "conn", stranger, EDGE_A["conn"])
    assert error is not None
    assert seed.agents["edgea"].wait_for("reason=PeerIdentityError")
    assert seed.round_trip(b"still ok")


def test_agent_refuses_a_far_edge_from_another_ca(seed: Seed000) -> None:
    """Edge B is replaced by an impostor with a foreign certificate: edge A must not hand it the stream."""
    edgeb = seed.agents["edgeb"]
    edgeb.signal(signal.SIGTERM)
    assert edgeb.proc is not None and edgeb.proc.wait(timeout=15) == 0
    impostor_ca = pki.create_ca(FABRIC)
    folder = seed.workdir / "impostor"
    ca_path, cert, key = pki.write_node_files(folder, impostor_ca.cert_pem, pki.issue(impostor_ca, identity("edgeb")))
    server_ctx = build_contexts(TlsPaths(ca=ca_path, cert=cert, key=key)).server
    listener = seed.ns("edgeb").socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((EDGE_B["private"], 7443))
    listener.listen(16)
    received: list[bytes] = []
    handshakes: list[str] = []

    def impostor() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.settimeout(3)
            try:
                tls = server_ctx.wrap_socket(conn, server_side=True)
                handshakes.append("completed")
                received.append(tls.recv(4096))
            except (OSError, ssl.SSLError) as exc:
                handshakes.append(type(exc).__name__)
            finally:
                conn.close()

    thread = threading.Thread(target=impostor, daemon=True)
    thread.start()
    try:
        assert not seed.round_trip(b"still ok")
        assert not any(received), f"the impostor received stream bytes: {received!r}"
        if seed.read_config("conn")["end_to_end"]:
            # Edge A splices; the connector's own session with the far end is what fails.
            assert seed.agents["conn"].wait_for("tunnel.dial_failed peer=edgea error=SSLCertVerificationError")
        else:
            assert seed.agents["edgea"].wait_for("tunnel.dial_failed peer=edgeb error=SSLCertVerificationError")
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() so the port is really free
        listener.close()
        thread.join(timeout=5)
    seed.start_agent("edgeb")
    seed.wait_ready("edgeb")
    assert seed.round_trip(b"still ok")


def test_end_to_end_streams_from_non_peers_are_limited(seed: Seed000) -> None:
    """A fabric member that is no peer may only open an end-to-end stream of its own to a destination delivered here."""
    stranger = _contexts(seed.workdir / "stranger-e2e", seed.ca, identity("stranger"))
    forged = StreamHeader(IPv4Address(AWS_APP), IPv4Address(AZ_APP), 40000, 5432, identity("conn"), 1, flags=FLAG_END_TO_END)
    relayed = StreamHeader(IPv4Address(AWS_APP), IPv4Address(AZ_APP), 40000, 5432, identity("stranger"), 2, flags=FLAG_END_TO_END)
    before_b = seed.agents["edgeb"].log().count("reason=PeerIdentityError")
    before_a = seed.agents["edgea"].log().count("reason=PeerIdentityError")
    for address, ns, header in ((EDGE_B["private"], "edgea", forged), (EDGE_A["conn"], "conn", relayed)):
        sock = seed.ns(ns).socket()
        sock.settimeout(5)
        with sock:
            sock.connect((address, 7443))
            tls = stranger.wrap_socket(sock, server_side=False)
            tls.sendall(header.encode())
            with pytest.raises((ConnectionResetError, ssl.SSLError)):
                if tls.recv(10) == b"":
                    raise ConnectionResetError("closed")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not (
        seed.agents["edgeb"].log().count("reason=PeerIdentityError") > before_b
        and seed.agents["edgea"].log().count("reason=PeerIdentityError") > before_a
    ):
        time.sleep(0.02)
    assert seed.agents["edgeb"].log().count("reason=PeerIdentityError") > before_b  # forged identity in the header
    assert seed.agents["edgea"].log().count("reason=PeerIdentityError") > before_a  # a non-peer cannot use a relay
    assert seed.round_trip(b"still ok")
