"""Datagram frames, ICMP/IPv4 packets and the datagram pump, without a kernel change."""
from __future__ import annotations

import contextlib
import errno
import random
import select
import socket
import struct
import threading
import time
from ipaddress import IPv4Address, IPv4Network

import pytest

from dataplane.datagram_endpoints import Endpoint
from dataplane.datagram_pump import MAX_UDP, DatagramPump, FrameDecoder, FrameError, encode_frame
from dataplane.icmp_reject import IcmpRejecter, RejectCounts, TokenBuckets
from dataplane.packets import (
    admin_prohibited, checksum, echo, icmp_error, ipv4_packet, parse_echo_reply, parse_echo_request, quotable_udp, refusal_icmp, udp_quote,
)
from dataplane import icmp_routing
from dataplane.icmp_routing import IcmpPlan
from dataplane.udp_intercept import only_from, orig_dst
from dataplane.forward import Forwarder
from dataplane.header import ICMP, UDP, Status, encode_reply
from dataplane.intercept import KernelError
from dataplane.parking import Parking
from dataplane.pump import Outcome
from dataplane.workers import Workers

SRC, DST = IPv4Address("10.30.40.10"), IPv4Address("172.18.40.10")


def test_frames_round_trip_in_any_split() -> None:
    payloads = [b"", b"a", bytes(1400), bytes(range(256)) * 40, bytes(MAX_UDP)]
    wire = b"".join(encode_frame(UDP, p) for p in payloads)
    rng = random.Random(5)
    decoder = FrameDecoder(UDP)
    out: list[bytes] = []
    pos = 0
    while pos < len(wire):
        step = rng.randint(1, 5000)
        out += decoder.feed(wire[pos:pos + step])
        pos += step
    assert out == payloads
    assert not decoder.partial


def test_oversized_and_short_frames_are_refused() -> None:
    with pytest.raises(FrameError):
        encode_frame(UDP, bytes(MAX_UDP + 1))
    with pytest.raises(FrameError):
        FrameDecoder(UDP).feed(struct.pack("!H", MAX_UDP + 1))
    with pytest.raises(FrameError):
        FrameDecoder(ICMP).feed(struct.pack("!H", 1) + b"x")  # an echo frame needs its sequence number
    decoder = FrameDecoder(UDP)
    assert decoder.feed(struct.pack("!H", 10) + b"abc") == []
    assert decoder.partial


def test_random_bytes_only_ever_raise_frame_error() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        decoder = FrameDecoder(rng.choice((UDP, ICMP)))
        try:
            decoder.feed(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))))
        except FrameError:
            pass


def test_checksum_matches_rfc1071_example() -> None:
    # RFC 1071's example words sum to 0xddf2; the checksum is its complement.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2
    assert checksum(echo(8, 1, 2, b"odd")) == 0  # a message with its checksum sums to zero


def test_echo_request_in_an_ipv4_packet_parses_back() -> None:
    packet = ipv4_packet(SRC, DST, ICMP, echo(8, 0x1234, 7, b"payload"))
    assert checksum(packet[:20]) == 0
    assert parse_echo_request(packet) == (SRC, DST, 0x1234, 7, b"payload")
    assert parse_echo_reply(ipv4_packet(DST, SRC, ICMP, echo(0, 0x1234, 7, b"payload"))) == (0x1234, 7, b"payload")


@pytest.mark.parametrize("mutate", [
    lambda p: p[:27],                                        # too short
    lambda p: bytes([0x65]) + p[1:],                         # IPv6 version nibble
    lambda p: p[:9] + bytes([17]) + p[10:],                  # UDP, not ICMP
    lambda p: p[:20] + bytes([0]) + p[21:],                  # an echo reply, not a request
    lambda p: p[:-1] + bytes([p[-1] ^ 1]),                   # bad ICMP checksum
    lambda p: p[:6] + b"\x20\x00" + p[8:],                   # more fragments
])
def test_anything_but_a_clean_echo_request_is_ignored(mutate) -> None:
    packet = ipv4_packet(SRC, DST, ICMP, echo(8, 1, 1, b"data"))
    assert parse_echo_request(mutate(packet)) is None


