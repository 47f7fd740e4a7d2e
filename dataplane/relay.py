"""Move one stream's bytes both ways between two sockets (plain or TLS) in one thread.

Why one thread per stream with non-blocking sockets and poll, rather than a
thread per direction: an OpenSSL connection must not be read and written from
two threads at once. One thread owns both sockets; OpenSSL and the socket calls
release the GIL, so different streams (and the hops of one stream, which live
in different agents) use both cores. Reads go into one buffer per direction
that starts small and grows to `MAX_BUFFER` for bulk transfers (few system
calls, few Python round trips); a parked stream drops its buffers.

Framing, end to end between the ingress and the delivering agent: inside the
tunnel the application bytes travel as frames `length u32 | payload`, and a
zero-length frame means "this direction is finished" (the application's
FIN). Why: OpenSSL cannot half-close TLS (after sending close_notify it
discards what it reads, and a bare TCP FIN is a fatal "unexpected EOF"), and a
TCP FIN alone would let anyone on the path truncate a stream unnoticed. With
frames, a half-close is explicit and authenticated, and a tunnel that ends
without the end frame is a truncation: the application gets a reset. Relays do
not parse frames; they pass bytes and FINs through. The payload of a frame is
read straight into the buffer behind a reserved 4-byte header, and on the
receiving side the payload spans between frame headers are written with one
sendmsg (scatter-gather), so framing adds no copy on either side.

A reset or a TLS error on either side resets both. `abort()` (path failover,
shutdown) resets both from any thread. The loop, abort, idle and parking are
the contract of `dataplane.pump`, and what a pump of two directions does with
them is `pump.DuplexPump`; this module holds only how a direction moves.
"""
from __future__ import annotations

import select
import socket
import ssl
import struct
from typing import Literal

from dataplane.header import HeaderError, Status, decode_reply, reply_length
from dataplane.pump import DuplexPump, Outcome, shutdown

MIN_BUFFER = 16 * 1024
MAX_BUFFER = 512 * 1024
FRAME_HEADER = 4
IOV_MAX = 1024  # most iovecs one sendmsg takes (Linux UIO_MAXIOV)
MAX_FRAME = MAX_BUFFER
END_FRAME = bytes(FRAME_HEADER)
_READ = select.POLLIN | select.POLLPRI
_WRITE = select.POLLOUT

Mode = Literal["raw", "encode", "decode"]


class FrameError(ValueError):
    """The framed byte stream broke the framing rules (a malformed frame or a truncation)."""


class _Direction:
    """One direction of a stream: read from `src`, write to `dst`.

    `mode` says what crosses: "raw" bytes (relays, and FIN passes as FIN),
    "encode" (plain application bytes into frames) or "decode" (frames back
    into application bytes). `can_read`/`can_write` are "may make progress"
    flags: cleared when an operation would block, set again by poll. Work
    continues without polling while they hold, which matters for TLS: OpenSSL
    can hold decrypted or read-ahead bytes that poll cannot see.
    """

    def __init__(self, src: socket.socket, dst: socket.socket, mode: Mode, *, expect_reply: bool = False) -> None:
        self.src = src
        self.dst = dst
        self.src_fd = src.fileno()
        self.dst_fd = dst.fileno()
        self.mode = mode
        self.buf: bytearray | None = None  # allocated when bytes arrive, dropped again while idle
        self.view = memoryview(b"")
        self.size = MIN_BUFFER
        self.out: list[memoryview] | None = None  # what is read and not yet written: one span, or a frame's payload spans
        self.count = 0
        self.eof = False
        self.done = False
        self.can_read = True
        self.can_write = True
        self.read_wants = _READ
        self.write_wants = _WRITE
        self.src_tls = isinstance(src, ssl.SSLSocket)
        # decode state
        self.expect_reply = expect_reply
        self.reply = bytearray()
        self.reply_ready = False
        self.frame_left = 0
        self.frame_head = bytearray()
        self.end_seen = False
        self.closing = False  # the end frame is queued; done once it is written

    def wants(self) -> tuple[int, int]:
        """(events wanted on src, events wanted on dst) while blocked."""
        if self.done:
            return 0, 0
        if self.out is not None:
            return 0, (0 if self.can_write else self.write_wants)
        if self.eof or self.can_read:
            return 0, 0
        return self.read_wants, 0

    def fill(self) -> int:
        """Read as much as is ready, up to the buffer size; returns bytes read (before deframing)."""
        if self.buf is None or len(self.buf) != self.size:
            self.buf = bytearray(self.size)
            self.view = memoryview(self.buf)
        start = FRAME_HEADER if self.mode == "encode" else 0
        size = self.size
        total = start
        while total < size:
            want = size - total
            try:
                n = self.src.recv_into(self.view[total:])
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                self.can_read, self.read_wants = False, _READ
                break
            except ssl.SSLWantWriteError:
                self.can_read, self.read_wants = False, _WRITE
                break
            if n == 0:
                self.eof = True
                break
            total += n
            if not self.src_tls and n < want:
                self.can_read = False  # a short read drained the kernel buffer; poll will say when more arrives
                break
        got = total - start
        if total == size and size < MAX_BUFFER:
            self.size = min(size * 4, MAX_BUFFER)  # a full read: bulk transfer, read more per call
        if got:
            if self.mode == "encode":
                struct.pack_into("!I", self.buf, 0, got)
                self.out = [self.view[:total]]
                self.count += got
            elif self.mode == "decode":
                spans = self._deframe(got)
                self.out = spans or None
                self.count += sum(len(span) for span in spans)
            else:
                self.out = [self.view[:total]]
                self.count += got
        return got

    def _deframe(self, n: int) -> list[memoryview]:
        """The payload spans of view[:n], frame headers (and the reply) left out; nothing is moved."""
        view = self.view
        spans: list[memoryview] = []
        src = 0
        while src < n:
            if self.expect_reply and not self.reply_ready:
                self.reply += view[src:src + 1]
                src += 1
                total = reply_length(bytes(self.reply))
                if total is not None and len(self.reply) >= total:
                    self.reply_ready = True
                continue
            if self.end_seen:
                raise FrameError("bytes after the end frame")
            if self.frame_left == 0:
                take = min(FRAME_HEADER - len(self.frame_head), n - src)
                self.frame_head += view[src:src + take]
                src += take
                if len(self.frame_head) == FRAME_HEADER:
                    length = int.from_bytes(self.frame_head, "big")
                    self.frame_head = bytearray()
                    if length == 0:
                        self.end_seen = True
                    elif length > MAX_FRAME:
                        raise FrameError(f"frame of {length} bytes exceeds {MAX_FRAME}")
                    else:
                        self.frame_left = length
                continue
            take = min(self.frame_left, n - src)
            spans.append(view[src:src + take])
            src += take
            self.frame_left -= take
        return spans

    def release(self) -> None:
        """Drop the buffer while the stream is parked (the next read allocates a small one)."""
        if self.out is None:
            self.buf, self.view, self.size = None, memoryview(b""), MIN_BUFFER

    def write(self) -> bool:
        """Write pending bytes as far as the destination takes them; True if any were written."""
        out = self.out
        assert out is not None
        try:
            # Several spans only come from deframing, whose destination is a plain socket.
            sent = self.dst.send(out[0]) if len(out) == 1 else self.dst.sendmsg(out[:IOV_MAX])
        except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            self.can_write, self.write_wants = False, _WRITE
            return False
        except ssl.SSLWantReadError:
            self.can_write, self.write_wants = False, _READ
            return False
        left, done = sent, 0
        while done < len(out) and left >= len(out[done]):
            left -= len(out[done])
            done += 1
        rest = out[done:]
        if rest and left:
            rest[0] = rest[0][left:]
        self.out = rest or None
        if rest and sent < sum(len(span) for span in out[:IOV_MAX]):
            self.can_write = False  # a short write: the socket buffer is full, poll says when it drains
        return sent > 0

    def finish_if_drained(self) -> None:
        """Once the end is reached and flushed, pass it on: a FIN, or the end frame.

        Raises FrameError when a framed tunnel ended without its end frame.
        """
        if self.done or self.out is not None:
            return
        if self.closing:
            self.done = True
        elif self.mode == "encode" and self.eof:
            self.out = [memoryview(END_FRAME)]
            self.closing = True
        elif self.mode == "decode" and self.end_seen:
            shutdown(self.dst, socket.SHUT_WR)
            self.done = True
        elif self.mode == "decode" and self.eof:
            raise FrameError("tunnel closed without the end frame (truncated)")
        elif self.mode == "raw" and self.eof:
            shutdown(self.dst, socket.SHUT_WR)
            self.done = True


