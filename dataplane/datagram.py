"""Datagram flows (UDP, ICMP echo) over a tunnel stream: framing, packets, endpoints, the pump.

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
stream; nothing a peer sends can do more than that.

ICMP echo frames carry `sequence u16 | data`; the identifier is the header's
source port. The delivering agent re-originates the echo from the original
source through its own ICMP TUN when it has one covering the flow
(`datagram_intercept.IcmpInterceptor.delivery`), otherwise from its own
address with a fresh identifier (`IcmpOrigin`).

`DatagramPump` moves datagrams between an application-side `Endpoint` and the
tunnel stream in one thread, with the interface `Forwarder` expects of a
pump (`a`, `b`, `run`, `abort`, `idle_deadline`, `park_after`). It parks like
a TCP pump: quiet for `park_after` with nothing queued for the tunnel and
nothing buffered in TLS, `run()` returns PARKED with every socket open and
all its state kept (a partial frame or reply, the byte counts); the Forwarder
hands `watched()` to the shared parking thread and calls `run()` again when
one of them is readable or the idle deadline (`timeouts.datagram_idle`)
comes, which ends the flow as before.
"""
from __future__ import annotations

import errno
import secrets
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address

from dataplane.header import ICMP, UDP, HeaderError, Status, decode_reply, reply_length
from dataplane.relay import Outcome, PumpResult, reset, wait_ready

FRAME_HEADER = 2
MAX_UDP = 65507  # largest UDP payload in IPv4
MAX_ICMP_DATA = 65507 - 8  # echo data after the 8-byte ICMP header
MAX_PENDING = 1 << 20  # bytes queued towards the tunnel before new datagrams are dropped (UDP semantics)
RECV_BATCH = 64  # datagrams read from one endpoint socket per turn
IP_TRANSPARENT = 19
SOL_RAW = 255
ICMP_FILTER = 1
ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
CODE_NET_UNREACHABLE, CODE_HOST_UNREACHABLE, CODE_ADMIN_PROHIBITED = 0, 1, 13
CODE_TTL_EXCEEDED = 0
_READ = select.POLLIN | select.POLLPRI
_WRITE = select.POLLOUT


class FrameError(ValueError):
    """A datagram frame that breaks the rules (the stream is reset)."""


# ---- framing --------------------------------------------------------------


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


# ---- ICMP and IPv4 packets -------------------------------------------------


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_message(kind: int, code: int, rest: bytes, body: bytes) -> bytes:
    """An ICMP message with its checksum: type, code, checksum, 4 bytes `rest`, body."""
    head = struct.pack("!BBH", kind, code, 0) + rest
    csum = checksum(head + body)
    return struct.pack("!BBH", kind, code, csum) + rest + body


def echo(kind: int, ident: int, seq: int, data: bytes) -> bytes:
    """An echo request (8) or reply (0)."""
    return icmp_message(kind, 0, struct.pack("!HH", ident, seq), data)


def ipv4_header(src: IPv4Address, dst: IPv4Address, proto: int, total: int, ttl: int = 64) -> bytes:
    """A 20-byte IPv4 header (no options) for a packet of `total` bytes, with its checksum."""
    ident = secrets.randbits(16)
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, 0, ttl, proto, 0, src.packed, dst.packed)
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:]


