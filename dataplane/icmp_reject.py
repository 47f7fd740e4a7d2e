"""Answering refused UDP datagrams with an ICMP error, rate-limited so the agent is no amplifier.

`IcmpRejecter` sends the error (`packets.refusal_icmp` for the refusal's
status) from the datagram's original destination through a raw socket;
`TokenBuckets` bound it per source and in total; `RejectCounts` counts what
was sent and what the limit held back, for the metrics.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from dataplane.header import Status
from dataplane.packets import icmp_error, quotable_udp, refusal_icmp


class TokenBuckets:
    """A token bucket per key (`rate` a second, up to `burst`) under one for all keys together.

    Bounded: past `max_keys` the least recently used key is forgotten (it
    comes back full, which the shared bucket still limits).
    """

    def __init__(self, rate: float, burst: float, *, total_rate: float, total_burst: float,
                 max_keys: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = rate, burst
        self.max_keys = max_keys
        self._clock = clock
        self._keys: dict[object, tuple[float, float]] = {}  # key -> (tokens, when), oldest use first
        self._total = _Bucket(total_rate, total_burst, clock())

    def take(self, key: object) -> bool:
        """Spend one token of `key` and one of the total; False (nothing spent) if either is empty."""
        now = self._clock()
        tokens, when = self._keys.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        allowed = tokens >= 1 and self._total.take(now)
        self._keys[key] = (tokens - 1 if allowed else tokens, now)
        while len(self._keys) > self.max_keys:
            del self._keys[next(iter(self._keys))]
        return allowed


class _Bucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.when = rate, burst, burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.when) * self.rate)
        self.when = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


REJECT_RATE = 5.0  # ICMP errors a second per source address
REJECT_BURST = 10.0
REJECT_TOTAL_RATE = 200.0  # ... and for all sources together
REJECT_TOTAL_BURST = 100.0


class RejectCounts:
    """ICMP errors the rejecters sent and those the rate limit held back; safe to update from any thread.

    One instance can outlive the rejecters that feed it (the agent keeps one
    across reloads), so the totals only ever grow, as a Prometheus counter's
    must.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent = 0
        self._limited = 0

    def sent(self) -> None:
        """Count one error sent."""
        with self._lock:
            self._sent += 1

    def limited(self) -> None:
        """Count one error the rate limit held back."""
        with self._lock:
            self._limited += 1

    def snapshot(self) -> dict[str, int]:
        """{"sent": n, "limited": n}, read together."""
        with self._lock:
            return {"sent": self._sent, "limited": self._limited}


class IcmpRejecter:
    """Answers a refused UDP datagram with an ICMP error from its original destination, rate-limited.

    The error is the one `refusal_icmp` gives for the refusal's status
    (admin-prohibited for a denial). The kernel cannot send it: the destination of a TPROXY'd datagram is not a local
    address, and it never sources an ICMP error from one. A raw socket with
    IP_HDRINCL (IPPROTO_RAW) can; token buckets per source and in total keep a
    flood of refused datagrams from turning the agent into an amplifier (at
    most one error per datagram, each no larger than what it quotes plus 48
    bytes). `counts` (thread-safe) counts the errors sent and rate-limited.
    """

    def __init__(self, *, rate: float = REJECT_RATE, burst: float = REJECT_BURST,
                 total_rate: float = REJECT_TOTAL_RATE, total_burst: float = REJECT_TOTAL_BURST,
                 counts: RejectCounts | None = None) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # implies IP_HDRINCL
        self._buckets = TokenBuckets(rate, burst, total_rate=total_rate, total_burst=total_burst)
        self._lock = threading.Lock()  # the buckets are shared by the NFLOG thread and the pump threads
        self.counts = counts if counts is not None else RejectCounts()

    def reject(self, original: bytes, status: Status = Status.DENIED) -> bool:
        """Send the error for `status` about `original` (its IPv4 header and at least 8 bytes); False if not sent."""
        if not quotable_udp(original):
            return False
        src = IPv4Address(original[12:16])
        with self._lock:
            allowed = self._buckets.take(src)
        if not allowed:
            self.counts.limited()
            return False
        try:
            self._sock.sendto(icmp_error(original, *refusal_icmp(status)), (str(src), 0))
        except OSError:
            return False  # closed (shutdown), or no route back: the client times out as before
        self.counts.sent()
        return True

    def close(self) -> None:
        """Close the raw socket (later rejects are not sent)."""
        self._sock.close()
