"""GENEVE as the Gateway Load Balancer sends it: golden bytes, scapy's reading of them, and every refusal."""
from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import ICMP, IP, TCP, UDP

from dataplane.geneve.packet import AWS_OVERHEAD, REASONS, Malformed, encode, flow_key, parse

# A SYN from 10.30.40.10:40000 to 172.18.40.10:5432 as the GWLB hands it to a target, written out from
# AWS's documented layout: GENEVE v0, 8 words of options, IPv4, VNI 0; class 0x0108 type 1 (2 words):
# endpoint id; type 2 (2 words): attachment id; type 3 (1 word): flow cookie.
INNER_SYN = bytes.fromhex(
    "45000028000100004006" "0000" "0a1e280a" "ac12280a"  # IPv4, 40 bytes, TTL 64, TCP, checksum 0
    "9c401538" "00000000" "00000000" "5002" "2000" "0000" "0000"  # 40000 -> 5432, SYN
)
GOLDEN = bytes.fromhex(
    "08000800" "00000000"
    "01080102" "0123456789abcdef"
    "01080202" "fedcba9876543210"
    "01080301" "c0ffee01"
) + INNER_SYN


def test_the_golden_packet_parses_to_its_options_and_inner_flow():
    packet = parse(GOLDEN, len(GOLDEN))
    assert (packet.endpoint_id, packet.attachment_id, packet.flow_cookie) == (0x0123456789ABCDEF, 0xFEDCBA9876543210, 0xC0FFEE01)
    assert packet.header_len == 40 and packet.inner_len == len(INNER_SYN)
    assert packet.key == (6, int(IPv4Address("10.30.40.10")), 40000, int(IPv4Address("172.18.40.10")), 5432)


def test_encode_writes_the_golden_bytes_and_aws_overhead_is_68():
    assert encode(INNER_SYN, endpoint_id=0x0123456789ABCDEF, attachment_id=0xFEDCBA9876543210, flow_cookie=0xC0FFEE01) == GOLDEN
    assert AWS_OVERHEAD == 20 + 8 + 40  # outer IPv4 + UDP + this header


def test_scapy_reads_the_golden_packet_as_aws_documents_it():
    layer = GENEVE(GOLDEN)
    assert (layer.version, layer.optionlen, layer.proto, layer.vni) == (0, 8, 0x0800, 0)
    options = [(o.classid, o.type, o.length, bytes(o.data)) for o in layer.options]
    assert options == [
        (0x0108, 1, 2, bytes.fromhex("0123456789abcdef")),
        (0x0108, 2, 2, bytes.fromhex("fedcba9876543210")),
        (0x0108, 3, 1, bytes.fromhex("c0ffee01")),
    ]
    assert layer[IP].src == "10.30.40.10" and layer[TCP].dport == 5432


def test_a_packet_scapy_builds_parses_with_its_values():
    inner = IP(src="10.30.40.10", dst="172.18.40.10") / UDP(sport=5353, dport=53) / b"query"
    built = bytes(GENEVE(proto=0x0800, options=[
        GeneveOptions(classid=0x0108, type=1, data=struct.pack("!Q", 7)),
        GeneveOptions(classid=0x0108, type=2, data=struct.pack("!Q", 8)),
        GeneveOptions(classid=0x0108, type=3, data=struct.pack("!I", 9)),
    ]) / inner)
    packet = parse(built, len(built))
    assert (packet.endpoint_id, packet.attachment_id, packet.flow_cookie) == (7, 8, 9)
    assert packet.key[0] == 17 and packet.inner_len == len(bytes(inner))


def test_both_directions_of_a_flow_share_one_key():
    there = bytes(IP(src="10.30.40.10", dst="172.18.40.10") / TCP(sport=40000, dport=5432))
    back = bytes(IP(src="172.18.40.10", dst="10.30.40.10") / TCP(sport=5432, dport=40000, flags="SA"))
    assert flow_key(there, 0, len(there)) == flow_key(back, 0, len(back))


