"""Idle streams wait here without a thread of their own.

A stream's pump thread costs memory (its stack, touched by TLS handshakes and
the relay loop) whether or not bytes move. After `park_after` seconds without
bytes, the pump returns PARKED and its sockets are handed to this one shared
epoll thread; the pump thread ends. A readable socket, a hang-up, an abort or
the idle deadline wakes the stream: a new thread resumes the same pump with
all its state. So 1,000 mostly idle flows cost 1,000 sockets and TLS states,
not 1,000 threads. The same holds for UDP and ICMP echo sessions: a parked
datagram flow is watched on every socket it reads (its tunnel, the session
socket and the inbox the interception feeds), however many that is.
"""
from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dataplane.logfmt import event

log = logging.getLogger("dataplane.parking")

Resume = Callable[[], None]


@dataclass
class _Parked:
    fds: tuple[int, ...]
    deadline: float
    resume: Resume


class Parking:
    """One epoll thread watching every parked stream's sockets."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._incoming: list[_Parked] = []
        self._parked: dict[int, _Parked] = {}  # fd -> entry (each entry under all its fds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parking", daemon=True)
        self._thread.start()

    def park(self, sockets: Iterable[socket.socket], deadline: float, resume: Resume) -> bool:
        """Watch every one of `sockets`; call `resume` once when any is readable (or hung up) or at `deadline` (monotonic).

        False (nothing parked) once stop() was called: the caller keeps its thread.
        """
        entry = _Parked(tuple(sock.fileno() for sock in sockets), deadline, resume)
        with self._lock:
            if self._stop.is_set():
                return False
            self._incoming.append(entry)
        self._wake()
        return True

    def count(self) -> int:
        """Streams parked now."""
        with self._lock:
            return len({id(entry) for entry in self._parked.values()}) + len(self._incoming)

    def stop(self) -> None:
        """Wake every parked stream (they see their abort or idle state) and end the thread."""
        with self._lock:
            self._stop.set()
        self._wake()
        self._thread.join(timeout=2)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _release(self, entry: _Parked) -> None:
        for fd in entry.fds:
            if self._parked.pop(fd, None) is not None:
                try:
                    self._selector.unregister(fd)
                except (KeyError, ValueError, OSError):
                    pass
        try:
            entry.resume()
        except Exception as exc:  # a resume that cannot start a thread must not end the parking thread
            event(log, "parking.resume_failed", error=repr(exc), level=logging.ERROR)

    def _run(self) -> None:
        while True:
            with self._lock:
                incoming, self._incoming = self._incoming, []
            for entry in incoming:
                try:
                    for fd in entry.fds:
                        self._selector.register(fd, selectors.EVENT_READ, entry)
                        self._parked[fd] = entry
                except (ValueError, OSError, KeyError):
                    self._release(entry)  # a socket already closed: let the pump find out
            if self._stop.is_set():
                for entry in {id(e): e for e in self._parked.values()}.values():
                    self._release(entry)
                return
            now = time.monotonic()
            nearest = min((entry.deadline for entry in self._parked.values()), default=now + 1.0)
            for key, _mask in self._selector.select(timeout=max(0.0, min(nearest - now, 1.0))):
                if key.data is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                if key.fd in self._parked:
                    self._release(key.data)
            now = time.monotonic()
            for entry in {id(e): e for e in self._parked.values() if e.deadline <= now}.values():
                self._release(entry)
