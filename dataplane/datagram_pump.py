"""Datagram flows (UDP, ICMP echo) over a tunnel stream: the frames and the pump.

A datagram flow rides one tunnel stream exactly like a TCP stream (same TLS,
header, reply, end-to-end splicing, path registration and flow record); only
what follows the header and the reply differs. Instead of the TCP byte frames
of `dataplane.relay`, each datagram travels as one frame

    length u16 | payload

both ways, end to end between the ingress and the delivering agent (relays
pass the bytes through without parsing them). The stream ends when either end
closes it (idle timeout, shutdown); there is no end frame, a datagram flow has
no half-close. Parsing is strict: a payload longer than the protocol allows
(`MAX_UDP` for UDP; for ICMP at least the 2-byte sequence number and at most
`MAX_ICMP_DATA` after it) or a tunnel that ends inside a frame resets the
stream; nothing a peer sends can do more than that. ICMP echo frames carry
`sequence u16 | data`; the identifier is the header's source port.

`DatagramPump` moves datagrams between an application-side `Endpoint`
(`dataplane.datagram_endpoints`) and the tunnel stream in one thread. It is
a `dataplane.pump.Pump` like the TCP pumps (same loop, abort, idle clock and
parking); only its legs are here. It parks when quiet for `park_after` with
nothing queued for the tunnel and nothing buffered in TLS, keeping every
socket and all its state (a partial frame or reply, the byte counts);
parked, it is woken by any of `watched()` (each endpoint socket and the
tunnel) or by the idle deadline (`timeouts.datagram_idle`), which ends the
flow as before.
"""
from __future__ import annotations

import select
import socket
import ssl
import struct
import time
from collections.abc import Iterable

from dataplane.datagram_endpoints import Endpoint
from dataplane.header import ICMP, UDP, HeaderError, Status, decode_reply, reply_length
from dataplane.pump import LATER, Outcome, Pump, Step, close, reset

FRAME_HEADER = 2
MAX_UDP = 65507  # largest UDP payload in IPv4
MAX_ICMP_DATA = 65507 - 8  # echo data after the 8-byte ICMP header
MAX_PENDING = 1 << 20  # bytes queued towards the tunnel before new datagrams are dropped (UDP semantics)
_READ = select.POLLIN | select.POLLPRI
_WRITE = select.POLLOUT


class FrameError(ValueError):
    """A datagram frame that breaks the rules (the stream is reset)."""


def max_payload(proto: int) -> int:
    """Largest frame payload for a protocol (ICMP: 2-byte sequence plus the echo data)."""
    return MAX_UDP if proto == UDP else 2 + MAX_ICMP_DATA


def check_payload(proto: int, payload: bytes) -> None:
    """FrameError unless `payload` is a valid datagram of `proto`."""
    if len(payload) > max_payload(proto):
        raise FrameError(f"datagram of {len(payload)} bytes exceeds {max_payload(proto)}")
    if proto == ICMP and len(payload) < 2:
        raise FrameError("an ICMP echo frame needs its 2-byte sequence number")


def encode_frame(proto: int, payload: bytes) -> bytes:
    """One frame: length u16 | payload."""
    check_payload(proto, payload)
    return struct.pack("!H", len(payload)) + payload


