"""Resource bounds in isolation: whole-exchange deadlines, deny aggregation, the run state, probes that only count real answers."""
from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from dataplane import deadline, sysctl
from dataplane.observe import DenyAggregator
from dataplane.paths import KIND_REPLY, KIND_REQUEST, PathMonitor, PeerPaths, ProbeResponder, decode_probe, encode_probe
from dataplane.runstate import RunState


def _trickle(sock: socket.socket, data: bytes, every: float, stop: threading.Event) -> None:
    for byte in data:
        if stop.wait(every):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return


def test_a_trickled_exchange_fails_at_its_deadline_not_per_receive() -> None:
    a, b = socket.socketpair()
    stop = threading.Event()
    sender = threading.Thread(target=_trickle, args=(a, b"x" * 100, 0.05, stop), daemon=True)
    sender.start()
    b.settimeout(1.0)  # each byte arrives well within a per-receive timeout
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            deadline.recv_exact(b, 100, time.monotonic() + 0.4)
        assert time.monotonic() - started < 0.8
        assert b.gettimeout() == 1.0  # the socket's own timeout is put back
    finally:
        stop.set()
        a.close()
        b.close()


def test_recv_exact_returns_what_arrives_in_time_and_reports_a_close() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"hello")
        assert deadline.recv_exact(b, 5, time.monotonic() + 1) == b"hello"
        a.sendall(b"hi")
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(ConnectionError):
            deadline.recv_exact(b, 5, time.monotonic() + 1)


def test_a_silent_tls_client_fails_the_handshake_at_its_deadline(tmp_path: Path) -> None:
    from dataplane import pki
    from dataplane.config import TlsPaths
    from dataplane.tls import build_contexts

    ca = pki.create_ca("acme")
    ca_path, cert, key = pki.write_node_files(tmp_path, ca.cert_pem, pki.issue(ca, "spiffe://acme/n1"))
    server = build_contexts(TlsPaths(ca=ca_path, cert=cert, key=key)).server
    a, b = socket.socketpair()
    with a:
        tls = server.wrap_socket(b, server_side=True, do_handshake_on_connect=False)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            deadline.handshake(tls, time.monotonic() + 0.3)
        assert time.monotonic() - started < 0.7
        tls.close()


def test_two_thousand_denials_of_one_five_tuple_write_two_lines_and_count_all() -> None:
    lines: list[dict[str, object]] = []
    aggregator = DenyAggregator(lines.append, window=0.2)
    denial = {"role": "ingress", "proto": "udp", "src": "10.0.0.1", "sport": 4000, "dst": "10.1.0.1", "dport": 53,
              "rule": None, "outcome": "refused-by-kernel", "verdict": "deny", "ts": 1.0}
    for _ in range(2000):
        aggregator.add(dict(denial))
    assert len(lines) == 1  # the first, at once
    aggregator.tick()
    assert len(lines) == 1  # the window is still open
    time.sleep(0.25)
    aggregator.tick()
    assert len(lines) == 2
    assert lines[1]["count"] == 1999 and lines[1]["dport"] == 53
    assert sum(int(line.get("count", 1)) for line in lines) == 2000  # type: ignore[call-overload]


def test_past_the_key_cap_denials_aggregate_per_rule() -> None:
    lines: list[dict[str, object]] = []
    aggregator = DenyAggregator(lines.append, window=10, keys=4)
    for port in range(100):
        aggregator.add({"role": "ingress", "proto": "tcp", "src": "10.0.0.1", "sport": port, "dst": "10.1.0.1", "dport": 22,
                        "rule": "no-ssh", "outcome": "refused", "verdict": "deny"})
    aggregator.tick(final=True)
    assert len(lines) == 6  # 4 distinct 5-tuples, then one summary line opened and closed with the other 95
    assert lines[4]["src"] == "0.0.0.0" and lines[5]["count"] == 95


def test_run_state_survives_the_process_and_clears(tmp_path: Path) -> None:
    state = RunState(tmp_path, "conn")
    assert state.load() == {}
    state.update(sysctl={"net.ipv4.ip_forward": "0"})
    state.update(filter_table="transit_filter")
    again = RunState(tmp_path, "conn")  # a restarted agent
    assert again.load() == {"sysctl": {"net.ipv4.ip_forward": "0"}, "filter_table": "transit_filter"}
    assert oct(again.path.stat().st_mode & 0o777) == "0o600"
    again.clear()
    assert again.load() == {} and not again.path.exists()


def test_changes_reads_without_writing(tmp_path: Path) -> None:
    (tmp_path / "net/core").mkdir(parents=True)
    (tmp_path / "net/core/somaxconn").write_text("128\n")
    settings = {"net.core.somaxconn": ("4096", "why")}
    assert sysctl.changes(settings, root=tmp_path) == {"net.core.somaxconn": "128"}
    assert sysctl.read("net.core.somaxconn", root=tmp_path) == "128"