def ipv4_packet(src: IPv4Address, dst: IPv4Address, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    """An IPv4 packet (no options) with its header checksum."""
    return ipv4_header(src, dst, proto, 20 + len(payload), ttl) + payload


def udp_quote(src: IPv4Address, sport: int, dst: IPv4Address, dport: int, length: int) -> bytes:
    """The IPv4 and UDP headers of a datagram of `length` payload bytes: what an ICMP error about it quotes.

    For a flow the far end refused, the ingress no longer has the packet (a
    socket gave it the payload only); the kernel that receives the error
    matches it to the client's socket by these addresses, ports and protocol.
    """
    udp = struct.pack("!HHHH", sport, dport, 8 + length, 0)  # checksum 0: "none", and nobody checks a quote's
    return ipv4_header(src, dst, UDP, 28 + length) + udp


def parse_echo_request(packet: bytes) -> tuple[IPv4Address, IPv4Address, int, int, bytes] | None:
    """(src, dst, identifier, sequence, data) of an IPv4 ICMP echo request, or None for anything else.

    Strict: version 4, a consistent header and total length, no fragment,
    ICMP type 8 code 0 with a valid checksum.
    """
    parsed = parse_echo(packet)
    if parsed is None or parsed[0] != ICMP_ECHO_REQUEST:
        return None
    return parsed[1:]


def parse_echo(packet: bytes) -> tuple[int, IPv4Address, IPv4Address, int, int, bytes] | None:
    """(type, src, dst, identifier, sequence, data) of an IPv4 echo request (8) or reply (0), or None.

    Strict as `parse_echo_request`.
    """
    if len(packet) < 28 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    if ihl < 20 or total > len(packet) or total < ihl + 8 or packet[9] != ICMP:
        return None
    if struct.unpack_from("!H", packet, 6)[0] & 0x3FFF:  # more fragments or an offset
        return None
    icmp = packet[ihl:total]
    if icmp[0] not in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY) or icmp[1] != 0 or checksum(icmp) != 0:
        return None
    ident, seq = struct.unpack_from("!HH", icmp, 4)
    return icmp[0], IPv4Address(packet[12:16]), IPv4Address(packet[16:20]), ident, seq, bytes(icmp[8:])


def parse_echo_reply(packet: bytes) -> tuple[int, int, bytes] | None:
    """(identifier, sequence, data) of an IPv4 echo reply as a raw socket reads it, or None."""
    if len(packet) < 28 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if len(icmp) < 8 or icmp[0] != ICMP_ECHO_REPLY or icmp[1] != 0 or checksum(icmp) != 0:
        return None
    ident, seq = struct.unpack_from("!HH", icmp, 4)
    return ident, seq, bytes(icmp[8:])


def refusal_icmp(status: Status) -> tuple[int, int]:
    """(type, code) of the ICMP error for a flow refused with `status`, as a router would answer.

    DENIED and FORBIDDEN: destination unreachable, communication administratively
    prohibited (3/13); UNREACHABLE: host unreachable (3/1); NO_ROUTE: network
    unreachable (3/0); HOP_LIMIT: time exceeded in transit (11/0); anything
    else (a bad header): host unreachable (3/1).
    """
    if status in (Status.DENIED, Status.FORBIDDEN):
        return ICMP_DEST_UNREACH, CODE_ADMIN_PROHIBITED
    if status is Status.NO_ROUTE:
        return ICMP_DEST_UNREACH, CODE_NET_UNREACHABLE
    if status is Status.HOP_LIMIT:
        return ICMP_TIME_EXCEEDED, CODE_TTL_EXCEEDED
    return ICMP_DEST_UNREACH, CODE_HOST_UNREACHABLE


def icmp_error(original: bytes, kind: int, code: int) -> bytes:
    """An ICMP error (destination unreachable, time exceeded) of `kind`/`code` quoting `original`.

    Sent from the original destination back to the original source, as the
    router that refused it would; the quote is the IP header and 8 bytes
    (RFC 792).
    """
    src, dst = IPv4Address(original[12:16]), IPv4Address(original[16:20])
    ihl = (original[0] & 0x0F) * 4
    quoted = original[:ihl + 8]
    return ipv4_packet(dst, src, ICMP, icmp_message(kind, code, bytes(4), quoted))


def admin_prohibited(original: bytes) -> bytes:
    """ICMP destination unreachable, communication administratively prohibited (3/13), quoting `original`."""
    return icmp_error(original, ICMP_DEST_UNREACH, CODE_ADMIN_PROHIBITED)


def quotable_udp(original: bytes) -> bool:
    """True when an ICMP error may be sent about `original` (RFC 1122 3.2.2, RFC 1812 4.3.2.7).

    An IPv4 UDP datagram with its whole header and 8 bytes to quote, the first
    fragment, from a unicast source to a unicast destination.
    """
    if len(original) < 28 or original[0] >> 4 != 4 or original[9] != UDP:
        return False
    ihl = (original[0] & 0x0F) * 4
    if ihl < 20 or len(original) < ihl + 8 or struct.unpack_from("!H", original, 6)[0] & 0x1FFF:
        return False
    src, dst = IPv4Address(original[12:16]), IPv4Address(original[16:20])
    unicast = lambda a: not (a.is_multicast or a.is_unspecified or a == IPv4Address("255.255.255.255"))  # noqa: E731
    return unicast(src) and unicast(dst)


