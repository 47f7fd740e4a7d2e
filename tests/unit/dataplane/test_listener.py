"""The agent's listener rides out transient accept errors (EMFILE: out of descriptors) and keeps accepting."""
from __future__ import annotations

import errno
import socket
import threading
import time

from dataplane.agent import Listener
from dataplane.config import Endpoint
from dataplane.workers import Workers


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
    listener = Listener("t", Endpoint(host="127.0.0.1", port=port), lambda conn: (served.set(), conn.close()), Workers("t"))
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
    listener = Listener("t", Endpoint(host="127.0.0.1", port=port), lambda conn: conn.close(), Workers("t"))
    listener.start()
    time.sleep(0.05)
    listener.stop()
    assert not listener._thread.is_alive()
