"""GENEVE as the AWS Gateway Load Balancer sends it: parse, validate, and key the inner flow (pure).

The GWLB wraps every packet it hands a target in UDP to port 6081 (RFC 8926)
with version 0, protocol type 0x0800 (IPv4), VNI 0 and three options of
AWS's class 0x0108 (their "Integrate your appliance with GWLB" write-up):

| type | length (4-byte words) | value |
|---|---|---|
| 1 | 2 | the GWLB endpoint's id (64 bits) |
| 2 | 2 | the attachment id (64 bits) |
| 3 | 1 | the flow cookie (32 bits) |

That is 32 bytes of options, an 8-byte header, and with outer IPv4 and UDP
the 68 bytes AWS documents as its overhead. A target returns a flow's packets
with the same GENEVE header and options (`Geneve.header`).

`parse` takes a buffer and a length (so a preallocated receive buffer is
parsed in place) and returns a `Geneve`, or raises `Malformed` whose
`reason` is the metric label the gateway counts. Anything else is refused:
a control packet (O bit), another version, an inner protocol but IPv4, an
option of another class or type or with another length, a missing or
repeated option, an inner packet whose IPv4 header or length is wrong.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

GENEVE_PORT = 6081
AWS_OPTION_CLASS = 0x0108
OPT_ENDPOINT_ID, OPT_ATTACHMENT_ID, OPT_FLOW_COOKIE = 1, 2, 3
_OPTION_WORDS = {OPT_ENDPOINT_ID: 2, OPT_ATTACHMENT_ID: 2, OPT_FLOW_COOKIE: 1}
ETHERTYPE_IPV4 = 0x0800
BASE_HEADER = 8
AWS_OVERHEAD = 68  # outer IPv4 (20) + UDP (8) + GENEVE (8) + the three options (32)
TCP, UDP, ICMP = 6, 17, 1

# Every reason `parse` can give (the metric labels, so a dashboard can list them all up front).
REASONS = (
    "truncated", "bad_version", "control", "not_ipv4", "unknown_option",
    "bad_option_length", "duplicate_option", "missing_option", "bad_inner",
)

_HEADER = struct.Struct("!BBHI")  # ver|optlen, O|C|rsvd, protocol type, VNI<<8|rsvd
_OPTION = struct.Struct("!HBB")  # class, type, R|R|R|length
_U64 = struct.Struct("!Q")
_U32 = struct.Struct("!I")
_IP_FIXED = struct.Struct("!BxH4xBB2x")  # version|ihl, total length, ttl, protocol
_ADDRS = struct.Struct("!II")
_PORTS = struct.Struct("!HH")


class Malformed(ValueError):
    """A packet the gateway drops; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Geneve:
    """One validated GWLB packet: where its inner IPv4 packet lies, its options, its flow key."""

    header_len: int  # bytes of GENEVE header and options: the inner packet starts here
    inner_len: int
    endpoint_id: int
    attachment_id: int
    flow_cookie: int
    key: tuple[int, int, int, int, int]  # `flow_key` of the inner packet


