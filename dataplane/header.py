"""The per-stream header and reply: what a tunnelled stream says before its bytes.

Every stream opens with a header carrying the application's original 5-tuple
and the identity of the agent that intercepted it (seed 000's "meta
information"), so the far edge can apply the egress policy to the real flow and
log who sent it. The far edge answers with a reply (a status and the deciding
rule) that travels back through every hop in the same byte stream, so a denied
or unreachable flow becomes a reset at the ingress.

Wire format, network byte order (docs/dataplane.md has the table):

    header: magic "MCT" | version u8 = 1 | proto u8 | hops u8 | flags u8
            | src ip 4 | dst ip 4 | src port u16 | dst port u16
            | flow id u64 | identity length u16 | identity (UTF-8)
    reply:  status u8 | rule length u8 | rule name (ASCII)

Protocols: 6 (TCP: the stream carries the application's bytes), 17 (UDP) and
1 (ICMP echo): the stream carries datagrams (`dataplane.datagram_pump`). For ICMP
the source port is the echo identifier and the destination port is 0.

Parsing is pure and strict: anything malformed raises HeaderError.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

MAGIC = b"MCT"
VERSION = 1
MAX_HOPS = 4
MAX_IDENTITY = 255
FLAG_END_TO_END = 0x01  # the stream's TLS session runs from the ingress to the delivering agent; relays splice
KNOWN_FLAGS = FLAG_END_TO_END
TCP, UDP, ICMP = 6, 17, 1
PROTOCOLS = {TCP: "tcp", UDP: "udp", ICMP: "icmp"}
"""IP protocols a stream can carry, by number, with the name policies use."""
_FIXED = struct.Struct("!3sBBBB4s4sHHQH")
HEADER_FIXED_LEN = _FIXED.size  # 28 bytes before the identity


class HeaderError(ValueError):
    """A header or reply that does not follow the wire format."""


class Status(enum.IntEnum):
    """What happened to a stream at the hop that decided its fate."""

    OK = 0
    DENIED = 1
    UNREACHABLE = 2
    NO_ROUTE = 3
    BAD_HEADER = 4
    HOP_LIMIT = 5
    FORBIDDEN = 6  # the header claims what its authenticated sender may not (dataplane.trust)


@dataclass(frozen=True)
class StreamHeader:
    """The original flow of a tunnelled stream and the identity that admitted it."""

    src: IPv4Address
    dst: IPv4Address
    sport: int
    dport: int
    identity: str
    flow_id: int
    proto: int = 6
    hops: int = MAX_HOPS
    flags: int = 0

    @property
    def end_to_end(self) -> bool:
        """True when relays splice this stream instead of decrypting it."""
        return bool(self.flags & FLAG_END_TO_END)

    def encode(self) -> bytes:
        """Serialise; raises HeaderError if a field cannot be represented."""
        ident = self.identity.encode()
        if not ident or len(ident) > MAX_IDENTITY:
            raise HeaderError(f"identity must be 1-{MAX_IDENTITY} bytes")
        if not (0 <= self.sport <= 65535 and 0 <= self.dport <= 65535):
            raise HeaderError("ports must be 0-65535")
        if not 0 <= self.hops <= MAX_HOPS:
            raise HeaderError(f"hops must be 0-{MAX_HOPS}")
        if self.proto not in PROTOCOLS:
            raise HeaderError(f"protocol {self.proto} is not carried")
        return _FIXED.pack(
            MAGIC, VERSION, self.proto, self.hops, self.flags, self.src.packed, self.dst.packed,
            self.sport, self.dport, self.flow_id & 0xFFFFFFFFFFFFFFFF, len(ident),
        ) + ident

    def next_hop(self) -> StreamHeader:
        """The header a relay forwards: one hop fewer (HeaderError when none are left)."""
        if self.hops <= 1:
            raise HeaderError("hop limit reached")
        return StreamHeader(self.src, self.dst, self.sport, self.dport, self.identity, self.flow_id, self.proto, self.hops - 1, self.flags)

    @property
    def proto_name(self) -> str:
        """"tcp", "udp" or "icmp": the name the filter policy and the flow log use."""
        return PROTOCOLS[self.proto]

    @property
    def policy_port(self) -> int | None:
        """The destination port a policy judges (None for ICMP, which has none)."""
        return self.dport if self.proto in (TCP, UDP) else None

    def five_tuple(self) -> tuple[str, int, str, int, int]:
        """(src, sport, dst, dport, proto) for logs and policy checks."""
        return (str(self.src), self.sport, str(self.dst), self.dport, self.proto)


def parse_fixed(data: bytes) -> int:
    """Validate the fixed part of a header and return the identity length that follows."""
    if len(data) != HEADER_FIXED_LEN:
        raise HeaderError(f"fixed header must be {HEADER_FIXED_LEN} bytes, got {len(data)}")
    magic, version, _proto, hops, flags, _src, _dst, _sport, _dport, _flow, ident_len = _FIXED.unpack(data)
    if magic != MAGIC:
        raise HeaderError("bad magic")
    if version != VERSION:
        raise HeaderError(f"unsupported version {version}")
    if flags & ~KNOWN_FLAGS:
        raise HeaderError("unknown flags")
    if not 1 <= hops <= MAX_HOPS:
        raise HeaderError(f"hops {hops} out of range 1-{MAX_HOPS}")
    if not 1 <= ident_len <= MAX_IDENTITY:
        raise HeaderError(f"identity length {ident_len} out of range 1-{MAX_IDENTITY}")
    return ident_len


def decode(data: bytes) -> StreamHeader:
    """Decode a complete header (fixed part plus identity)."""
    ident_len = parse_fixed(data[:HEADER_FIXED_LEN])
    if len(data) != HEADER_FIXED_LEN + ident_len:
        raise HeaderError("header length does not match its identity length")
    _magic, _version, proto, hops, flags, src, dst, sport, dport, flow, _ = _FIXED.unpack(data[:HEADER_FIXED_LEN])
    if proto not in PROTOCOLS:
        raise HeaderError(f"only TCP, UDP and ICMP streams are carried, not protocol {proto}")
    if proto == ICMP and dport != 0:
        raise HeaderError("an ICMP stream has destination port 0")
    try:
        identity = data[HEADER_FIXED_LEN:].decode()
    except UnicodeDecodeError:
        raise HeaderError("identity is not UTF-8") from None
    if not identity.startswith("spiffe://"):
        raise HeaderError("identity is not a spiffe URI")
    return StreamHeader(IPv4Address(src), IPv4Address(dst), sport, dport, identity, flow, proto, hops, flags)


def encode_reply(status: Status, rule: str | None = None) -> bytes:
    """Serialise a reply: status byte, rule-name length, rule name."""
    name = (rule or "").encode("ascii")[:255]
    return bytes((int(status), len(name))) + name


def reply_length(prefix: bytes) -> int | None:
    """Total reply length once its first two bytes are known (None before that)."""
    if len(prefix) < 2:
        return None
    return 2 + prefix[1]


def decode_reply(data: bytes) -> tuple[Status, str | None]:
    """Decode a complete reply."""
    if len(data) < 2 or len(data) != 2 + data[1]:
        raise HeaderError("reply length mismatch")
    try:
        status = Status(data[0])
    except ValueError:
        raise HeaderError(f"unknown status {data[0]}") from None
    try:
        rule = data[2:].decode("ascii") or None
    except UnicodeDecodeError:
        raise HeaderError("rule name is not ASCII") from None
    return status, rule
