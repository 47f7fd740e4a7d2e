"""Relay a stream between two TCP sockets in the kernel, without reading it.

Used by a relay edge for end-to-end streams: the bytes are TLS records of a
session between the ingress and the delivering agent, so the relay neither can
nor needs to decrypt them. `splice()` moves them socket -> pipe -> socket
without copying them through user space. Same interface as relay.Pump
(run/abort/park), so the forwarder treats both alike.
"""
from __future__ import annotations

import fcntl
import os
import select
import socket
import threading
import time

from dataplane.relay import Outcome, PumpResult, reset, wait_ready

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031
_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_READ = select.POLLIN | select.POLLPRI
_ALWAYS = select.POLLHUP | select.POLLERR | select.POLLNVAL


class _Leg:
    """One direction: src socket -> pipe -> dst socket."""

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        self.pipe_r, self.pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.pipe_w, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # the default pipe size still works, with more calls
        self.in_pipe = 0
        self.count = 0
        self.eof = False
        self.done = False
        self.can_read = True
        self.can_write = True

    def close(self) -> None:
        for fd in (self.pipe_r, self.pipe_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def step(self) -> bool:
        """Move what can move now; True if anything moved."""
        moved = False
        if self.in_pipe and self.can_write:
            try:
                n = os.splice(self.pipe_r, self.dst.fileno(), self.in_pipe, flags=_FLAGS)
                self.in_pipe -= n
                self.count += n
                moved = n > 0
            except BlockingIOError:
                self.can_write = False
        if not self.eof and self.can_read and self.in_pipe == 0:
            try:
                n = os.splice(self.src.fileno(), self.pipe_w, CHUNK, flags=_FLAGS)
            except BlockingIOError:
                self.can_read = False
                n = -1
            if n == 0:
                self.eof = True
            elif n > 0:
                self.in_pipe += n
                moved = True
        if self.eof and self.in_pipe == 0 and not self.done:
            try:
                self.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.done = True
        return moved


class SplicePump:
    """Kernel relay between `a` and `b` until both directions end (or reset, idle, park, abort)."""

    def __init__(self, a: socket.socket, b: socket.socket, *, idle: float, park_after: float = 0.0) -> None:
        self.a = a
        self.b = b
        self.idle = idle
        self.park_after = park_after
        self.last = time.monotonic()
        self.up = _Leg(a, b)
        self.down = _Leg(b, a)
        self._aborted = threading.Event()
        self.error: str | None = None

    def abort(self) -> None:
        """Reset both sides from any thread."""
        self._aborted.set()
        for sock in (self.a, self.b):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def idle_deadline(self) -> float:
        """When the stream times out if nothing moves (monotonic)."""
        return self.last + self.idle

    def run(self) -> PumpResult:
        """Relay until done; after PARKED the sockets stay open and run() resumes."""
        for sock in (self.a, self.b):
            sock.setblocking(False)
        outcome = self._loop()
        if outcome is Outcome.PARKED:
            return PumpResult(self.up.count, self.down.count, outcome)
        for leg in (self.up, self.down):
            leg.close()
        if outcome is Outcome.CLOSED:
            self.a.close()
            self.b.close()
        else:
            reset(self.a)
            reset(self.b)
        return PumpResult(self.up.count, self.down.count, outcome, error=self.error)

    def _loop(self) -> Outcome:
        poller = select.poll()
        legs = (self.up, self.down)
        while True:
            if self._aborted.is_set():
                return Outcome.ABORTED
            try:
                moved = any([leg.step() for leg in legs])
            except OSError as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                return Outcome.ABORTED if self._aborted.is_set() else Outcome.RESET
            if self.up.done and self.down.done:
                return Outcome.CLOSED
            if moved:
                self.last = time.monotonic()
                continue
            events = {self.a.fileno(): 0, self.b.fileno(): 0}
            for leg in legs:
                if leg.done:
                    continue
                if leg.in_pipe:
                    events[leg.dst.fileno()] |= select.POLLOUT
                elif not leg.eof:
                    events[leg.src.fileno()] |= _READ
            parking = self.park_after > 0 and not any(leg.in_pipe for leg in legs) and not any(leg.eof for leg in legs)
            ready = wait_ready(poller, events, last=self.last, idle=self.idle, park_after=self.park_after, parking=parking)
            if isinstance(ready, Outcome):
                return ready
            if ready is None:
                continue
            for leg in legs:
                if ready.get(leg.src.fileno(), 0) & (_READ | _ALWAYS):
                    leg.can_read = True
                if ready.get(leg.dst.fileno(), 0) & (select.POLLOUT | _ALWAYS):
                    leg.can_write = True
