"""Probe codec, per-path health and the failover/failback decision (pure)."""
from __future__ import annotations

import pytest

from dataplane.paths import KIND_REPLY, KIND_REQUEST, PathHealth, decide, decode_probe, encode_probe


def test_probe_round_trip_and_garbage_ignored() -> None:
    assert decode_probe(encode_probe(KIND_REQUEST, 7, 123456789)) == (KIND_REQUEST, 7, 123456789)
    assert decode_probe(encode_probe(KIND_REPLY, 2**32 + 5, 1)) == (KIND_REPLY, 5, 1)
    assert decode_probe(b"") is None
    assert decode_probe(b"XXXX" + encode_probe(KIND_REQUEST, 1, 1)[4:]) is None
    assert decode_probe(encode_probe(KIND_REQUEST, 1, 1)[:-1]) is None
    assert decode_probe(b"TXP1" + bytes([9]) + bytes(12)) is None


def test_health_goes_down_after_consecutive_misses_only() -> None:
    health = PathHealth(misses_to_down=3, window=10)
    health.lost()
    health.lost()
    health.answered(0.002, now=1.0)  # streak broken
    health.lost()
    health.lost()
    assert health.up
    health.lost()
    assert not health.up
    health.answered(0.004, now=5.0)
    assert health.up and health.up_since == 5.0
    stats = health.stats()
    assert stats["up"] is True
    assert stats["rtt_ms"] == pytest.approx(3.0)
    assert stats["loss"] == pytest.approx(5 / 7, abs=0.001)


def test_health_window_is_bounded() -> None:
    health = PathHealth(misses_to_down=3, window=4)
    for _ in range(10):
        health.lost()
    for _ in range(4):
        health.answered(0.001, now=1.0)
    assert health.stats()["loss"] == 0.0


def _health(up: bool, since: float = 0.0) -> PathHealth:
    return PathHealth(misses_to_down=3, up=up, up_since=since)


@pytest.mark.parametrize(
    "active, private, public, now, expected",
    [
        ("private", _health(True), _health(True), 10.0, "private"),     # prefer private
        ("private", _health(False), _health(True), 10.0, "public"),     # fail over
        ("private", _health(False), _health(False), 10.0, "private"),   # nowhere better to go
        ("public", _health(True, since=9.0), _health(True), 10.0, "public"),    # not healthy long enough
        ("public", _health(True, since=7.0), _health(True), 10.0, "private"),   # held long enough: fail back
        ("public", _health(True, since=9.9), _health(False), 10.0, "private"),  # public died: back at once
        ("public", _health(False), _health(False), 10.0, "public"),
        ("private", _health(False), None, 10.0, "private"),             # no public path configured
    ],
)
def test_decide(active: str, private: PathHealth, public: PathHealth | None, now: float, expected: str) -> None:
    assert decide(active, private, public, now, hold=3.0) == expected  # type: ignore[arg-type]
