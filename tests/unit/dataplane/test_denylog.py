"""NFLOG parsing: refused packets become (5-tuple, rule); anything malformed is ignored."""
from __future__ import annotations

import socket
import struct

from dataplane.denylog import (
    NFULA_PAYLOAD,
    NFULA_PREFIX,
    NFULA_TIMESTAMP,
    NFNL_SUBSYS_ULOG,
    _attribute,
    config_message,
    parse_messages,
)


def _ipv4_tcp(src: str, dst: str, sport: int, dport: int, proto: int = 6) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return header + struct.pack("!HHIIHHHH", sport, dport, 0, 0, 0x5002, 64240, 0, 0)


def _message(prefix: bytes, payload: bytes, stamp: tuple[int, int] | None = None, kind: int = (NFNL_SUBSYS_ULOG << 8)) -> bytes:
    attrs = _attribute(NFULA_PREFIX, prefix + b"\0") + _attribute(NFULA_PAYLOAD, payload)
    if stamp:
        attrs += _attribute(NFULA_TIMESTAMP, struct.pack("!QQ", *stamp))
    body = struct.pack("=BBH", socket.AF_INET, 0, socket.htons(4643)) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_two_messages_in_one_datagram() -> None:
    data = _message(b"transit.deny rule=no-ssh ", _ipv4_tcp("10.30.40.2", "172.18.40.10", 40000, 22), stamp=(1_790_000_000, 250_000))
    data += _message(b"transit.deny rule=default ", _ipv4_tcp("10.30.40.2", "172.18.40.10", 40001, 8080, proto=17))
    first, second = list(parse_messages(data))
    assert (first.src, first.dst, first.proto, first.sport, first.dport, first.rule) == ("10.30.40.2", "172.18.40.10", "tcp", 40000, 22, "no-ssh")
    assert first.ts == 1_790_000_000.25
    assert (second.proto, second.dport, second.rule) == ("udp", 8080, None)


def test_icmp_has_no_ports() -> None:
    (denied,) = parse_messages(_message(b"transit.deny rule=x ", _ipv4_tcp("1.1.1.1", "2.2.2.2", 0, 0, proto=1)[:28]))
    assert (denied.proto, denied.sport, denied.dport, denied.rule) == ("icmp", 0, 0, "x")


def test_garbage_and_foreign_messages_are_ignored() -> None:
    good = _ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2)
    assert list(parse_messages(b"")) == []
    assert list(parse_messages(b"\xff" * 40)) == []
    assert list(parse_messages(_message(b"someone else ", good))) == []            # another prefix
    assert list(parse_messages(_message(b"transit.deny rule=a ", good[:22]))) == []  # truncated ports
    assert list(parse_messages(_message(b"transit.deny rule=a ", b"\x60" + good[1:]))) == []  # IPv6 version nibble
    assert list(parse_messages(_message(b"transit.deny rule=a ", good, kind=(NFNL_SUBSYS_ULOG << 8) | 1))) == []
    truncated = _message(b"transit.deny rule=a ", good)
    assert list(parse_messages(truncated[:-10])) == []


def test_config_message_layout() -> None:
    message = config_message(4643, _attribute(1, b"\x01"), seq=7)
    length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", message)
    assert length == len(message) and kind == (NFNL_SUBSYS_ULOG << 8) | 1 and flags == 5 and seq == 7
    assert struct.unpack_from("!H", message, 18)[0] == 4643


def test_a_report_carries_the_headers_an_icmp_error_quotes() -> None:
    packet = _ipv4_tcp("10.30.40.2", "172.18.40.10", 40001, 5004, proto=17)
    (denied,) = parse_messages(_message(b"transit.deny rule=default ", packet))
    assert denied.head == packet[:28]  # IPv4 header and the first 8 bytes (the UDP header)
    (short,) = parse_messages(_message(b"transit.deny rule=default ", packet[:24]))
    assert short.head == b"" and short.dport == 5004  # not enough to quote: logged, never answered