def test_admin_prohibited_goes_back_from_the_destination_quoting_the_echo() -> None:
    request = ipv4_packet(SRC, DST, ICMP, echo(8, 9, 1, b"data-data"))
    error = admin_prohibited(request)
    assert (IPv4Address(error[12:16]), IPv4Address(error[16:20])) == (DST, SRC)
    icmp = error[20:]
    assert (icmp[0], icmp[1], checksum(icmp)) == (3, 13, 0)
    assert icmp[8:] == request[:28]


def test_orig_dst_reads_the_sockaddr() -> None:
    sockaddr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 5001) + socket.inet_aton("172.18.40.10") + bytes(8)
    assert orig_dst([(socket.SOL_IP, 20, sockaddr)]) == ("172.18.40.10", 5001)
    assert orig_dst([(socket.SOL_IP, 7, sockaddr)]) is None


def _pump_pair(expect_reply: bool, first: list[bytes] = ()) -> tuple[DatagramPump, socket.socket, socket.socket, threading.Thread, dict]:
    """A pump between a datagram socketpair (the app) and a stream socketpair (the tunnel), run in a thread."""
    app_near, app_far = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    tun_near, tun_far = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    endpoint = Endpoint([app_near], app_near.send)
    pump = DatagramPump(endpoint, tun_near, proto=UDP, idle=5, expect_reply=expect_reply, first=first)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", pump.run()))
    thread.start()
    return pump, app_far, tun_far, thread, box


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk
        data += chunk
    return data


def test_pump_frames_both_ways_and_closes_when_the_far_end_does() -> None:
    pump, app, tunnel, thread, box = _pump_pair(expect_reply=True, first=[b"first"])
    app.settimeout(5)
    tunnel.settimeout(5)
    assert _recv_exact(tunnel, 7) == encode_frame(UDP, b"first")
    app.send(b"second")
    assert _recv_exact(tunnel, 8) == encode_frame(UDP, b"second")
    tunnel.sendall(encode_reply(Status.OK) + encode_frame(UDP, b"back") + encode_frame(UDP, b""))
    assert app.recv(100) == b"back"
    assert app.recv(100) == b""
    tunnel.close()
    thread.join(5)
    result = box["result"]
    assert (result.outcome, result.status, result.up, result.down) == (Outcome.CLOSED, Status.OK, 11, 4)


def test_pump_refused_by_the_far_end() -> None:
    _pump, _app, tunnel, thread, box = _pump_pair(expect_reply=True, first=[b"x"])
    tunnel.sendall(encode_reply(Status.DENIED, "no-udp"))
    thread.join(5)
    assert (box["result"].outcome, box["result"].status, box["result"].rule) == (Outcome.REFUSED, Status.DENIED, "no-udp")


def test_pump_resets_on_a_malformed_frame_and_on_a_truncated_one() -> None:
    _pump, _app, tunnel, thread, box = _pump_pair(expect_reply=False)
    tunnel.sendall(struct.pack("!H", 65535))
    thread.join(5)
    assert box["result"].outcome is Outcome.RESET
    _pump, _app, tunnel, thread, box = _pump_pair(expect_reply=False)
    tunnel.sendall(struct.pack("!H", 100) + b"cut")
    tunnel.close()
    thread.join(5)
    assert box["result"].outcome is Outcome.RESET


# ---- parking ------------------------------------------------------------------


def _quiet_pump(park_after: float, idle: float = 30.0, socks: int = 1) -> tuple[DatagramPump, list[socket.socket], socket.socket]:
    """A parkable ingress pump: `socks` datagram sockets on the app side (their far ends returned), a stream tunnel."""
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(socks)]
    tun_near, tun_far = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    tun_far.settimeout(5)
    endpoint = Endpoint([near for near, _ in pairs], pairs[0][0].send)
    pump = DatagramPump(endpoint, tun_near, proto=UDP, idle=idle, park_after=park_after, expect_reply=True, first=[b"first"])
    return pump, [far for _, far in pairs], tun_far


