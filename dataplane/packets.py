"""IPv4 and ICMP packets the data plane builds and parses itself: pure functions, no sockets.

The ICMP interception reads echo requests from a TUN and writes replies back
(`parse_echo_request`, `echo`, `ipv4_packet`); a refused UDP datagram is
answered with the ICMP error a router would send (`refusal_icmp`,
`icmp_error`, quoting the datagram: `udp_quote`, `quotable_udp`). Parsing is
strict: anything that is not exactly what is expected is None.
"""
from __future__ import annotations

import secrets
import struct
from ipaddress import IPv4Address

from dataplane.header import ICMP, UDP, Status

ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST, ICMP_TIME_EXCEEDED = 0, 3, 8, 11
CODE_NET_UNREACHABLE, CODE_HOST_UNREACHABLE, CODE_ADMIN_PROHIBITED = 0, 1, 13
CODE_TTL_EXCEEDED = 0


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
