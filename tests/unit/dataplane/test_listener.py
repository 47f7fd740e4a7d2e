"""The agent's listener rides out transient accept errors (EMFILE: out of descriptors) and keeps accepting."""
from __future__ import annotations

import errno
import socket
import threading
import time

from dataplane.admission import Admission
from dataplane.agent import Listener
from dataplane.config import Endpoint, LimitSettings
from dataplane.workers import Workers


def _admission(**limits: int) -> Admission:
    return Admission(lambda: LimitSettings(**limits), lambda: 0)


class _FlakyListeningSocket:
    """Wraps a real listening socket; accept() fails with EMFILE a few times first."""

    def __init__(self, real: socket.socket, failures: int) -> None:
        self.real = real
        self.failures = failures

    def accept(self) -> tuple[socket.socket, object]:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self.real.accept()

    def shutdown(self, how: int) -> None:
        self.real.shutdown(how)

    def close(self) -> None:
        self.real.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_listener_keeps_accepting_after_emfile() -> None:
    served = threading.Event()
    port = _free_port()
    listener = Listener("t", Endpoint(host="127.0.0.1", port=port), lambda conn, slot: (served.set(), conn.close()), Workers("t"), _admission())
    flaky = _FlakyListeningSocket(listener._sock, failures=3)
    listener._sock = flaky  # type: ignore[assignment]
    listener.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            assert served.wait(5), "the listener stopped after EMFILE"
        assert flaky.failures == 0
    finally:
        listener.stop()


def test_listener_stops_when_closed() -> None:
    port = _free_port()
    listener = Listener("t", Endpoint(host="127.0.0.1", port=port), lambda conn, slot: conn.close(), Workers("t"), _admission())
    listener.start()
    time.sleep(0.05)
    listener.stop()
    assert not listener._thread.is_alive()


class _NoThreads(Workers):
    """Workers whose thread starts fail the first times, as under a pids or RLIMIT_NPROC limit."""

    def __init__(self, failures: int) -> None:
        super().__init__("t")
        self.failures = failures

    def submit(self, fn, *args):  # type: ignore[no-untyped-def]
        if self.failures:
            self.failures -= 1
            raise RuntimeError("can't start new thread")
        super().submit(fn, *args)


def test_listener_survives_a_thread_start_failure_and_counts_it() -> None:
    served = threading.Event()
    port = _free_port()
    admission = _admission()
    workers = _NoThreads(failures=1)
    listener = Listener("t", Endpoint(host="127.0.0.1", port=port), lambda conn, slot: (served.set(), conn.close()), workers, admission)
    listener.start()
    try:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as first:
                assert first.recv(1) == b""
        except ConnectionResetError:
            pass  # refused with a reset (it may arrive before connect() returns)
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            assert served.wait(5), "the listener stopped after a thread-start failure"
        assert admission.snapshot()["threads"] == 1
        assert listener.alive()
    finally:
        listener.stop()


def test_connections_past_the_per_source_cap_are_reset_and_counted() -> None:
    release = threading.Event()
    port = _free_port()
    admission = _admission(handshakes_per_source=2)
    listener = Listener("t", Endpoint(host="127.0.0.1", port=port), lambda conn, slot: (release.wait(5), conn.close()), Workers("t"), admission,
                        per_source=lambda address: True)
    listener.start()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(2)]
    deadline = time.monotonic() + 3
    while admission.opening() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    except ConnectionResetError:
        pass  # the reset the cap sends may arrive before connect() returns
    try:
        deadline = time.monotonic() + 3
        while admission.snapshot()["source_handshakes"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert admission.snapshot()["source_handshakes"] == 1
        assert admission.opening() == 2
        if len(socks) == 3:
            try:
                assert socks[2].recv(1) == b""
            except ConnectionResetError:
                pass  # the reset the cap sends
    finally:
        release.set()
        for sock in socks:
            sock.close()
        listener.stop()
    deadline = time.monotonic() + 3
    while admission.opening() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert admission.opening() == 0
