"""Stream header and reply: round trips, strict parsing, and no crash on arbitrary bytes."""
from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from dataplane.header import (
    FLAG_END_TO_END, HEADER_FIXED_LEN, HeaderError, Status, StreamHeader, decode, decode_reply, encode_reply, parse_fixed, reply_length,
)

HEADER = StreamHeader(IPv4Address("10.30.40.10"), IPv4Address("172.18.40.10"), 40000, 5432, "spiffe://acme/conn", 0x1234)


def test_round_trip() -> None:
    raw = HEADER.encode()
    assert len(raw) == HEADER_FIXED_LEN + len("spiffe://acme/conn")
    assert parse_fixed(raw[:HEADER_FIXED_LEN]) == len("spiffe://acme/conn")
    assert decode(raw) == HEADER
    assert HEADER.five_tuple() == ("10.30.40.10", 40000, "172.18.40.10", 5432, 6)


def test_next_hop_counts_down_to_refusal() -> None:
    header = HEADER
    for _ in range(HEADER.hops - 1):
        header = header.next_hop()
    assert header.hops == 1
    with pytest.raises(HeaderError):
        header.next_hop()


@pytest.mark.parametrize("offset,value", [(0, ord("X")), (3, 9), (5, 0), (5, 9), (6, 2), (6, 0x81)])
def test_bad_fixed_fields_refused(offset: int, value: int) -> None:
    raw = bytearray(HEADER.encode())
    raw[offset] = value
    with pytest.raises(HeaderError):
        decode(bytes(raw))


def test_identity_length_mismatch_and_unknown_protocol_refused() -> None:
    raw = HEADER.encode()
    with pytest.raises(HeaderError):
        decode(raw[:-1])
    gre = bytearray(raw)
    gre[4] = 47
    with pytest.raises(HeaderError):
        decode(bytes(gre))
    with pytest.raises(HeaderError):
        StreamHeader(HEADER.src, HEADER.dst, 1, 2, HEADER.identity, 1, proto=47).encode()


def test_udp_and_icmp_headers_round_trip() -> None:
    udp = StreamHeader(HEADER.src, HEADER.dst, 40000, 5001, HEADER.identity, 7, proto=17)
    assert decode(udp.encode()) == udp
    assert (udp.proto_name, udp.policy_port) == ("udp", 5001)
    icmp = StreamHeader(HEADER.src, HEADER.dst, 0x1234, 0, HEADER.identity, 8, proto=1)
    assert decode(icmp.encode()) == icmp
    assert (icmp.proto_name, icmp.policy_port) == ("icmp", None)
    assert HEADER.proto_name == "tcp"


def test_icmp_header_with_a_destination_port_refused() -> None:
    raw = bytearray(StreamHeader(HEADER.src, HEADER.dst, 0x1234, 0, HEADER.identity, 8, proto=1).encode())
    raw[18] = 9  # low byte of the destination port
    with pytest.raises(HeaderError):
        decode(bytes(raw))


def test_random_bytes_only_ever_raise_header_error() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 80)))
        if rng.random() < 0.5:
            blob = b"MCT\x01" + blob
        try:
            decode(blob)
        except HeaderError:
            pass


def test_reply_round_trip_and_errors() -> None:
    raw = encode_reply(Status.DENIED, "no-ssh")
    assert reply_length(raw[:1]) is None
    assert reply_length(raw[:2]) == len(raw)
    assert decode_reply(raw) == (Status.DENIED, "no-ssh")
    assert decode_reply(encode_reply(Status.OK)) == (Status.OK, None)
    with pytest.raises(HeaderError):
        decode_reply(b"\x63\x00")
    with pytest.raises(HeaderError):
        decode_reply(b"\x00\x05ab")


def test_end_to_end_flag_survives_hops() -> None:
    header = StreamHeader(HEADER.src, HEADER.dst, 1, 2, "spiffe://acme/conn", 9, flags=FLAG_END_TO_END)
    decoded = decode(header.next_hop().encode())
    assert decoded.end_to_end and decoded.hops == header.hops - 1
    assert not HEADER.end_to_end
