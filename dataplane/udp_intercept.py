"""UDP interception: where UDP flows enter the fabric.

nftables TPROXYs UDP from `local` to `remote` to a transparent UDP socket on
127.0.0.1:<intercept_port> (the TCP listener's port number, in UDP).
IP_RECVORIGDSTADDR gives each datagram's original destination. The first
datagram of a 5-tuple opens a session (`datagram_sessions.Sessions`): a transparent
socket bound to the original destination and connected to the client
(replies leave from the address the application sent to; later datagrams of
the flow reach that socket directly through the `socket transparent` rule)
plus an inbox for datagrams that were already queued on the shared socket.
The Forwarder carries the session in a tunnel stream until it is idle for
`timeouts.datagram_idle`.

A refused UDP datagram is answered at once with an ICMP error from its
original destination, through a rate-limited raw socket
(`icmp_reject.IcmpRejecter`): destination unreachable, administratively
prohibited (3/13) for the kernel filter table's denials, which the agent
learns through NFLOG (`UdpInterceptor.refuse_denied`); for a refusal the far
end reports, the session endpoint's `refuse` sends the error
`packets.refusal_icmp` gives for its status (3/13 denied, 3/1 unreachable,
3/0 no route, 11/0 hop limit).
"""
from __future__ import annotations

import ctypes
import logging
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address

from dataplane.admission import Admission
from dataplane.datagram_endpoints import IP_TRANSPARENT, Endpoint, inbox
from dataplane.datagram_sessions import READ_BATCH, Handler, Reader, Sessions, count_refusal, offer, start_session
from dataplane.header import UDP, Status
from dataplane.icmp_reject import IcmpRejecter, RejectCounts
from dataplane.logfmt import event
from dataplane.packets import udp_quote
from dataplane.workers import Workers

log = logging.getLogger("dataplane.datagram")

IP_RECVORIGDSTADDR = 20  # linux/in.h (also IP_ORIGDSTADDR, the control message type)
SO_ATTACH_FILTER = 26  # asm-generic/socket.h
SKF_NET_OFF = -0x100000  # linux/filter.h: classic BPF offsets from the network header
BPF_LD, BPF_JMP, BPF_RET = 0x00, 0x05, 0x06
BPF_W, BPF_H, BPF_ABS, BPF_JEQ, BPF_K = 0x00, 0x08, 0x20, 0x10, 0x00


def orig_dst(ancillary: list[tuple[int, int, bytes]]) -> tuple[str, int] | None:
    """The original destination from IP_ORIGDSTADDR ancillary data (a sockaddr_in), or None."""
    for level, kind, data in ancillary:
        if level == socket.SOL_IP and kind == IP_RECVORIGDSTADDR and len(data) >= 8:
            port = struct.unpack_from("!H", data, 2)[0]
            return socket.inet_ntoa(data[4:8]), port
    return None


