"""The byte pump: framing end to end, half-close, truncation, replies (idle, abort and parking: test_pump_contract)."""
from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

from dataplane.header import Status, encode_reply
from dataplane.pump import Outcome, PumpResult
from dataplane.relay import END_FRAME, BytePump


def _pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on loopback (unlike AF_UNIX pairs, they can be reset)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        left = socket.create_connection(listener.getsockname())
        right, _ = listener.accept()
    return left, right


def _run(pump: BytePump) -> tuple[threading.Thread, dict[str, PumpResult]]:
    box: dict[str, PumpResult] = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", pump.run()))
    thread.start()
    return thread, box


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(1 << 20):
        chunks.append(data)
    return b"".join(chunks)


def _chain() -> tuple[socket.socket, socket.socket, list[threading.Thread], list[dict[str, PumpResult]]]:
    """client -> [ingress pump] -> tunnel -> [relay pump] -> tunnel -> [egress pump] -> server."""
    client, app = _pair()
    t1a, t1b = _pair()
    t2a, t2b = _pair()
    dst, server = _pair()
    # The egress side answers OK before relaying, as forward.Forwarder does.
    t2b.sendall(encode_reply(Status.OK))
    pumps = [
        BytePump(app, t1a, idle=10, framed="b", expect_reply=True),
        BytePump(t1b, t2a, idle=10),
        BytePump(t2b, dst, idle=10, framed="a"),
    ]
    runs = [_run(p) for p in pumps]
    return client, server, [t for t, _ in runs], [b for _, b in runs]


def test_bytes_cross_both_ways_with_half_close() -> None:
    client, server, threads, boxes = _chain()
    request = os.urandom(3 * 1024 * 1024 + 17)
    answer = os.urandom(2 * 1024 * 1024 + 5)
    received: dict[str, bytes] = {}

    def serve() -> None:
        received["request"] = _read_all(server)  # ends when the client's FIN arrives as the end frame
        server.sendall(answer)
        server.shutdown(socket.SHUT_WR)

    serving = threading.Thread(target=serve)
    serving.start()
    client.sendall(request)
    client.shutdown(socket.SHUT_WR)
    assert _read_all(client) == answer
    serving.join(5)
    for thread in threads:
        thread.join(5)
    assert received["request"] == request
    results = [box["result"] for box in boxes]
    assert [r.outcome for r in results] == [Outcome.CLOSED] * 3
    assert results[0].up == len(request) and results[0].down == len(answer)
    assert results[2].up == len(request) and results[2].down == len(answer)
    assert results[0].status is Status.OK


def test_truncated_tunnel_resets_the_application() -> None:
    server_side, app = _pair()
    tunnel, far = _pair()
    thread, box = _run(BytePump(tunnel, app, idle=10, framed="a"))
    far.sendall(struct.pack("!I", 10) + b"hello")  # half a frame, then the tunnel just ends
    far.shutdown(socket.SHUT_WR)
    thread.join(5)
    assert box["result"].outcome is Outcome.RESET
    assert "truncated" in (box["result"].error or "")
    assert server_side.recv(100) == b"hello"
    with pytest.raises(ConnectionResetError):
        server_side.recv(100)


def test_many_small_frames_arrive_whole_through_a_slow_destination() -> None:
    """Thousands of frames in one read become more payload spans than one sendmsg takes, and a
    small send buffer forces short writes that end inside a span: every byte arrives, in order."""
    sizes = [1 + (i * 7919) % 300 for i in range(6000)]
    payloads = [os.urandom(size) for size in sizes]
    blob = b"".join(struct.pack("!I", len(p)) + p for p in payloads) + END_FRAME
    server_side, app = _pair()
    app.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    tunnel, far = _pair()
    thread, box = _run(BytePump(tunnel, app, idle=10, framed="a"))
    far.sendall(blob)
    far.shutdown(socket.SHUT_WR)
    received = bytearray()
    while chunk := server_side.recv(1500):
        received += chunk
        time.sleep(0.0005 if len(received) % 7 == 0 else 0)
    server_side.close()
    far.close()
    thread.join(5)
    assert bytes(received) == b"".join(payloads)
    assert box["result"].up == sum(sizes)


@pytest.mark.parametrize("blob", [struct.pack("!I", 0xFFFFFFF0) + b"x", END_FRAME + b"extra"])
def test_malformed_frames_reset(blob: bytes) -> None:
    server_side, app = _pair()
    tunnel, far = _pair()
    thread, box = _run(BytePump(tunnel, app, idle=10, framed="a"))
    far.sendall(blob)
    thread.join(5)
    assert box["result"].outcome is Outcome.RESET
    far.close()
    server_side.close()


def test_refusal_reply_resets_the_application() -> None:
    client, app = _pair()
    tunnel, far = _pair()
    thread, box = _run(BytePump(app, tunnel, idle=10, framed="b", expect_reply=True))
    far.sendall(encode_reply(Status.DENIED, "no-ssh"))
    far.close()
    thread.join(5)
    result = box["result"]
    assert (result.outcome, result.status, result.rule) == (Outcome.REFUSED, Status.DENIED, "no-ssh")
    with pytest.raises(ConnectionResetError):
        client.recv(10)