class TokenBuckets:
    """A token bucket per key (`rate` a second, up to `burst`) under one for all keys together.

    Bounded: past `max_keys` the least recently used key is forgotten (it
    comes back full, which the shared bucket still limits).
    """

    def __init__(self, rate: float, burst: float, *, total_rate: float, total_burst: float,
                 max_keys: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = rate, burst
        self.max_keys = max_keys
        self._clock = clock
        self._keys: dict[object, tuple[float, float]] = {}  # key -> (tokens, when), oldest use first
        self._total = _Bucket(total_rate, total_burst, clock())

    def take(self, key: object) -> bool:
        """Spend one token of `key` and one of the total; False (nothing spent) if either is empty."""
        now = self._clock()
        tokens, when = self._keys.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        allowed = tokens >= 1 and self._total.take(now)
        self._keys[key] = (tokens - 1 if allowed else tokens, now)
        while len(self._keys) > self.max_keys:
            del self._keys[next(iter(self._keys))]
        return allowed


class _Bucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.when = rate, burst, burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.when) * self.rate)
        self.when = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


REJECT_RATE = 5.0  # ICMP errors a second per source address
REJECT_BURST = 10.0
REJECT_TOTAL_RATE = 200.0  # ... and for all sources together
REJECT_TOTAL_BURST = 100.0


class RejectCounts:
    """ICMP errors the rejecters sent and those the rate limit held back; safe to update from any thread.

    One instance can outlive the rejecters that feed it (the agent keeps one
    across reloads), so the totals only ever grow, as a Prometheus counter's
    must.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent = 0
        self._limited = 0

    def sent(self) -> None:
        """Count one error sent."""
        with self._lock:
            self._sent += 1

    def limited(self) -> None:
        """Count one error the rate limit held back."""
        with self._lock:
            self._limited += 1

    def snapshot(self) -> dict[str, int]:
        """{"sent": n, "limited": n}, read together."""
        with self._lock:
            return {"sent": self._sent, "limited": self._limited}


class IcmpRejecter:
    """Answers a refused UDP datagram with an ICMP error from its original destination, rate-limited.

    The error is the one `refusal_icmp` gives for the refusal's status
    (admin-prohibited for a denial). The kernel cannot send it: the destination of a TPROXY'd datagram is not a local
    address, and it never sources an ICMP error from one. A raw socket with
    IP_HDRINCL (IPPROTO_RAW) can; token buckets per source and in total keep a
    flood of refused datagrams from turning the agent into an amplifier (at
    most one error per datagram, each no larger than what it quotes plus 48
    bytes). `counts` (thread-safe) counts the errors sent and rate-limited.
    """

    def __init__(self, *, rate: float = REJECT_RATE, burst: float = REJECT_BURST,
                 total_rate: float = REJECT_TOTAL_RATE, total_burst: float = REJECT_TOTAL_BURST,
                 counts: RejectCounts | None = None) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # implies IP_HDRINCL
        self._buckets = TokenBuckets(rate, burst, total_rate=total_rate, total_burst=total_burst)
        self._lock = threading.Lock()  # the buckets are shared by the NFLOG thread and the pump threads
        self.counts = counts if counts is not None else RejectCounts()

    def reject(self, original: bytes, status: Status = Status.DENIED) -> bool:
        """Send the error for `status` about `original` (its IPv4 header and at least 8 bytes); False if not sent."""
        if not quotable_udp(original):
            return False
        src = IPv4Address(original[12:16])
        with self._lock:
            allowed = self._buckets.take(src)
        if not allowed:
            self.counts.limited()
            return False
        try:
            self._sock.sendto(icmp_error(original, *refusal_icmp(status)), (str(src), 0))
        except OSError:
            return False  # closed (shutdown), or no route back: the client times out as before
        self.counts.sent()
        return True

    def close(self) -> None:
        """Close the raw socket (later rejects are not sent)."""
        self._sock.close()


# ---- endpoints -------------------------------------------------------------


class Endpoint:
    """The application side of a datagram flow: sockets to read datagrams from, and a way to send them back.

    `socks` are read without blocking (a connected UDP socket, an inbox that
    an interception thread feeds, a raw ICMP socket); `decode` turns what one
    of them read into a frame payload (None: not for this flow); `send` gives
    a payload back to the application; `refuse` tells the application the flow
    was refused (it gets the refusal's Status). Sending never blocks: a
    datagram that does not fit is dropped, as the network would.
    """

    def __init__(
        self,
        socks: Iterable[socket.socket],
        send: Callable[[bytes], None],
        *,
        decode: Callable[[bytes], bytes | None] | None = None,
        refuse: Callable[[Status], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.socks = list(socks)
        for sock in self.socks:
            sock.setblocking(False)
        self._send = send
        self._decode = decode
        self._refuse = refuse
        self._on_close = on_close
        self._closed = False

    def fileno(self) -> int:
        """The first socket's descriptor (a parked flow watches all of `socks`: `DatagramPump.watched`)."""
        return self.socks[0].fileno()

    def receive(self) -> list[bytes]:
        """Datagrams ready now (a bounded batch per socket)."""
        out: list[bytes] = []
        for sock in self.socks:
            for _ in range(RECV_BATCH):
                try:
                    data = sock.recv(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionRefusedError:
                    continue  # an ICMP port unreachable for an earlier datagram: UDP ignores it
                except OSError as exc:
                    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EMSGSIZE):
                        continue
                    raise
                if self._decode is not None:
                    data = self._decode(data)
                    if data is None:
                        continue
                out.append(data)
        return out

    def send(self, payload: bytes) -> None:
        """Give one datagram to the application (dropped if it cannot be taken now)."""
        try:
            self._send(payload)
        except (BlockingIOError, InterruptedError, ConnectionRefusedError):
            pass
        except OSError as exc:
            if exc.errno not in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EMSGSIZE, errno.ENOBUFS, errno.EPERM, errno.EACCES):
                raise

    def refuse(self, status: Status = Status.DENIED) -> None:
        """The flow was refused with `status`: tell the application if this kind of endpoint can."""
        if self._refuse is not None:
            try:
                self._refuse(status)
            except OSError:
                pass

    def close(self) -> None:
        """Close every socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for sock in self.socks:
            try:
                sock.close()
            except OSError:
                pass
        if self._on_close is not None:
            self._on_close()


def inbox() -> tuple[socket.socket, socket.socket]:
    """(reader, writer): a datagram queue an interception thread feeds and a pump drains."""
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    writer.setblocking(False)
    return reader, writer


def udp_destination(src: IPv4Address, dst: IPv4Address, dport: int, *, preserve_source: bool) -> Endpoint:
    """The delivering side of a UDP flow: a socket connected to the destination.

    With `preserve_source` it is bound to the original client address
    (IP_TRANSPARENT, like TCP delivery), so the server sees the real client.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if preserve_source:
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            sock.bind((str(src), 0))
        sock.connect((str(dst), dport))
    except BaseException:
        sock.close()
        raise
    return Endpoint([sock], sock.send)


