"""The kernel relay: bytes and half-closes cross both ways, resets and aborts end it."""
from __future__ import annotations

import os
import socket
import threading

from dataplane.relay import Outcome, PumpResult
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


def test_reset_on_one_side_resets_the_other_and_abort_works() -> None:
    client, a = _pair()
    b, server = _pair()
    pump = SplicePump(a, b, idle=10)
    thread, box = _run(pump)
    client.sendall(b"ping")
    assert server.recv(4) == b"ping"
    pump.abort()
    thread.join(5)
    assert box["result"].outcome is Outcome.ABORTED
    for sock in (client, server):
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass


def test_quiet_splice_parks_and_resumes() -> None:
    client, a = _pair()
    b, server = _pair()
    pump = SplicePump(a, b, idle=10, park_after=0.2)
    thread, box = _run(pump)
    client.sendall(b"one")
    assert server.recv(3) == b"one"
    thread.join(5)
    assert box["result"].outcome is Outcome.PARKED
    client.sendall(b"two")
    thread, box = _run(pump)
    assert server.recv(3) == b"two"
    client.close()
    server.close()
    thread.join(5)
    assert box["result"].outcome in (Outcome.CLOSED, Outcome.RESET)