def test_probe_replies_count_only_with_a_live_nonce_from_the_probed_address() -> None:
    responder = ProbeResponder("127.0.0.1", 0)
    responder.start()
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    forger.bind(("127.0.0.1", 0))
    # A peer whose probe address nobody answers: only forged replies could keep it up.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    monitor = PathMonitor(
        [PeerPaths("good", "127.0.0.1", None, responder.port, 7443), PeerPaths("dead", "127.0.0.1", None, silent.getsockname()[1], 7443)],
        interval=0.05, timeout=0.1, misses=3, hold=0,
    )
    monitor.start()
    stop = threading.Event()

    def forge() -> None:
        # Replay what the dead peer's address receives (the real nonces), but from another address.
        silent.settimeout(0.05)
        while not stop.is_set():
            try:
                data, source = silent.recvfrom(64)
            except OSError:
                continue
            probe = decode_probe(data)
            if probe and probe[0] == KIND_REQUEST:
                forger.sendto(encode_probe(KIND_REPLY, probe[1], probe[2]), source)
                forger.sendto(encode_probe(KIND_REPLY, probe[1] + 1, probe[2]), source)

    thread = threading.Thread(target=forge, daemon=True)
    thread.start()
    try:
        time.sleep(0.8)
        assert monitor.is_up("good", "private")
        assert not monitor.is_up("dead", "private"), "replies from another address kept a dead path up"
    finally:
        stop.set()
        thread.join(timeout=2)
        monitor.stop()
        responder.stop()
        forger.close()
        silent.close()


def test_the_probe_responder_answers_after_an_error_on_its_socket() -> None:
    responder = ProbeResponder("127.0.0.1", 0)
    real = responder._sock
    failures = [OSError(105, "No buffer space available")]

    class Flaky:
        def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
            if failures:
                raise failures.pop()
            return real.recvfrom(size)

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    responder._sock = Flaky()  # type: ignore[assignment]
    responder.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(2)
    try:
        client.sendto(encode_probe(KIND_REQUEST, 1, 2), ("127.0.0.1", responder.port))
        assert decode_probe(client.recv(64)) == (KIND_REPLY, 1, 2)
        assert not failures
    finally:
        client.close()
        responder._sock = real
        responder.stop()


def test_datagram_sessions_are_capped_overall_and_per_client() -> None:
    from dataplane.datagram_sessions import Sessions

    sessions = Sessions(lambda: (3, 2))
    writers = [socket.socketpair()[1] for _ in range(5)]
    assert sessions.add(("10.0.0.1", 1, "10.1.0.1", 53), writers[0]) is None
    assert sessions.add(("10.0.0.1", 2, "10.1.0.1", 53), writers[1]) is None
    assert sessions.add(("10.0.0.1", 3, "10.1.0.1", 53), writers[2]) == "source_datagram_sessions"
    assert sessions.add(("10.0.0.2", 1, "10.1.0.1", 53), writers[2]) is None
    assert sessions.add(("10.0.0.3", 1, "10.1.0.1", 53), writers[3]) == "datagram_sessions"
    sessions.forget(("10.0.0.1", 1, "10.1.0.1", 53), writers[0])
    assert sessions.add(("10.0.0.1", 3, "10.1.0.1", 53), writers[4]) is None  # a slot is free again, for that client too
    assert len(sessions) == 3


def test_admission_caps_setups_overall_per_source_and_with_the_streams_in_flight() -> None:
    from dataplane.admission import Admission, Slot
    from dataplane.config import LimitSettings

    streams = [0]
    admission = Admission(lambda: LimitSettings(handshakes=3, handshakes_per_source=2, streams=5), lambda: streams[0])
    a1, a2 = admission.open("10.0.0.1"), admission.open("10.0.0.1")
    assert isinstance(a1, Slot) and isinstance(a2, Slot)
    assert admission.open("10.0.0.1") == "source_handshakes"
    assert isinstance(admission.open("10.0.0.1", per_source=False), Slot)  # a configured peer's address
    assert admission.open("10.0.0.2") == "handshakes"
    a1.release()
    a1.release()  # idempotent
    streams[0] = 3  # three streams in flight plus two setups reach the stream cap
    assert admission.open("10.0.0.3") == "streams"
    streams[0] = 0
    assert isinstance(admission.open("10.0.0.3"), Slot)
    assert admission.snapshot()["source_handshakes"] == 1 and admission.snapshot()["handshakes"] == 1
    assert admission.snapshot()["streams"] == 1


def test_a_datagram_session_over_its_cap_is_counted_as_refused() -> None:
    from dataplane.admission import Admission
    from dataplane.config import LimitSettings
    from dataplane.datagram_sessions import count_refusal

    admission = Admission(lambda: LimitSettings(), lambda: 0)
    count_refusal(admission, "source_datagram_sessions", "udp")
    count_refusal(None, "datagram_sessions", "icmp")  # without admission it is only logged
    assert admission.snapshot().get("source_datagram_sessions") == 1