class IcmpOrigin:
    """The delivering side of an ICMP echo flow: echoes re-originated from this agent's own address.

    A raw ICMP socket connected to the destination (the kernel then hands it
    only packets from there), filtered to echo replies, with an identifier of
    its own; replies with another identifier belong to another flow and are
    skipped. The application's sequence numbers and data pass unchanged.
    """

    def __init__(self, dst: IPv4Address) -> None:
        self.ident = secrets.randbits(16)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            self.sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", ~(1 << ICMP_ECHO_REPLY) & 0xFFFFFFFF))
            self.sock.connect((str(dst), 0))
        except BaseException:
            self.sock.close()
            raise

    def _send(self, payload: bytes) -> None:
        seq = struct.unpack_from("!H", payload)[0]
        self.sock.send(echo(ICMP_ECHO_REQUEST, self.ident, seq, payload[2:]))

    def _decode(self, packet: bytes) -> bytes | None:
        parsed = parse_echo_reply(packet)
        if parsed is None or parsed[0] != self.ident:
            return None
        return struct.pack("!H", parsed[1]) + parsed[2]

    def endpoint(self) -> Endpoint:
        """The Endpoint a pump drives."""
        return Endpoint([self.sock], self._send, decode=self._decode)


# ---- the pump ---------------------------------------------------------------


