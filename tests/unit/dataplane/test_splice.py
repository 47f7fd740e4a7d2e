"""The kernel relay: megabytes and half-closes cross both ways (idle, abort, reset and parking: test_pump_contract)."""
from __future__ import annotations

import os
import socket
import threading

from dataplane.pump import Outcome, PumpResult
from dataplane.splice import SplicePump


def _pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        left = socket.create_connection(listener.getsockname())
        right, _ = listener.accept()
    return left, right


def _run(pump: SplicePump) -> tuple[threading.Thread, dict[str, PumpResult]]:
    box: dict[str, PumpResult] = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", pump.run()))
    thread.start()
    return thread, box


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(1 << 20):
        chunks.append(data)
    return b"".join(chunks)


def test_bytes_and_half_close_cross_both_ways() -> None:
    client, a = _pair()
    b, server = _pair()
    thread, box = _run(SplicePump(a, b, idle=10))
    up, down = os.urandom(3_000_003), os.urandom(1_000_001)
    got: dict[str, bytes] = {}
    serving = threading.Thread(target=lambda: (got.setdefault("up", _read_all(server)), server.sendall(down), server.shutdown(socket.SHUT_WR)))
    serving.start()
    client.sendall(up)
    client.shutdown(socket.SHUT_WR)
    assert _read_all(client) == down
    serving.join(5)
    thread.join(5)
    assert got["up"] == up
    result = box["result"]
    assert (result.outcome, result.up, result.down) == (Outcome.CLOSED, len(up), len(down))
