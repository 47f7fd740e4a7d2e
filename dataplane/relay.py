"""Move one stream's bytes both ways between two sockets (plain or TLS) in one thread.

Why one thread per stream with non-blocking sockets and poll, rather than a
thread per direction: an OpenSSL connection must not be read and written from
two threads at once. One thread owns both sockets; OpenSSL and the socket calls
release the GIL, so different streams (and the hops of one stream, which live
in different agents) use both cores. Reads go into one buffer per direction
that starts small (an idle stream costs little memory) and grows to
`MAX_BUFFER` for bulk transfers (few system calls, few Python round trips).

End of stream: a FIN on one side becomes a FIN on the other (TCP half-close;
on a TLS socket the FIN is sent below TLS so the other direction keeps
working). A reset or a TLS error on either side resets both. `abort()` (path
failover, shutdown) resets both from any thread.
"""
from __future__ import annotations

import enum
import select
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass

from dataplane.header import HeaderError, Status, decode_reply, reply_length

MIN_BUFFER = 16 * 1024
MAX_BUFFER = 512 * 1024
_READ = select.POLLIN | select.POLLPRI
_WRITE = select.POLLOUT
_ALWAYS = select.POLLHUP | select.POLLERR | select.POLLNVAL
_LINGER_RESET = struct.pack("ii", 1, 0)


class Outcome(str, enum.Enum):
    """How a stream ended."""

    CLOSED = "closed"      # both directions finished with FIN
    RESET = "reset"        # a side reset or failed
    IDLE = "idle"          # no bytes for the idle timeout
    ABORTED = "aborted"    # abort() called (failover, drain)
    REFUSED = "refused"    # the far end replied with a non-OK status


@dataclass
class PumpResult:
    """Bytes moved each way, how it ended, and the far end's reply when one was read."""

    up: int
    down: int
    outcome: Outcome
    status: Status | None = None
    rule: str | None = None


