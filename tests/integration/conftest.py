"""Integration fixtures: skip cleanly where namespaces cannot be made; helpers for app traffic."""
from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbed.netns import Netns


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Integration tests need root, iproute2 and nft; say so instead of failing."""
    if os.geteuid() == 0 and shutil.which("ip") and shutil.which("nft"):
        return
    skip = pytest.mark.skip(reason="integration tests need root, iproute2 and nftables")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


class AppServer:
    """A TCP server inside a namespace: runs `handler(conn, peer)` per connection, records peers."""

    def __init__(self, ns: Netns, port: int, handler: Callable[[socket.socket], None]) -> None:
        self.peers: list[tuple[str, int]] = []
        self._handler = handler
        self._sock = ns.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("0.0.0.0", port))
        self._sock.listen(1024)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            self.peers.append(peer)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._handler(conn)
        except OSError:
            pass

    def close(self) -> None:
        """Stop accepting."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=2)


def echo(conn: socket.socket) -> None:
    """Echo until the client half-closes, then close."""
    while data := conn.recv(262144):
        conn.sendall(data)


@pytest.fixture
def app_servers() -> Iterator[list[AppServer]]:
    """Collects AppServers a test starts and closes them afterwards."""
    servers: list[AppServer] = []
    yield servers
    for server in servers:
        server.close()


def capture(ns: Netns, ifname: str, path: Path) -> subprocess.Popen[bytes]:
    """Start tcpdump (TCP, full packets, written as they arrive) and return once it is listening."""
    proc = ns.spawn("tcpdump", "--immediate-mode", "-i", ifname, "-U", "-s", "0", "-w", str(path), "tcp",
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], 10)
    assert ready and b"listening on" in proc.stderr.readline(), f"tcpdump on {ns.name}/{ifname} did not start"
    return proc