def test_a_quiet_pump_parks_and_resumes_with_its_state() -> None:
    pump, (app,), tunnel = _quiet_pump(park_after=0.05)
    app.settimeout(5)
    reply = encode_reply(Status.OK)
    back = encode_frame(UDP, b"back")
    tunnel.sendall(reply[:1])  # half a reply before the first turn
    result = pump.run()
    assert (result.outcome, result.status, result.up, result.down) == (Outcome.PARKED, None, 5, 0)
    assert _recv_exact(tunnel, 7) == encode_frame(UDP, b"first")

    # While parked: the rest of the reply, half a frame, and a datagram from the application.
    tunnel.sendall(reply[1:] + back[:3])
    app.send(b"second")
    result = pump.run()
    assert (result.outcome, result.status, result.up, result.down) == (Outcome.PARKED, Status.OK, 11, 0)
    assert _recv_exact(tunnel, 8) == encode_frame(UDP, b"second")

    tunnel.sendall(back[3:])  # the frame's rest: the partly read frame survived the park
    result = pump.run()
    assert (result.outcome, result.up, result.down) == (Outcome.PARKED, 11, 4)
    assert app.recv(100) == b"back"

    # A parked flow still ends at its idle deadline, closing both sides.
    pump.idle = 0.2
    while time.monotonic() < pump.idle_deadline():
        time.sleep(0.05)
    result = pump.run()
    assert (result.outcome, result.status, result.up, result.down) == (Outcome.IDLE, Status.OK, 11, 4)
    assert tunnel.recv(100) == b""


def test_a_pump_with_frames_queued_for_the_tunnel_never_parks() -> None:
    pump, (app,), tunnel = _quiet_pump(park_after=0.05, idle=0.5)
    pump.b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", pump.run()))
    thread.start()
    app.settimeout(5)
    for _ in range(40):
        app.send(bytes(8000))  # more than the tunnel takes while nobody reads it
    thread.join(10)
    assert box["result"].outcome is Outcome.IDLE


