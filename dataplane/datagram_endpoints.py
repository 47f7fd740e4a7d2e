"""The application's side of a datagram flow: sockets a pump reads datagrams from and answers through.

At the ingress the interception builds the `Endpoint` (`udp_intercept`,
`icmp_intercept`); at delivery the Forwarder does: a UDP socket connected to
the destination (`udp_destination`), or for ICMP echo either the agent's TUN
(`icmp_intercept.IcmpInterceptor.delivery`, which keeps the client's address)
or a raw socket that re-originates the echo from this agent's own address
with a fresh identifier (`IcmpOrigin`). The packets they build and parse are
in `dataplane.packets`.
"""
from __future__ import annotations

import errno
import secrets
import socket
import struct
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address

from dataplane.header import Status
from dataplane.packets import ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, echo, parse_echo_reply

RECV_BATCH = 64  # datagrams read from one endpoint socket per turn
IP_TRANSPARENT = 19
SOL_RAW = 255
ICMP_FILTER = 1


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