def only_from(sock: socket.socket, src: str, sport: int) -> None:
    """Let `sock` queue only datagrams from `src`:`sport` (a classic BPF socket filter, set before bind).

    A session socket is bound to the original destination before it is
    connected to its client; in between it is an unconnected socket on that
    address, and the kernel would queue it another client's datagram to the
    same destination, which the session would then answer on the wrong flow.
    The filter closes that window: such a datagram is dropped (UDP, the
    client sends again and reaches its own session), never misdelivered.
    """
    program = [
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, (SKF_NET_OFF + 12) & 0xFFFFFFFF),  # IPv4 source address
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 3, int(IPv4Address(src))),
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 0),  # UDP source port (the filter sees the datagram from its UDP header)
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 1, sport),
        (BPF_RET | BPF_K, 0, 0, 0xFFFFFFFF),
        (BPF_RET | BPF_K, 0, 0, 0),
    ]
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *insn) for insn in program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class UdpInterceptor:
    """The transparent UDP socket TPROXY sends intercepted datagrams to, and its session table."""

    def __init__(self, port: int, handler: Handler, workers: Workers, *, wanted: Callable[[str, str], bool],
                 reject_counts: RejectCounts | None = None, admission: Admission | None = None,
                 limits: Callable[[], tuple[int, int]] | None = None) -> None:
        self.port = port
        self._wanted = wanted  # (src, dst): is this a flow interception should take (local to remote)?
        self._handler = handler
        self._workers = workers
        self._admission = admission
        self.sessions = Sessions(limits)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            self._sock.setsockopt(socket.SOL_IP, IP_RECVORIGDSTADDR, 1)
            self._sock.bind(("127.0.0.1", port))
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise
        self._reader = Reader("udp-intercept", self._sock.fileno(), self._drain)
        try:
            self._rejecter: IcmpRejecter | None = IcmpRejecter(counts=reject_counts)
        except OSError as exc:  # no CAP_NET_RAW: refused datagrams are dropped silently, as the kernel does
            self._rejecter = None
            event(log, "datagram.reject_unavailable", error=exc.strerror, level=logging.WARNING)

    def start(self) -> None:
        """Begin taking datagrams."""
        self._reader.start()
        event(log, "listener.start", listener="udp-intercept", addr=f"127.0.0.1:{self.port}")

    def alive(self) -> bool:
        """Is the datagram reader running (the health check)?"""
        return self._reader.alive()

    def stop(self) -> None:
        """Stop taking new flows; running sessions end with their streams (refusals after this are silent)."""
        self._reader.stop()
        self._sock.close()
        if self._rejecter is not None:
            self._rejecter.close()

    def refuse_denied(self, src: str, dst: str, head: bytes) -> bool:
        """A UDP datagram the kernel filter table refused (reported by NFLOG): answer it with admin-prohibited.

        Only for flows this agent intercepts; `head` is the datagram's IPv4
        header and first 8 bytes. False when nothing was sent (not ours, rate
        limited, or no raw socket).
        """
        if self._rejecter is None or not head or not self._wanted(src, dst):
            return False
        return self._rejecter.reject(head)

    def _refuse_session(self, src: str, sport: int, dst: str, dport: int, length: int, status: Status) -> None:
        """A session was refused: the ICMP error for `status`, quoting the headers of the datagram that opened it."""
        if self._rejecter is not None:
            self._rejecter.reject(udp_quote(IPv4Address(src), sport, IPv4Address(dst), dport, length), status)

    def _drain(self) -> None:
        for _ in range(READ_BATCH):
            try:
                data, ancillary, _flags, (src, sport) = self._sock.recvmsg(65535, socket.CMSG_SPACE(16))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an error queued on the socket (ICMP for an earlier send): nothing to read
            original = orig_dst(ancillary)
            if original is None:
                continue
            dst, dport = original
            if not self._wanted(src, dst):
                continue  # sent to the socket itself, not intercepted: nothing to carry
            self._dispatch((src, sport, dst, dport), data)

    def _dispatch(self, key: tuple[str, int, str, int], data: bytes) -> None:
        """Give a datagram to its flow's session, opening one for a new flow."""
        writer = self.sessions.get(key)
        if writer is not None:
            offer(writer, data)
        else:
            self._open(key, data)

    def _open(self, key: tuple[str, int, str, int], data: bytes) -> None:
        src, sport, dst, dport = key
        try:
            reply = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as exc:
            event(log, "datagram.session_failed", proto="udp", error=exc.strerror, level=logging.WARNING)
            return
        try:
            only_from(reply, src, sport)
            reply.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            reply.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            reply.bind((dst, dport))
            reply.connect((src, sport))
        except OSError as exc:
            reply.close()
            event(log, "datagram.session_failed", proto="udp", dst=f"{dst}:{dport}", error=exc.strerror, level=logging.WARNING)
            return
        first = [data]
        reader, writer = inbox()
        refused = self.sessions.add(key, writer)
        if refused:
            for sock in (reply, reader, writer):
                sock.close()
            count_refusal(self._admission, refused, "udp")
            return
        endpoint = Endpoint(
            [reply, reader], reply.send, refuse=lambda status: self._refuse_session(src, sport, dst, dport, len(data), status),
            on_close=lambda: self.sessions.forget(key, writer),
        )
        start_session(self._workers, self._admission, endpoint, self._handler, IPv4Address(src), sport, IPv4Address(dst), dport, UDP, first)