def test_the_forwarder_parks_a_datagram_flow_on_every_endpoint_socket() -> None:
    """A datagram to the endpoint's second socket (the interception inbox) wakes a parked flow."""
    parking = Parking()
    forwarder = Forwarder(runtime=lambda: None, pool=None, parking=parking, workers=Workers("test"), on_flow=lambda _r: None)  # type: ignore[arg-type]
    pump, (_app, inbox_writer), tunnel = _quiet_pump(park_after=0.05, socks=2)
    results: list = []
    ended = threading.Event()
    try:
        tunnel.sendall(encode_reply(Status.OK))
        forwarder._run(pump, "peer", "private", lambda r: (results.append(r), ended.set()))
        assert _recv_exact(tunnel, 7) == encode_frame(UDP, b"first")
        _wait_until(lambda: parking.count() == 1)
        assert forwarder.active() == 1 and not results
        inbox_writer.send(b"via the inbox")
        assert _recv_exact(tunnel, 15) == encode_frame(UDP, b"via the inbox")
        _wait_until(lambda: parking.count() == 1)  # quiet again: parked again
        tunnel.close()  # the far end ends the flow: the parked pump wakes on the hang-up
        assert ended.wait(5)
        assert (results[0].outcome, results[0].up) == (Outcome.CLOSED, 18)
        assert forwarder.active() == 0 and parking.count() == 0
    finally:
        parking.stop()


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_session_socket_queues_only_its_own_client_even_before_connect() -> None:
    """Between bind() and connect() another client's datagram would land on a session socket; the filter drops it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    one, two = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    with server, one, two:
        one.bind(("127.0.0.1", 0))
        two.bind(("127.0.0.1", 0))
        only_from(server, *one.getsockname())
        server.bind(("127.0.0.1", 0))  # bound, not yet connected: any sender matches it
        two.sendto(b"from two", server.getsockname())
        one.sendto(b"from one", server.getsockname())
        two.sendto(b"two again", server.getsockname())
        _wait_until(lambda: select.select([server], [], [], 0)[0] != [])
        server.settimeout(0.2)
        got = [server.recvfrom(100)]
        with pytest.raises(TimeoutError):
            got.append(server.recvfrom(100))
        assert got == [(b"from one", one.getsockname())]


# ---- ICMP errors for refused UDP ---------------------------------------------


def _udp_packet(src: IPv4Address = SRC, dst: IPv4Address = DST, payload: bytes = b"refused") -> bytes:
    return ipv4_packet(src, dst, UDP, struct.pack("!HHHH", 40000, 5004, 8 + len(payload), 0) + payload)


def test_udp_quote_is_the_datagrams_own_headers() -> None:
    packet = _udp_packet()
    quote = udp_quote(SRC, 40000, DST, 5004, len(b"refused"))
    assert len(quote) == 28 and checksum(quote[:20]) == 0
    assert (quote[:4], quote[8:10], quote[12:]) == (packet[:4], packet[8:10], packet[12:28])  # all but the random IP identifier and the checksum


def test_only_unicast_first_fragments_of_udp_are_answered() -> None:
    assert quotable_udp(_udp_packet())
    assert not quotable_udp(_udp_packet()[:27])
    assert not quotable_udp(ipv4_packet(SRC, DST, ICMP, echo(8, 1, 1, b"x")))
    assert not quotable_udp(_udp_packet(dst=IPv4Address("224.0.0.251")))
    assert not quotable_udp(_udp_packet(dst=IPv4Address("255.255.255.255")))
    later_fragment = bytearray(_udp_packet())
    struct.pack_into("!H", later_fragment, 6, 185)
    assert not quotable_udp(bytes(later_fragment))


def test_token_buckets_limit_each_source_and_all_together() -> None:
    now = [100.0]
    buckets = TokenBuckets(2.0, 3, total_rate=10.0, total_burst=5, max_keys=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(5)] == [True, True, True, False, False]  # burst 3 per source
    assert [buckets.take("b") for _ in range(3)] == [True, True, False]  # the shared burst of 5 is spent
    now[0] += 0.5  # one token per source back, five shared
    assert buckets.take("a") and not buckets.take("a")
    buckets.take("c")  # a third key: the least recently used ("b") is forgotten
    assert set(buckets._keys) == {"a", "c"}


def test_the_rejecter_answers_from_the_destination_until_its_bucket_is_empty() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.sent: list[tuple[bytes, tuple[str, int]]] = []

        def sendto(self, data: bytes, address: tuple[str, int]) -> int:
            self.sent.append((data, address))
            return len(data)

    rejecter = IcmpRejecter.__new__(IcmpRejecter)  # no raw socket: record what would be sent
    rejecter._sock, rejecter._lock = Recorder(), threading.Lock()  # type: ignore[assignment]
    rejecter._buckets = TokenBuckets(1.0, 2, total_rate=100.0, total_burst=100, clock=lambda: 0.0)
    rejecter.counts = RejectCounts()
    original = _udp_packet()
    assert [rejecter.reject(original) for _ in range(4)] == [True, True, False, False]
    assert not rejecter.reject(ipv4_packet(SRC, DST, ICMP, echo(8, 1, 1, b"x")))  # never about anything but UDP
    assert rejecter.counts.snapshot() == {"sent": 2, "limited": 2}
    error, address = rejecter._sock.sent[0]  # type: ignore[attr-defined]
    assert address == (str(SRC), 0)
    assert (IPv4Address(error[12:16]), IPv4Address(error[16:20])) == (DST, SRC)
    assert (error[20], error[21], checksum(error[20:])) == (3, 13, 0)
    assert error[28:] == original[:28]  # RFC 792: the original IP header and its first 64 bits


class _FakeNetlink:
    """Just enough of IPRoute for the ICMP rule helpers: rules in a list, a refusal on chosen additions."""

    def __init__(self, refuse_dst: str | None = None) -> None:
        self.rules: list[dict[str, object]] = []
        self.refuse_dst = refuse_dst

    def rule(self, verb: str, **fields: object) -> None:
        from pyroute2.netlink.exceptions import NetlinkError
        if verb == "add":
            if fields["dst"] == self.refuse_dst:
                raise NetlinkError(errno.EPERM)
            if fields in self.rules:
                raise NetlinkError(errno.EEXIST)
            self.rules.append(fields)
        elif fields in self.rules:
            self.rules.remove(fields)
        else:
            raise NetlinkError(errno.ENOENT)

    def get_rules(self, family: int) -> list[object]:
        class Msg(dict):  # type: ignore[type-arg]
            def get_attr(self, name: str) -> object:
                return self[name]
        return [Msg(FRA_PRIORITY=r["priority"], FRA_TABLE=r["table"], FRA_IP_PROTO=r["ip_proto"], FRA_SRC=r["src"],
                    FRA_DST=r["dst"], src_len=r["src_len"], dst_len=r["dst_len"]) for r in self.rules]


def _icmp_plan(local: list[str], remote: list[str]) -> IcmpPlan:
    return IcmpPlan("transit-icmp", 4644, 4644, tuple(map(IPv4Network, local)), tuple(map(IPv4Network, remote)))


def test_a_refused_rule_change_leaves_the_old_rules_and_names_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = _FakeNetlink(refuse_dst="192.0.2.0")
    monkeypatch.setattr(icmp_routing, "iproute", lambda netns: contextlib.nullcontext(kernel))
    old = _icmp_plan(["10.30.40.0/24"], ["172.18.40.0/24"])
    new = _icmp_plan(["10.30.40.0/24", "10.30.41.0/24"], ["198.51.100.0/24", "192.0.2.0/24"])
    icmp_routing.update_rules(_icmp_plan([], []), old)
    with pytest.raises(KernelError, match=r"refused ip rule from 10.30.40.0/24 to 192.0.2.0/24 ipproto icmp lookup 4644 priority 4644: Operation not permitted"):
        icmp_routing.update_rules(old, new)
    assert icmp_routing.installed_rules(old) == set(old.pairs())  # the one added before the refusal is gone
    kernel.refuse_dst = None
    assert icmp_routing.update_rules(old, new) == []
    assert icmp_routing.installed_rules(new) == set(new.pairs())
    icmp_routing.update_rules(old, new)  # again: nothing to do, nothing doubled
    assert len(kernel.rules) == 4


REFUSAL_ERRORS = {
    Status.OK: (3, 1),  # never a refusal; anything unexpected is host unreachable
    Status.DENIED: (3, 13),
    Status.UNREACHABLE: (3, 1),
    Status.NO_ROUTE: (3, 0),
    Status.BAD_HEADER: (3, 1),
    Status.HOP_LIMIT: (11, 0),
    Status.FORBIDDEN: (3, 13),  # the sender may not claim that flow: administratively prohibited, like a denial
}


@pytest.mark.parametrize(("status", "expected"), REFUSAL_ERRORS.items())
def test_each_refusal_gets_the_icmp_error_a_router_would_send(status: Status, expected: tuple[int, int]) -> None:
    assert refusal_icmp(status) == expected


def test_the_refusal_table_covers_every_status() -> None:
    assert set(REFUSAL_ERRORS) == set(Status)


def test_the_pump_tells_the_endpoint_why_the_far_end_refused() -> None:
    app_near, app_far = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    tun_near, tun_far = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    heard: list[Status] = []
    pump = DatagramPump(Endpoint([app_near], app_near.send, refuse=heard.append), tun_near, proto=UDP, idle=5, expect_reply=True)
    tun_far.sendall(encode_reply(Status.NO_ROUTE))
    assert pump.run().outcome is Outcome.REFUSED
    assert heard == [Status.NO_ROUTE]
    for sock in (app_far, tun_far):
        sock.close()


def test_a_refused_echo_hears_time_exceeded_for_the_hop_limit() -> None:
    request = ipv4_packet(SRC, DST, ICMP, echo(8, 7, 1, b"ping"))
    error = icmp_error(request, *refusal_icmp(Status.HOP_LIMIT))
    assert (IPv4Address(error[12:16]), IPv4Address(error[16:20])) == (DST, SRC)
    assert (error[20], error[21], checksum(error[20:])) == (11, 0, 0)
    assert error[28:] == request[:28]


def test_reject_counts_lose_nothing_to_concurrent_updates() -> None:
    counts = RejectCounts()

    def hammer() -> None:
        for index in range(5000):
            counts.sent() if index % 2 else counts.limited()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts.snapshot() == {"sent": 20000, "limited": 20000}
