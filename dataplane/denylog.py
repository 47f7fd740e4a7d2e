"""Connections the kernel filter table refused, read back from NFLOG so they reach the flow log.

Each report also carries the refused packet's first bytes (`DeniedPacket.head`:
its IPv4 header and 8 more), which is what the agent quotes when it answers a
refused UDP datagram with an ICMP error (`icmp_reject.IcmpRejecter`).

A deny in the filter table happens in the kernel, before any agent socket sees
the connection, so the agent learns about it only if the kernel tells it. The
deny chains log to an NFLOG group (`filter_table.LOG_GROUP`) as well as to the
kernel log; `DenyListener` binds that group on a netlink socket in the agent's
network namespace and hands every refused packet, with its rule name, to a
callback (the agent writes it to the flow log and counts it).

Only the first packet of a connection is judged (the rest would ride
conntrack), so one NFLOG message is one refused connection attempt. Parsing is
pure (`parse_messages`) and ignores anything malformed.
"""
from __future__ import annotations

import errno
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

log = logging.getLogger("dataplane.denylog")

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NFULA_TIMESTAMP = 3
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
COPY_RANGE = 128  # IPv4 header with options plus the first bytes of TCP/UDP: all we read

_NLMSG = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")
_NLATTR = struct.Struct("=HH")
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp"}


@dataclass(frozen=True)
class DeniedPacket:
    """The first packet of a connection the filter table refused."""

    ts: float
    src: str
    dst: str
    proto: str
    sport: int
    dport: int
    rule: str | None  # None: the default verdict
    head: bytes = field(default=b"", repr=False, compare=False)  # IPv4 header + 8 bytes, what an ICMP error quotes

    def as_flow(self, *, node: str, role: str, identity: str) -> dict[str, Any]:
        """The flow log line for it (no bytes moved, no path taken)."""
        return {
            "ts": self.ts, "node": node, "role": role, "src": self.src, "sport": self.sport, "dst": self.dst,
            "dport": self.dport, "proto": self.proto, "src_identity": identity, "verdict": "deny",
            "rule": self.rule, "outcome": "refused-by-kernel",
        }


def _attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > len(data):
            return
        yield kind & 0x3FFF, data[offset + _NLATTR.size: offset + length]
        offset += (length + 3) & ~3


def _rule_from_prefix(prefix: str) -> str | None:
    for word in prefix.split():
        if word.startswith("rule="):
            name = word.removeprefix("rule=")
            return None if name == "default" else name
    return None


def parse_packet(body: bytes) -> DeniedPacket | None:
    """One NFULNL_MSG_PACKET body (after nlmsghdr): the IPv4 5-tuple and the rule, or None."""
    if len(body) < _NFGEN.size:
        return None
    attrs = dict(_attributes(body[_NFGEN.size:]))
    payload = attrs.get(NFULA_PAYLOAD, b"")
    prefix = attrs.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode(errors="replace")
    if len(payload) < 20 or payload[0] >> 4 != 4 or not prefix.startswith("transit.deny"):
        return None
    header_len = (payload[0] & 0x0F) * 4
    proto = payload[9]
    sport = dport = 0
    if proto in (6, 17):
        if len(payload) < header_len + 4:
            return None
        sport, dport = struct.unpack_from("!HH", payload, header_len)
    ts = time.time()
    stamp = attrs.get(NFULA_TIMESTAMP)
    if stamp is not None and len(stamp) == 16:
        seconds, micros = struct.unpack("!QQ", stamp)
        ts = seconds + micros / 1e6
    return DeniedPacket(
        ts=ts, src=str(IPv4Address(payload[12:16])), dst=str(IPv4Address(payload[16:20])),
        proto=PROTO_NAMES.get(proto, str(proto)), sport=sport, dport=dport, rule=_rule_from_prefix(prefix),
        head=payload[:header_len + 8] if len(payload) >= header_len + 8 else b"",
    )


def parse_messages(data: bytes) -> Iterator[DeniedPacket]:
    """Every refused packet in one netlink datagram (which may hold several messages)."""
    offset = 0
    packet_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
    while offset + _NLMSG.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size or offset + length > len(data):
            return
        if kind == packet_type:
            denied = parse_packet(data[offset + _NLMSG.size: offset + length])
            if denied is not None:
                yield denied
        offset += (length + 3) & ~3


def _attribute(kind: int, value: bytes) -> bytes:
    raw = _NLATTR.pack(_NLATTR.size + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def config_message(group: int, attrs: bytes, seq: int) -> bytes:
    """An NFULNL_MSG_CONFIG request for `group`."""
    body = _NFGEN.pack(socket.AF_UNSPEC, 0, socket.htons(group)) + attrs
    return _NLMSG.pack(_NLMSG.size + len(body), (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


class DenyListener:
    """Binds an NFLOG group in the caller's network namespace and reports refused connections.

    `on_deny` runs on the listener thread; keep it quick.
    """

    def __init__(self, group: int, on_deny: Callable[[DeniedPacket], None]) -> None:
        self._group = group
        self._on_deny = on_deny
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the group (OSError if another process holds it or NFLOG is missing) and start reading."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, 0))
            sock.settimeout(2)
            self._request(sock, _attribute(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])), 1)
            self._request(sock, _attribute(NFULA_CFG_MODE, struct.pack("!IBB", COPY_RANGE, NFULNL_COPY_PACKET, 0)), 2)
            self._request(sock, _attribute(NFULA_CFG_QTHRESH, struct.pack("!I", 1)) + _attribute(NFULA_CFG_TIMEOUT, struct.pack("!I", 1)), 3)
            sock.settimeout(None)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="deny-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Unbind (closing the socket releases the group) and stop the thread."""
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _request(self, sock: socket.socket, attrs: bytes, seq: int) -> None:
        """Send one config message and wait for its acknowledgement."""
        sock.send(config_message(self._group, attrs, seq))
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind, _flags, got_seq, _pid = _NLMSG.unpack_from(data, offset)
                if kind == NLMSG_ERROR and got_seq == seq:
                    (error,) = struct.unpack_from("=i", data, offset + _NLMSG.size)
                    if error:
                        raise OSError(-error, f"NFLOG config for group {self._group} refused")
                    return
                offset += max((length + 3) & ~3, _NLMSG.size)

    def _run(self) -> None:
        while True:
            sock = self._sock
            if sock is None:
                return
            try:
                data = sock.recv(1 << 16)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # a burst overflowed the socket: some denies are not reported
                    log.warning("denylog.overflow group=%s", self._group)
                    continue
                return
            if not data:
                return
            for denied in parse_messages(data):
                try:
                    self._on_deny(denied)
                except Exception:
                    log.exception("denylog.callback_failed")
