"""Warm tunnels: a session ticket keeps a tunnel usable, a close does not, at any descriptor number."""
from __future__ import annotations

import resource
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataplane import pki
from dataplane.config import TlsPaths
from dataplane.tls import TlsContexts, build_contexts, peer_cert
from dataplane.tunnel import Tunnel


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[TlsContexts, TlsContexts]:
    tmp = tmp_path_factory.mktemp("tun")
    ca = pki.create_ca("acme")
    made = []
    for name in ("a", "b"):
        ca_path, cert, key = pki.write_node_files(tmp / name, ca.cert_pem, pki.issue(ca, f"spiffe://acme/{name}"))
        made.append(build_contexts(TlsPaths(ca=ca_path, cert=cert, key=key)))
    return made[0], made[1]


@pytest.fixture
def server(pair: tuple[TlsContexts, TlsContexts]) -> Iterator[tuple[tuple[str, int], list[ssl.SSLSocket]]]:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[ssl.SSLSocket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
                accepted.append(pair[0].server.wrap_socket(conn, server_side=True))
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname(), accepted
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    for sock in accepted:
        sock.close()


def _tunnel(pair: tuple[TlsContexts, TlsContexts], address: tuple[str, int]) -> Tunnel:
    sock = pair[1].client.wrap_socket(socket.create_connection(address))
    sock.settimeout(3)
    time.sleep(0.05)  # the server's session ticket arrives
    return Tunnel(sock, "a", "private", peer_cert(sock))


def test_ticket_keeps_a_tunnel_alive_and_a_close_ends_it(pair: tuple[TlsContexts, TlsContexts], server: tuple[tuple[str, int], list[ssl.SSLSocket]]) -> None:
    address, accepted = server
    tunnel = _tunnel(pair, address)
    assert tunnel.alive()
    assert tunnel.sock.session is not None and tunnel.sock.session.has_ticket
    assert tunnel.sock.gettimeout() == 3
    accepted[-1].close()
    time.sleep(0.05)
    assert not tunnel.alive()


def test_alive_works_past_descriptor_1024(pair: tuple[TlsContexts, TlsContexts], server: tuple[tuple[str, int], list[ssl.SSLSocket]]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1400:
        pytest.skip("needs a file limit above 1400")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
    filler = [socket.socket() for _ in range(1100)]
    try:
        tunnel = _tunnel(pair, server[0])
        assert tunnel.sock.fileno() > 1024
        assert tunnel.alive()
        tunnel.sock.close()
    finally:
        for sock in filler:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
