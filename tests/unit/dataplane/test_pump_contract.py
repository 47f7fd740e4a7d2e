"""The contract every pump keeps (dataplane.pump), held once over all three kinds.

Each rig puts a pump between two far ends the test drives: the application
beyond side a and the tunnel (or server) beyond side b. What crosses differs
(bytes, or datagrams framed on the tunnel); how a pump ends, idles, aborts,
parks and resumes must not.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from dataplane.datagram_endpoints import Endpoint
from dataplane.datagram_pump import DatagramPump, encode_frame
from dataplane.header import UDP
from dataplane.parking import Parking
from dataplane.pump import Outcome, Pump, PumpResult, reset
from dataplane.relay import BytePump
from dataplane.splice import SplicePump


def _pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on loopback (unlike AF_UNIX pairs, they can be reset)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        left = socket.create_connection(listener.getsockname())
        right, _ = listener.accept()
    for sock in (left, right):
        sock.settimeout(5)
    return left, right


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"closed after {len(data)} of {n} bytes"
        data += chunk
    return data


@dataclass
class Rig:
    """A pump and its two far ends: `app` beyond side a, `far` beyond side b."""

    pump: Pump
    app: socket.socket
    far: socket.socket
    to_far: Callable[[bytes], None]  # the application sends one unit
    at_far: Callable[[int], bytes]  # what reached beyond side b, as the application sent it
    to_app: Callable[[bytes], None]  # the far side sends one unit back
    at_app: Callable[[int], bytes]
    end: Callable[[], None]  # both far ends finish cleanly


def _byte_rig(kind: type[BytePump] | type[SplicePump], idle: float, park_after: float) -> Rig:
    app, a = _pair()
    b, far = _pair()
    pump = kind(a, b, idle=idle, park_after=park_after)

    def end() -> None:
        app.shutdown(socket.SHUT_WR)
        far.shutdown(socket.SHUT_WR)

    return Rig(pump, app, far, app.sendall, lambda n: _recv_exact(far, n), far.sendall, lambda n: _recv_exact(app, n), end)


def _datagram_rig(idle: float, park_after: float) -> Rig:
    near, app = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    app.settimeout(5)
    tunnel, far = _pair()
    pump = DatagramPump(Endpoint([near], near.send), tunnel, proto=UDP, idle=idle, park_after=park_after)

    def at_far(n: int) -> bytes:
        (length,) = struct.unpack("!H", _recv_exact(far, 2))
        assert length == n
        return _recv_exact(far, length)

    return Rig(pump, app, far, app.send, at_far, lambda data: far.sendall(encode_frame(UDP, data)), lambda n: app.recv(n), far.close)


RIGS: dict[str, Callable[[float, float], Rig]] = {
    "byte": lambda idle, park: _byte_rig(BytePump, idle, park),
    "splice": lambda idle, park: _byte_rig(SplicePump, idle, park),
    "datagram": _datagram_rig,
}


@pytest.fixture(params=list(RIGS))
def rig(request: pytest.FixtureRequest) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(idle: float = 10.0, park_after: float = 0.0) -> Rig:
        made.append(RIGS[request.param](idle, park_after))
        return made[-1]

    yield make
    for r in made:
        r.pump.abort()
        for sock in (r.app, r.far):
            sock.close()


def _start(pump: Pump) -> tuple[threading.Thread, dict[str, PumpResult]]:
    box: dict[str, PumpResult] = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", pump.run()))
    thread.start()
    return thread, box


def _result(thread: threading.Thread, box: dict[str, PumpResult]) -> PumpResult:
    thread.join(5)
    assert not thread.is_alive(), "the pump did not return"
    return box["result"]


def test_a_pump_carries_both_ways_counts_what_it_moved_and_closes_when_the_far_ends_do(rig: Callable[..., Rig]) -> None:
    r = rig()
    thread, box = _start(r.pump)
    r.to_far(b"ping")
    assert r.at_far(4) == b"ping"
    r.to_app(b"pong!")
    assert r.at_app(5) == b"pong!"
    r.end()
    result = _result(thread, box)
    assert (result.outcome, result.up, result.down, result.error) == (Outcome.CLOSED, 4, 5, None)


def test_a_quiet_pump_without_park_after_idles_out_at_its_idle_timeout(rig: Callable[..., Rig]) -> None:
    r = rig(idle=0.3)
    started = time.monotonic()
    result = r.pump.run()
    assert result.outcome is Outcome.IDLE
    assert 0.25 < time.monotonic() - started < 3


def test_abort_from_another_thread_ends_the_pump_aborted(rig: Callable[..., Rig]) -> None:
    r = rig()
    thread, box = _start(r.pump)
    r.to_far(b"ping")
    assert r.at_far(4) == b"ping"
    r.pump.abort()
    assert _result(thread, box).outcome is Outcome.ABORTED
    try:
        assert r.far.recv(10) == b""
    except ConnectionResetError:
        pass


def test_a_reset_beyond_side_b_ends_the_pump_reset(rig: Callable[..., Rig]) -> None:
    r = rig()
    thread, box = _start(r.pump)
    r.to_far(b"ping")
    assert r.at_far(4) == b"ping"
    reset(r.far)
    result = _result(thread, box)
    assert result.outcome is Outcome.RESET and result.error


def test_a_quiet_pump_parks_with_its_sockets_open_and_resumes_with_its_counts(rig: Callable[..., Rig]) -> None:
    r = rig(park_after=0.2)
    started = time.monotonic()
    thread, box = _start(r.pump)
    r.to_far(b"one")
    assert r.at_far(3) == b"one"
    parked = _result(thread, box)
    assert (parked.outcome, parked.up, parked.down) == (Outcome.PARKED, 3, 0)
    assert 0.15 < time.monotonic() - started < 3
    assert all(sock.fileno() != -1 for sock in r.pump.watched())

    r.to_far(b"two")
    r.to_app(b"back")
    thread, box = _start(r.pump)
    assert r.at_far(3) == b"two"
    assert r.at_app(4) == b"back"
    r.end()
    result = _result(thread, box)
    assert (result.outcome, result.up, result.down) == (Outcome.CLOSED, 6, 4)


def test_a_parked_pump_resumed_after_its_idle_deadline_ends_idle(rig: Callable[..., Rig]) -> None:
    r = rig(idle=0.6, park_after=0.1)
    assert r.pump.run().outcome is Outcome.PARKED
    while time.monotonic() < r.pump.idle_deadline():
        time.sleep(0.05)
    assert r.pump.run().outcome is Outcome.IDLE


def test_a_parked_pump_aborted_ends_aborted_when_resumed(rig: Callable[..., Rig]) -> None:
    r = rig(park_after=0.1)
    assert r.pump.run().outcome is Outcome.PARKED
    r.pump.abort()
    assert r.pump.run().outcome is Outcome.ABORTED


def test_the_parking_thread_wakes_a_parked_pump_on_any_watched_socket(rig: Callable[..., Rig]) -> None:
    """What the Forwarder does with PARKED: park `watched()` until the idle deadline, run again on a wake."""
    r = rig(park_after=0.1)
    assert r.pump.run().outcome is Outcome.PARKED
    parking = Parking()
    woke = threading.Event()
    try:
        assert parking.park(r.pump.watched(), r.pump.idle_deadline(), woke.set)
        time.sleep(0.1)
        assert not woke.is_set()
        r.to_app(b"wake")
        assert woke.wait(5)
    finally:
        parking.stop()
    thread, box = _start(r.pump)
    assert r.at_app(4) == b"wake"
    r.end()
    assert _result(thread, box).outcome is Outcome.CLOSED