class FrameDecoder:
    """Turns tunnel bytes back into datagrams, holding partial frames between reads."""

    def __init__(self, proto: int) -> None:
        self.proto = proto
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The complete datagrams `data` finishes (FrameError on a bad one)."""
        self._buf += data
        out: list[bytes] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= FRAME_HEADER:
            length = (buf[pos] << 8) | buf[pos + 1]
            if length > max_payload(self.proto):
                raise FrameError(f"frame of {length} bytes exceeds {max_payload(self.proto)}")
            if len(buf) - pos - FRAME_HEADER < length:
                break
            payload = bytes(buf[pos + FRAME_HEADER:pos + FRAME_HEADER + length])
            check_payload(self.proto, payload)
            out.append(payload)
            pos += FRAME_HEADER + length
        del buf[:pos]
        return out

    @property
    def partial(self) -> bool:
        """True while a frame is incomplete (the tunnel must not end here)."""
        return bool(self._buf)


class DatagramPump(Pump):
    """Moves datagrams between an Endpoint (side a) and a tunnel stream (side b) until idle or closed.

    `expect_reply` (ingress): the far end's reply (header.Status) comes first
    on the tunnel; a non-OK reply ends the flow as REFUSED and the endpoint is
    told (`Endpoint.refuse`). Datagrams from the application are framed and
    sent at once, before the reply, as TCP bytes are. On the way out the
    tunnel is closed cleanly when the flow idles out or the far end closed it,
    and reset otherwise.
    """

    errors = (OSError, ssl.SSLError, ValueError, HeaderError)

    def __init__(
        self,
        endpoint: Endpoint,
        tunnel: socket.socket,
        *,
        proto: int,
        idle: float,
        expect_reply: bool = False,
        first: Iterable[bytes] = (),
        park_after: float = 0.0,
    ) -> None:
        super().__init__(endpoint, tunnel, idle=idle, park_after=park_after)
        self.a: Endpoint = endpoint
        self.proto = proto
        self.expect_reply = expect_reply
        self._reply = bytearray()
        self._decoder = FrameDecoder(proto)
        self._out = bytearray()
        self._app_fds = [sock.fileno() for sock in endpoint.socks]
        self._tunnel_fd = tunnel.fileno()
        self.up = 0
        self.down = 0
        for payload in first:
            self._queue(payload)

    def step(self) -> Step | Outcome:
        """Read the tunnel and every endpoint socket until they would block, then flush.

        LATER whenever the flow goes on: every side was read until it would
        block, so only poll can say when there is more.
        """
        ended = self._read_tunnel()
        if ended is not None:
            return ended
        for payload in self.a.receive():
            if self._queue(payload):
                self.last = time.monotonic()
        self._flush()
        return LATER

    def wants(self) -> dict[int, int]:
        events = dict.fromkeys(self._app_fds, _READ)
        events[self._tunnel_fd] = _READ | (_WRITE if self._out else 0)
        return events

    def woke(self, ready: dict[int, int]) -> None:
        """Nothing to note: the next step reads every side whatever woke."""

    def parkable(self) -> bool:
        """Nothing in flight: no frame waits for the tunnel and TLS holds no decrypted bytes poll cannot see."""
        if self._out:
            return False
        return not (isinstance(self.b, ssl.SSLSocket) and self.b.pending())

    def watched(self) -> tuple[socket.socket, ...]:
        """Each endpoint socket and the tunnel."""
        return (*self.a.socks, self.b)

    def counts(self) -> tuple[int, int]:
        return self.up, self.down

    def finish(self, outcome: Outcome) -> None:
        """Tell the endpoint of a refusal and close it; close the tunnel after a clean end or idle, reset it otherwise."""
        if outcome is Outcome.REFUSED and self.status is not None and self.status is not Status.OK:
            self.a.refuse(self.status)
        self.a.close()
        if outcome in (Outcome.CLOSED, Outcome.IDLE):
            close(self.b)
        else:
            reset(self.b)

    def _queue(self, payload: bytes) -> bool:
        if len(self._out) > MAX_PENDING:
            return False  # the tunnel is not keeping up: drop, as a congested link would
        try:
            self._out += encode_frame(self.proto, payload)
        except FrameError:
            return False  # an oversized datagram from the application is dropped, never sent
        self.up += len(payload)
        return True

    def _read_tunnel(self) -> Outcome | None:
        """Read what the tunnel holds (TLS may buffer records poll cannot see); an outcome if the flow ends."""
        while True:
            try:
                data = self.b.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return None
            except ssl.SSLWantWriteError:
                return None
            if not data:
                if self._decoder.partial or (self.expect_reply and self.status is None and self._reply):
                    raise FrameError("tunnel closed inside a frame")
                if self.expect_reply and self.status is None:
                    raise FrameError("tunnel closed before the reply")
                return Outcome.CLOSED
            self.last = time.monotonic()
            if self.expect_reply and self.status is None:
                self._reply += data
                total = reply_length(bytes(self._reply[:2]))
                if total is None or len(self._reply) < total:
                    continue
                self.status, self.rule = decode_reply(bytes(self._reply[:total]))
                data = bytes(self._reply[total:])
                self._reply = bytearray()
                if self.status is not Status.OK:
                    return Outcome.REFUSED
            for payload in self._decoder.feed(data):
                self.down += len(payload)
                self.a.send(payload)

    def _flush(self) -> None:
        """Write queued frames until the tunnel would block or nothing is left."""
        while self._out:
            try:
                sent = self.b.send(self._out[:65536])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return
            del self._out[:sent]
