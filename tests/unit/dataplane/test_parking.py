"""Parking: a parked stream wakes on a readable socket or at its deadline, and on stop."""
from __future__ import annotations

import socket
import threading
import time

from dataplane.parking import Parking


def test_wakes_on_readable_socket_once() -> None:
    parking = Parking()
    a, b = socket.socketpair()
    woke: list[float] = []
    done = threading.Event()
    try:
        assert parking.park((a,), time.monotonic() + 30, lambda: (woke.append(time.monotonic()), done.set()))
        time.sleep(0.1)
        assert parking.count() == 1 and not woke
        b.send(b"x")
        assert done.wait(2)
        time.sleep(0.1)
        assert len(woke) == 1 and parking.count() == 0
    finally:
        parking.stop()


def test_wakes_at_deadline_and_on_stop() -> None:
    parking = Parking()
    a, _b = socket.socketpair()
    c, _d = socket.socketpair()
    deadline_hit = threading.Event()
    stopped = threading.Event()
    started = time.monotonic()
    parking.park((a,), started + 0.3, deadline_hit.set)
    parking.park((c,), started + 60, stopped.set)
    assert deadline_hit.wait(3)
    assert 0.25 < time.monotonic() - started < 2
    assert not stopped.is_set()
    parking.stop()
    assert stopped.wait(2)
    assert parking.park((a,), time.monotonic() + 1, lambda: None) is False
