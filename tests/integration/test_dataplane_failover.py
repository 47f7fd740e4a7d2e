"""Cutting the private link between the edges moves traffic to the public link within a second; repair brings it back.

What happens to flows in progress (measured and printed here): a stream whose
tunnel runs over the dead path is reset as soon as the path monitor declares
the path down (the bytes in flight on the dead path cannot be recovered
without a retransmission layer above TCP), and every new stream takes the
public path. On repair, streams on the public path keep running (the public
path is alive) and new streams go back to the private path after the hold time.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import AppServer, capture, echo
from testbed.seed000 import AZ_APP, Seed000

pytestmark = pytest.mark.integration

CUT_TABLE = "transit_test_cut"


@pytest.fixture
def seed() -> Iterator[Seed000]:
    with Seed000(tag="fo") as topology:
        yield topology


def _tx_bytes(seed: Seed000, ifname: str) -> int:
    return int(seed.ns("edgea").exec("cat", f"/sys/class/net/{ifname}/statistics/tx_bytes").stdout)


def _cut(seed: Seed000) -> None:
    """Drop everything on edge A's private interface: a cable cut with no carrier signal (one nft transaction)."""
    script = "\n".join([
        f"table inet {CUT_TABLE} {{",
        '  chain in { type filter hook prerouting priority -400; iifname "a-priv" drop; }',
        '  chain out { type filter hook postrouting priority 400; oifname "a-priv" drop; }',
        "}",
    ])
    path = seed.workdir / "cut.nft"
    path.write_text(script + "\n")
    seed.ns("edgea").exec("nft", "-f", str(path))


def _repair(seed: Seed000) -> None:
    seed.ns("edgea").exec("nft", "delete", "table", "inet", CUT_TABLE)


MARKER = b"PLAINTEXT-ON-THE-PUBLIC-PATH"


def _roundtrip(seed: Seed000, timeout: float) -> bool:
    sock = seed.ns("awsapp").socket()
    sock.settimeout(timeout)
    try:
        with sock:
            sock.connect((AZ_APP, 5432))
            sock.sendall(MARKER)
            got = b""
            while len(got) < len(MARKER) and (data := sock.recv(len(MARKER) - len(got))):
                got += data
            return got == MARKER
    except OSError:
        return False


class LongStream:
    """A stream in progress: sends a line every 20 ms and reads the echo; records how it ends."""

    def __init__(self, seed: Seed000) -> None:
        self.sock = seed.ns("awsapp").socket()
        self.sock.settimeout(10)
        self.sock.connect((AZ_APP, 5432))
        self.ended_at: float | None = None
        self.error: str | None = None
        self.echoed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.sock.sendall(b"x" * 64)
                got = 0
                while got < 64:
                    data = self.sock.recv(64 - got)
                    if not data:
                        raise ConnectionError("closed")
                    got += len(data)
                self.echoed += 1
                time.sleep(0.02)
        except OSError as exc:
            self.error = type(exc).__name__
            self.ended_at = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=12)
        self.sock.close()


def test_failover_within_one_second_and_failback(seed: Seed000) -> None:
    server = AppServer(seed.ns("azapp"), 5432, echo)
    pcap = seed.workdir / "public.pcap"
    tcpdump = capture(seed.ns("edgea"), "a-pub", pcap)
    try:
        assert _roundtrip(seed, 5)
        stream = LongStream(seed)
        time.sleep(0.3)
        assert stream.echoed > 0 and stream.error is None
        private_before = _tx_bytes(seed, "a-priv")
        public_before = _tx_bytes(seed, "a-pub")

        cut_at = time.monotonic()
        _cut(seed)
        recovered_at = None
        while time.monotonic() - cut_at < 5:
            attempt = time.monotonic()
            if _roundtrip(seed, 0.3):
                recovered_at = time.monotonic()
                break
            time.sleep(max(0.0, 0.02 - (time.monotonic() - attempt)))
        assert recovered_at is not None, seed.agents["edgea"].log()[-2000:]
        failover = recovered_at - cut_at
        deadline = time.monotonic() + 3
        while stream.ended_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
        stream_end = (stream.ended_at - cut_at) if stream.ended_at else None
        print(f"\nfailover: first new stream over the public path {failover * 1000:.0f} ms after the cut")
        print(f"stream in progress on the private path: ended with {stream.error} {stream_end * 1000 if stream_end else float('nan'):.0f} ms after the cut")
        stream.stop()
        assert failover < 1.0
        assert stream.error is not None and stream_end is not None and stream_end < 1.5
        assert "path.change peer=edgeb old=private new=public" in seed.agents["edgea"].log()
        assert _tx_bytes(seed, "a-pub") > public_before
        assert _roundtrip(seed, 2)
        time.sleep(0.2)
        tcpdump.terminate()
        tcpdump.wait(timeout=5)
        public_capture = pcap.read_bytes()
        assert len(public_capture) > 1000 and MARKER not in public_capture, "plaintext on the public path"

        # A stream that starts on the public path survives the repair.
        survivor = LongStream(seed)
        repaired_at = time.monotonic()
        _repair(seed)
        back_at = None
        while time.monotonic() - repaired_at < 10:
            if "old=public new=private" in seed.agents["edgea"].log():
                back_at = time.monotonic()
                break
            time.sleep(0.05)
        assert back_at is not None, "traffic never moved back to the private path"
        print(f"failback: private path preferred again {(back_at - repaired_at) * 1000:.0f} ms after the repair (hold 2 s)")
        private_mid = _tx_bytes(seed, "a-priv")
        assert _roundtrip(seed, 2)
        assert _tx_bytes(seed, "a-priv") > private_mid > private_before - 1
        time.sleep(0.3)
        assert survivor.error is None, f"stream on the live public path was reset: {survivor.error}"
        survivor.stop()
    finally:
        if tcpdump.poll() is None:
            tcpdump.terminate()
        server.close()
