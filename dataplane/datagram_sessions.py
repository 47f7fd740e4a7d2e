"""What UDP and ICMP interception share: the session table, the reader thread, starting a session.

A datagram flow has no connection to accept: the interception reads packets
from one descriptor (the TPROXY socket, the ICMP TUN) and the first packet of
a flow opens a session. The session table maps the flow's key to the inbox
of the pump thread that carries it, so later packets reach that thread;
it is the one place datagram sessions are bounded, overall and per client
address (`limits.datagram_sessions`, `limits.datagram_sessions_per_source`),
and a session whose thread cannot be started is dropped and counted the
same way (`transit_refused_total`).
"""
from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable
from ipaddress import IPv4Address

from dataplane.admission import Admission
from dataplane.datagram_endpoints import Endpoint
from dataplane.logfmt import event
from dataplane.workers import Workers

log = logging.getLogger("dataplane.datagram")

MAX_SESSIONS = 4096  # when no limits are given (tests); the agent passes `limits.datagram_sessions`
POLL_SECONDS = 0.5  # how often the reader threads look at their stop flag
READ_BATCH = 256  # packets a reader takes from its descriptor per wake-up

# (endpoint, src, sport, dst, dport, proto, first datagrams): `Forwarder.handle_datagrams`
Handler = Callable[[Endpoint, IPv4Address, int, IPv4Address, int, int, list[bytes]], None]


class Sessions:
    """Key -> inbox writer of the live sessions, shared by a reader thread and the pump threads.

    Capped overall and per client (the key's first element): `limits()` gives
    (sessions, sessions per source), read at each new session.
    """

    def __init__(self, limits: Callable[[], tuple[int, int]] | None = None) -> None:
        self._lock = threading.Lock()
        self._map: dict[tuple[object, ...], socket.socket] = {}
        self._limits = limits or (lambda: (MAX_SESSIONS, MAX_SESSIONS))
        self._by_source: dict[object, int] = {}

    def get(self, key: tuple[object, ...]) -> socket.socket | None:
        with self._lock:
            return self._map.get(key)

    def add(self, key: tuple[object, ...], writer: socket.socket) -> str | None:
        """Register a session; None, or the reason it is refused (`admission.REASONS`)."""
        total, per_source = self._limits()
        with self._lock:
            if len(self._map) >= total:
                return "datagram_sessions"
            if self._by_source.get(key[0], 0) >= per_source:
                return "source_datagram_sessions"
            self._map[key] = writer
            self._by_source[key[0]] = self._by_source.get(key[0], 0) + 1
            return None

    def forget(self, key: tuple[object, ...], writer: socket.socket) -> None:
        with self._lock:
            if self._map.get(key) is writer:
                del self._map[key]
                left = self._by_source.get(key[0], 1) - 1
                if left > 0:
                    self._by_source[key[0]] = left
                else:
                    self._by_source.pop(key[0], None)
        writer.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._map)


def offer(writer: socket.socket, data: bytes) -> None:
    """Queue a datagram for a running session (dropped if its inbox is full, as a busy link would)."""
    try:
        writer.send(data)
    except OSError:
        pass


def count_refusal(admission: Admission | None, reason: str, proto: str) -> None:
    """A new datagram session over a cap: counted (and logged at most once a second) by admission."""
    if admission is not None:
        admission.refused(reason, proto=proto)
    else:
        event(log, "datagram.session_limit", proto=proto, reason=reason, level=logging.WARNING)


def start_session(workers: Workers, admission: Admission | None, endpoint: Endpoint, handler: Handler, *args: object) -> None:
    """Run a new session on a worker; when no thread can be started, drop it (its first datagrams with it)."""
    try:
        workers.submit(_safe, handler, endpoint, *args)
    except Exception as exc:  # RuntimeError: can't start new thread
        endpoint.close()
        if admission is not None:
            admission.refused("threads", error=repr(exc))


def _safe(handler: Handler, endpoint: Endpoint, *args: object) -> None:
    try:
        handler(endpoint, *args)  # type: ignore[arg-type]
    except Exception as exc:
        event(log, "stream.crash", listener="datagram", error=repr(exc), level=logging.ERROR)
        endpoint.close()


class Reader:
    """A thread that waits on one descriptor, with a stop flag it checks at least every POLL_SECONDS."""

    def __init__(self, name: str, fd: int, on_ready: Callable[[], None]) -> None:
        self._fd = fd
        self._on_ready = on_ready
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        """Is the reader thread running (the health check)?"""
        return self._thread.is_alive() and not self._stopped.is_set()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * POLL_SECONDS + 1)

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not self._stopped.is_set():
            try:
                if poller.poll(POLL_SECONDS * 1000):
                    self._on_ready()
            except Exception as exc:  # one bad datagram must never stop interception
                event(log, "datagram.reader_error", error=repr(exc), level=logging.ERROR)