def reset(sock: socket.socket) -> None:
    """Close a socket with an RST (SO_LINGER 0) so the other end learns at once."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        # socket.socket.close: an SSLSocket would otherwise try nothing more, but be explicit.
        socket.socket.close(sock)
    except OSError:
        pass


def _shutdown(sock: socket.socket, how: int) -> None:
    """TCP-level shutdown; on an SSLSocket this bypasses SSLSocket.shutdown, which drops the TLS state."""
    try:
        socket.socket.shutdown(sock, how)
    except OSError:
        pass


class _Direction:
    """One direction of a stream: read from `src`, write to `dst`."""

    def __init__(self, src: socket.socket, dst: socket.socket, *, expect_reply: bool = False) -> None:
        self.src = src
        self.dst = dst
        self.buf = bytearray(MIN_BUFFER)
        self.view = memoryview(self.buf)
        self.out: memoryview | None = None
        self.count = 0
        self.eof = False
        self.done = False
        self.read_wants = _READ
        self.write_wants = _WRITE
        self.src_tls = isinstance(src, ssl.SSLSocket)
        self.expect_reply = expect_reply
        self.reply = bytearray()

    def wants(self) -> tuple[int, int]:
        """(events wanted on src, events wanted on dst)."""
        if self.done:
            return 0, 0
        if self.out is not None:
            return 0, self.write_wants
        if self.eof:
            return 0, 0
        return self.read_wants, 0

    def readable_now(self) -> bool:
        """TLS may hold decrypted bytes that poll cannot see."""
        return self.out is None and not self.eof and not self.done and self.src_tls and self.src.pending() > 0  # type: ignore[attr-defined]

    def read(self) -> int:
        """Read once; returns bytes read (0 when it would block or hit EOF)."""
        try:
            n = self.src.recv_into(self.view)
        except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
            self.read_wants = _READ
            return 0
        except ssl.SSLWantWriteError:
            self.read_wants = _WRITE
            return 0
        self.read_wants = _READ
        if n == 0:
            self.eof = True
            self.out = None
            return 0
        if n == len(self.buf) and len(self.buf) < MAX_BUFFER:
            grown = bytearray(min(len(self.buf) * 4, MAX_BUFFER))
            grown[:n] = self.view[:n]
            self.buf, self.view = grown, memoryview(grown)
        self.out = self.view[:n]
        return n

    def write(self) -> None:
        """Write pending bytes as far as the destination takes them."""
        out = self.out
        assert out is not None
        try:
            sent = self.dst.send(out)
        except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            self.write_wants = _WRITE
            return
        except ssl.SSLWantReadError:
            self.write_wants = _READ
            return
        self.write_wants = _WRITE
        self.count += sent
        self.out = None if sent >= len(out) else out[sent:]

    def finish_if_drained(self) -> None:
        """After EOF and a full flush, pass the FIN on."""
        if self.eof and self.out is None and not self.done:
            _shutdown(self.dst, socket.SHUT_WR)
            self.done = True


class Pump:
    """Relays a stream between `a` (the side that opened it) and `b` until both ends close.

    `expect_reply` makes the pump read the far end's reply (header.Status) from
    the front of b's bytes before passing anything to a: the ingress agent uses
    it to turn a denied or unreachable flow into a reset for the application.
    """

    def __init__(self, a: socket.socket, b: socket.socket, *, idle: float, expect_reply: bool = False) -> None:
        self.a = a
        self.b = b
        self.idle = idle
        self.up = _Direction(a, b)
        self.down = _Direction(b, a, expect_reply=expect_reply)
        self._aborted = threading.Event()
        self.status: Status | None = None
        self.rule: str | None = None

    def abort(self) -> None:
        """Reset both sides from any thread; the pump thread notices and returns ABORTED."""
        self._aborted.set()
        _shutdown(self.a, socket.SHUT_RDWR)
        _shutdown(self.b, socket.SHUT_RDWR)

    def _take_reply(self, direction: _Direction) -> Outcome | None:
        """Strip the reply from the front of the down direction; an outcome if it ends the stream."""
        assert direction.out is not None
        direction.reply += direction.out
        direction.out = None
        total = reply_length(bytes(direction.reply[:2]))
        if total is None or len(direction.reply) < total:
            return None
        try:
            self.status, self.rule = decode_reply(bytes(direction.reply[:total]))
        except HeaderError:
            return Outcome.RESET
        rest = bytes(direction.reply[total:])
        direction.expect_reply = False
        direction.reply = bytearray()
        if self.status is not Status.OK:
            return Outcome.REFUSED
        if rest:
            direction.out = memoryview(rest)
        return None

    def run(self) -> PumpResult:
        """Relay until both directions end, a side fails, the stream idles out or abort() is called."""
        for sock in (self.a, self.b):
            sock.setblocking(False)
        outcome = self._loop()
        if outcome is Outcome.CLOSED:
            _close(self.a)
            _close(self.b)
        else:
            reset(self.a)
            reset(self.b)
        return PumpResult(self.up.count, self.down.count, outcome, self.status, self.rule)

    def _loop(self) -> Outcome:
        poller = select.poll()
        last = time.monotonic()
        directions = (self.up, self.down)
        while True:
            if self._aborted.is_set():
                return Outcome.ABORTED
            if self.up.done and self.down.done:
                return Outcome.CLOSED
            if self.down.expect_reply and self.down.eof:
                return Outcome.RESET
            events = {self.a.fileno(): 0, self.b.fileno(): 0}
            for d in directions:
                src_ev, dst_ev = d.wants()
                events[d.src.fileno()] |= src_ev
                events[d.dst.fileno()] |= dst_ev
            for fd, mask in events.items():
                poller.register(fd, mask | _ALWAYS)
            if any(d.readable_now() for d in directions):
                ready: dict[int, int] = {}
            else:
                timeout = max(0.0, self.idle - (time.monotonic() - last))
                ready = dict(poller.poll(timeout * 1000))
                if not ready:
                    if time.monotonic() - last >= self.idle:
                        return Outcome.IDLE
                    continue
            if self._aborted.is_set():
                return Outcome.ABORTED
            try:
                moved = False
                for d in directions:
                    src_ready = ready.get(d.src.fileno(), 0)
                    dst_ready = ready.get(d.dst.fileno(), 0)
                    if d.out is not None and dst_ready & (d.write_wants | _ALWAYS):
                        d.write()
                    if d.out is None and not d.eof and (src_ready & (d.read_wants | _ALWAYS) or d.readable_now()):
                        if d.read():
                            moved = True
                            if d.expect_reply:
                                ended = self._take_reply(d)
                                if ended is not None:
                                    return ended
                            if d.out is not None:
                                d.write()
                    d.finish_if_drained()
                if moved:
                    last = time.monotonic()
            except (OSError, ssl.SSLError, ValueError):
                return Outcome.ABORTED if self._aborted.is_set() else Outcome.RESET