class BytePump(DuplexPump[_Direction]):
    """Relays a TCP stream between `a` (the side that opened it) and `b` until both ends finish.

    `framed` names the side that is the tunnel at an endpoint ("a" at the
    delivering agent, "b" at the ingress); None at a relay, which passes bytes
    through. `expect_reply` (ingress only) reads the far end's reply
    (header.Status) from the front of b's bytes before anything reaches a:
    a denied or unreachable flow becomes a reset for the application.
    """

    errors = (OSError, ssl.SSLError, ValueError)

    def __init__(
        self,
        a: socket.socket,
        b: socket.socket,
        *,
        idle: float,
        park_after: float = 0.0,
        framed: Literal["a", "b"] | None = None,
        expect_reply: bool = False,
    ) -> None:
        up_mode: Mode = "decode" if framed == "a" else "encode" if framed == "b" else "raw"
        down_mode: Mode = "encode" if framed == "a" else "decode" if framed == "b" else "raw"
        if expect_reply and down_mode != "decode":
            raise ValueError("a reply is only read from a framed tunnel on side b")
        super().__init__(a, b, _Direction(a, b, up_mode), _Direction(b, a, down_mode, expect_reply=expect_reply), idle=idle, park_after=park_after)

    def parkable(self) -> bool:
        """Both directions wait to read with nothing in flight, and TLS holds nothing buffered."""
        return all(d.out is None and not d.eof and not d.done and not d.can_read and d.read_wants == _READ for d in self.legs)

    def parked(self) -> None:
        """Drop both buffers: a parked stream costs its sockets, not 2 x `MAX_BUFFER`."""
        self.up.release()
        self.down.release()

    def _check_reply(self, d: _Direction) -> Outcome | None:
        """Once the reply is complete, decode it; a non-OK status ends the stream."""
        if not d.reply_ready or self.status is not None:
            return None
        try:
            self.status, self.rule = decode_reply(bytes(d.reply))
        except HeaderError as exc:
            self.error = str(exc)
            return Outcome.RESET
        return None if self.status is Status.OK else Outcome.REFUSED

    def move(self, d: _Direction) -> tuple[bool, Outcome | None]:
        """Move bytes in one direction until it blocks; (progress made, outcome if the stream ends)."""
        moved = False
        while not d.done:
            if d.out is not None:
                if not d.can_write or not d.write():
                    break
                moved = True
                continue
            if d.expect_reply and (ended := self._check_reply(d)):
                return moved, ended
            d.finish_if_drained()
            if d.done or d.out is not None:
                continue
            if d.eof or not d.can_read:
                break
            if d.fill():
                moved = True
            elif not d.eof:
                break
        return moved, None