def test_icmp_keys_on_the_addresses_alone_like_the_load_balancer():
    request = bytes(IP(src="10.30.40.10", dst="172.18.40.10") / ICMP(id=1, seq=1))
    reply = bytes(IP(src="172.18.40.10", dst="10.30.40.10") / ICMP(type=0, id=1, seq=1))
    assert flow_key(request, 0, len(request)) == flow_key(reply, 0, len(reply))
    assert flow_key(request, 0, len(request))[2::2] == (0, 0)


def _options(*raw: bytes) -> bytes:
    body = b"".join(raw)
    return struct.pack("!BBHI", len(body) // 4, 0, 0x0800, 0) + body


ENDPOINT = bytes.fromhex("01080102") + bytes(8)
ATTACHMENT = bytes.fromhex("01080202") + bytes(8)
COOKIE = bytes.fromhex("01080301") + bytes(4)


MALFORMED = [  # every refusal `parse` gives, one packet each (also run through the eBPF program: test_geneve_fastpath.py)
    (b"", "truncated"),
    (GOLDEN[:7], "truncated"),
    (GOLDEN[:30], "truncated"),  # the options say 32 bytes
    (bytes([0x48]) + GOLDEN[1:], "bad_version"),
    (GOLDEN[:1] + b"\x80" + GOLDEN[2:], "control"),
    (GOLDEN[:2] + b"\x86\xdd" + GOLDEN[4:], "not_ipv4"),
    (_options(ENDPOINT, ATTACHMENT, COOKIE, bytes.fromhex("01080401") + bytes(4)) + INNER_SYN, "unknown_option"),
    (_options(ENDPOINT, ATTACHMENT, bytes.fromhex("0cafe301") + bytes(4)) + INNER_SYN, "unknown_option"),
    (_options(ENDPOINT, ATTACHMENT, bytes.fromhex("01080302") + bytes(8)) + INNER_SYN, "bad_option_length"),
    (_options(ENDPOINT, ENDPOINT, COOKIE) + INNER_SYN, "duplicate_option"),
    (_options(ENDPOINT, COOKIE) + INNER_SYN, "missing_option"),
    (_options(ENDPOINT, ATTACHMENT, bytes.fromhex("01080303") + bytes(4)) + INNER_SYN, "truncated"),  # option runs past the options
    (GOLDEN[:40] + b"\x60" + INNER_SYN[1:], "bad_inner"),  # IPv6 inside an IPv4 protocol type
    (GOLDEN[:-1], "bad_inner"),  # total length says one byte more than carried
    (GOLDEN[:40] + INNER_SYN[:6] + b"\x20\x00" + INNER_SYN[8:], "bad_inner"),  # more fragments
    (GOLDEN[:40] + INNER_SYN[:10], "bad_inner"),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED)
def test_every_malformed_packet_is_refused_with_its_reason(data: bytes, reason: str):
    with pytest.raises(Malformed) as caught:
        parse(data, len(data))
    assert caught.value.reason == reason
    assert reason in REASONS


def test_random_bytes_never_raise_anything_but_malformed():
    import random

    rng = random.Random(11)
    for _ in range(5000):
        size = rng.randrange(0, 120)
        data = bytes(rng.randrange(256) for _ in range(size))
        if rng.random() < 0.5 and size > 4:
            data = GOLDEN[: rng.randrange(len(GOLDEN))] + data  # plausible prefixes reach the deeper checks
        try:
            parse(data, len(data))
        except Malformed as exc:
            assert exc.reason in REASONS


def test_parse_reads_only_the_given_length_of_a_larger_buffer():
    buf = bytearray(65536)
    buf[: len(GOLDEN)] = GOLDEN
    assert parse(memoryview(buf), len(GOLDEN)).flow_cookie == 0xC0FFEE01