class DatagramPump:
    """Moves datagrams between an Endpoint (side a) and a tunnel stream (side b) until idle or closed.

    With `park_after` > 0, a flow quiet that long with nothing in flight
    returns PARKED from `run()` (sockets open, state kept); `run()` again
    resumes it. `expect_reply` (ingress): the far end's reply (header.Status) comes first
    on the tunnel; a non-OK reply ends the flow as REFUSED and the endpoint is
    told (`Endpoint.refuse`). Datagrams from the application are framed and
    sent at once, before the reply, as TCP bytes are. On the way out the
    tunnel is closed cleanly when the flow idles out or the far end closed it,
    and reset otherwise.
    """

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
        self.a = endpoint
        self.b = tunnel
        self.proto = proto
        self.idle = idle
        self.park_after = park_after
        self.last = time.monotonic()
        self.expect_reply = expect_reply
        self._reply = bytearray()
        self._decoder = FrameDecoder(proto)
        self._out = bytearray()
        self._aborted = threading.Event()
        self.up = 0
        self.down = 0
        self.status: Status | None = None
        self.rule: str | None = None
        self.error: str | None = None
        for payload in first:
            self._queue(payload)

    def abort(self) -> None:
        """Reset the flow from any thread; the pump thread returns ABORTED."""
        self._aborted.set()
        try:
            socket.socket.shutdown(self.b, socket.SHUT_RDWR)
        except OSError:
            pass

    def idle_deadline(self) -> float:
        """When the flow ends if nothing moves (monotonic)."""
        return self.last + self.idle

    def watched(self) -> tuple[socket.socket, ...]:
        """Every socket whose readiness must wake the flow while it is parked: each endpoint socket and the tunnel."""
        return (*self.a.socks, self.b)

    def _parkable(self) -> bool:
        """Nothing in flight: no frame waits for the tunnel and TLS holds no decrypted bytes poll cannot see."""
        if self._out:
            return False
        return not (isinstance(self.b, ssl.SSLSocket) and self.b.pending())

    def _queue(self, payload: bytes) -> bool:
        if len(self._out) > MAX_PENDING:
            return False  # the tunnel is not keeping up: drop, as a congested link would
        try:
            self._out += encode_frame(self.proto, payload)
        except FrameError:
            return False  # an oversized datagram from the application is dropped, never sent
        self.up += len(payload)
        return True

    def run(self) -> PumpResult:
        """Relay until the flow idles out, either side closes or fails, the far end refuses, parks, or abort().

        After PARKED every socket stays open and another call resumes.
        """
        self.b.setblocking(False)
        try:
            outcome = self._loop()
        except (OSError, ssl.SSLError, ValueError, HeaderError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            outcome = Outcome.ABORTED if self._aborted.is_set() else Outcome.RESET
        if outcome is Outcome.PARKED:
            return PumpResult(self.up, self.down, outcome, self.status, self.rule, self.error)
        if outcome is Outcome.REFUSED and self.status is not None and self.status is not Status.OK:
            self.a.refuse(self.status)
        self.a.close()
        if outcome in (Outcome.CLOSED, Outcome.IDLE):
            try:
                socket.socket.close(self.b)
            except OSError:
                pass
        else:
            reset(self.b)
        return PumpResult(self.up, self.down, outcome, self.status, self.rule, self.error)

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

    def _flush(self) -> bool:
        """Write queued frames until the tunnel would block; True when everything is written."""
        while self._out:
            try:
                sent = self.b.send(self._out[:65536])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                return False
            del self._out[:sent]
        return True

    def _loop(self) -> Outcome:
        poller = select.poll()
        tunnel_fd = self.b.fileno()
        app_fds = [sock.fileno() for sock in self.a.socks]
        while True:
            if self._aborted.is_set():
                return Outcome.ABORTED
            ended = self._read_tunnel()
            if ended is not None:
                return ended
            for payload in self.a.receive():
                if self._queue(payload):
                    self.last = time.monotonic()
            drained = self._flush()
            events = dict.fromkeys(app_fds, _READ)
            events[tunnel_fd] = _READ | (0 if drained else _WRITE)
            parking = self.park_after > 0 and self._parkable()
            ready = wait_ready(poller, events, last=self.last, idle=self.idle, park_after=self.park_after, parking=parking)
            if isinstance(ready, Outcome):
                return ready
            # Whatever woke it (or an early wake-up), the next turn reads every side.
