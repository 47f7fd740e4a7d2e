"""Relay a stream between two TCP sockets in the kernel, without reading it.

Used by a relay edge for end-to-end streams: the bytes are TLS records of a
session between the ingress and the delivering agent, so the relay neither can
nor needs to decrypt them. `splice()` moves them socket -> pipe -> socket
without copying them through user space. A `dataplane.pump.DuplexPump` like
`relay.BytePump`, so the forwarder treats all pumps alike; only how a leg
moves is here.
"""
from __future__ import annotations

import fcntl
import os
import select
import socket

from dataplane.pump import DuplexPump, Outcome, shutdown

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031
_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_READ = select.POLLIN | select.POLLPRI
_WRITE = select.POLLOUT


class _Leg:
    """One direction: src socket -> pipe -> dst socket (a `dataplane.pump.Leg`)."""

    read_wants = _READ
    write_wants = _WRITE

    def __init__(self, src: socket.socket, dst: socket.socket) -> None:
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.dst_fd = dst.fileno()
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

    def wants(self) -> tuple[int, int]:
        """(events wanted on src, events wanted on dst) while blocked: drain the pipe first, then refill it."""
        if self.done:
            return 0, 0
        if self.in_pipe:
            return 0, _WRITE
        return (0 if self.eof else _READ), 0

    def step(self) -> bool:
        """Move what can move now; True if anything moved."""
        moved = False
        if self.in_pipe and self.can_write:
            try:
                n = os.splice(self.pipe_r, self.dst_fd, self.in_pipe, flags=_FLAGS)
                self.in_pipe -= n
                self.count += n
                moved = n > 0
            except BlockingIOError:
                self.can_write = False
        if not self.eof and self.can_read and self.in_pipe == 0:
            try:
                n = os.splice(self.src_fd, self.pipe_w, CHUNK, flags=_FLAGS)
            except BlockingIOError:
                self.can_read = False
                n = -1
            if n == 0:
                self.eof = True
            elif n > 0:
                self.in_pipe += n
                moved = True
        if self.eof and self.in_pipe == 0 and not self.done:
            shutdown(self.dst, socket.SHUT_WR)
            self.done = True
        return moved


class SplicePump(DuplexPump[_Leg]):
    """Kernel relay between `a` and `b` until both directions end (or reset, idle, park, abort)."""

    def __init__(self, a: socket.socket, b: socket.socket, *, idle: float, park_after: float = 0.0) -> None:
        up = _Leg(a, b)
        try:
            down = _Leg(b, a)
        except BaseException:
            up.close()
            raise
        super().__init__(a, b, up, down, idle=idle, park_after=park_after)

    def move(self, leg: _Leg) -> tuple[bool, Outcome | None]:
        return leg.step(), None

    def parkable(self) -> bool:
        """Nothing in either pipe and neither side finished."""
        return not any(leg.in_pipe or leg.eof for leg in self.legs)

    def finish(self, outcome: Outcome) -> None:
        """Close the pipes; close both sides after a clean end, reset both otherwise."""
        for leg in self.legs:
            leg.close()
        super().finish(outcome)