def parse(buf: bytes | bytearray | memoryview, length: int) -> Geneve:
    """Validate the first `length` bytes of `buf` as a GWLB GENEVE payload (the UDP payload)."""
    if length < BASE_HEADER:
        raise Malformed("truncated", f"{length} bytes, a GENEVE header has 8")
    first, flags, protocol, _vni = _HEADER.unpack_from(buf, 0)
    if first >> 6 != 0:
        raise Malformed("bad_version", f"version {first >> 6}")
    header_len = BASE_HEADER + (first & 0x3F) * 4
    if header_len > length:
        raise Malformed("truncated", f"options end at {header_len}, packet at {length}")
    if flags & 0x80:
        raise Malformed("control", "O bit set: no payload to forward")
    if protocol != ETHERTYPE_IPV4:
        raise Malformed("not_ipv4", f"protocol type 0x{protocol:04x}")
    found: dict[int, int] = {}
    offset = BASE_HEADER
    while offset < header_len:
        if offset + _OPTION.size > header_len:
            raise Malformed("truncated", "option header past the options")
        klass, kind, words = _OPTION.unpack_from(buf, offset)
        words &= 0x1F
        kind &= 0x7F  # the high bit marks a critical option; ours are known either way
        end = offset + _OPTION.size + words * 4
        if end > header_len:
            raise Malformed("truncated", f"option 0x{klass:04x}/{kind} runs past the options")
        if klass != AWS_OPTION_CLASS or kind not in _OPTION_WORDS:
            raise Malformed("unknown_option", f"class 0x{klass:04x} type {kind}")
        if words != _OPTION_WORDS[kind]:
            raise Malformed("bad_option_length", f"type {kind} has {words} words, AWS sends {_OPTION_WORDS[kind]}")
        if kind in found:
            raise Malformed("duplicate_option", f"type {kind}")
        value = offset + _OPTION.size
        found[kind] = (_U64 if words == 2 else _U32).unpack_from(buf, value)[0]
        offset = end
    if len(found) != len(_OPTION_WORDS):
        missing = sorted(set(_OPTION_WORDS) - set(found))
        raise Malformed("missing_option", f"types {missing}")
    inner_len = length - header_len
    return Geneve(
        header_len, inner_len, found[OPT_ENDPOINT_ID], found[OPT_ATTACHMENT_ID], found[OPT_FLOW_COOKIE],
        flow_key(buf, header_len, inner_len),
    )


def flow_key(buf: bytes | bytearray | memoryview, offset: int, length: int) -> tuple[int, int, int, int, int]:
    """The direction-free flow key of the IPv4 packet at `offset`: (proto, low addr, low port, high addr, high port).

    Both directions of a flow get the same key (the endpoint with the lower
    (address, port) comes first). TCP and UDP key on the 5-tuple, anything
    else on (proto, addresses), as the GWLB's own stickiness does. A later
    fragment carries no ports, so fragments are refused (`bad_inner`).
    """
    if length < 20:
        raise Malformed("bad_inner", f"{length} bytes, an IPv4 header has 20")
    version_ihl, total, _ttl, proto = _IP_FIXED.unpack_from(buf, offset)
    if version_ihl >> 4 != 4:
        raise Malformed("bad_inner", f"IP version {version_ihl >> 4}")
    ihl = (version_ihl & 0x0F) * 4
    if ihl < 20 or total != length or ihl > length:
        raise Malformed("bad_inner", f"header {ihl} bytes, total length {total}, carried {length}")
    if _U32.unpack_from(buf, offset + 4)[0] & 0x3FFF:  # MF flag or a fragment offset
        raise Malformed("bad_inner", "fragment")
    src, dst = _ADDRS.unpack_from(buf, offset + 12)
    sport = dport = 0
    if proto in (TCP, UDP):
        if ihl + 4 > length:
            raise Malformed("bad_inner", "ports missing")
        sport, dport = _PORTS.unpack_from(buf, offset + ihl)
    if (src, sport) <= (dst, dport):
        return (proto, src, sport, dst, dport)
    return (proto, dst, dport, src, sport)


def encode(inner: bytes, *, endpoint_id: int, attachment_id: int, flow_cookie: int, vni: int = 0) -> bytes:
    """A GENEVE payload as the GWLB sends it (the test harness and the bench play the load balancer with it)."""
    options = b"".join((
        _OPTION.pack(AWS_OPTION_CLASS, OPT_ENDPOINT_ID, 2) + _U64.pack(endpoint_id),
        _OPTION.pack(AWS_OPTION_CLASS, OPT_ATTACHMENT_ID, 2) + _U64.pack(attachment_id),
        _OPTION.pack(AWS_OPTION_CLASS, OPT_FLOW_COOKIE, 1) + _U32.pack(flow_cookie),
    ))
    return _HEADER.pack(len(options) // 4, 0, ETHERTYPE_IPV4, vni << 8) + options + inner
