"""Admission: the caps on what an outsider can make the agent hold, checked once per connection.

Every listener asks here before it spends a thread on a new connection. A
connection being set up (TLS handshake and stream header on the tunnel port,
the tunnel dial for an intercepted connection) holds a `Slot` until it becomes
a stream or fails; slots are capped overall and, for sources that are not
configured peers, per source address (a peer's bursts of new tunnels are
bounded by the overall cap and its stream cap instead); the streams in flight
plus the slots are capped overall (`AgentConfig.limits`).
Past a cap the connection is reset at once and the refusal is counted by a
reason from the fixed set `REASONS` (the `transit_refused_total` metric; a
far end never chooses a label). The checks run at connection setup only,
never per read.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from dataplane.config import LimitSettings
from dataplane.logfmt import event

log = logging.getLogger("dataplane.admission")

# Why a connection, stream or session was refused: the only values of the metric's `reason` label.
REASONS = (
    "handshakes",  # too many connections being set up
    "source_handshakes",  # too many being set up from one address
    "streams",  # too many streams in flight
    "peer_streams",  # too many streams from or to one peer
    "threads",  # the system refused a new thread
    "datagram_sessions",  # too many UDP or ICMP echo sessions
    "source_datagram_sessions",  # too many from one client
    "metrics_connections",  # too many connections to /metrics and /healthz
)
LOG_EVERY = 1.0  # seconds: at most one `listener.refused` line per reason this often, with the count since the last


class Slot:
    """One connection being set up; `release()` (idempotent) gives the slot back."""

    def __init__(self, admission: Admission, source: str) -> None:
        self._admission = admission
        self.source = source
        self._held = True

    def release(self) -> None:
        """Give the slot back (the connection became a stream, parked, or ended)."""
        if self._held:
            self._held = False
            self._admission._release(self.source)


class Admission:
    """Counts connections being set up and refusals; `limits` is read at each check (a reload applies at once)."""

    def __init__(self, limits: Callable[[], LimitSettings], streams: Callable[[], int]) -> None:
        self._limits = limits
        self._streams = streams
        self._lock = threading.Lock()
        self._opening = 0
        self._by_source: dict[str, int] = {}
        self._refused = dict.fromkeys(REASONS, 0)
        self._logged: dict[str, tuple[float, int]] = {}  # reason -> (last line, count then)

    def open(self, source: str, *, per_source: bool = True) -> Slot | str:
        """A slot for a new connection from `source`, or the reason it is refused (counted and logged).

        `per_source` False: the per-source cap does not apply (a configured peer's address, or the interception
        listener, whose sources are the local applications the agent serves).
        """
        limits = self._limits()
        with self._lock:
            reason = None
            if self._opening >= limits.handshakes:
                reason = "handshakes"
            elif per_source and self._by_source.get(source, 0) >= limits.handshakes_per_source:
                reason = "source_handshakes"
            elif self._opening + self._streams() >= limits.streams:
                reason = "streams"
            if reason is None:
                self._opening += 1
                self._by_source[source] = self._by_source.get(source, 0) + 1
                return Slot(self, source)
        self.refused(reason)
        return reason

    def opening(self) -> int:
        """Connections being set up now."""
        with self._lock:
            return self._opening

    def refused(self, reason: str, **fields: object) -> None:
        """Count one refusal; log it unless a line for this reason went out less than LOG_EVERY ago."""
        now = time.monotonic()
        with self._lock:
            self._refused[reason] += 1
            total = self._refused[reason]
            last, count_then = self._logged.get(reason, (0.0, 0))
            if now - last < LOG_EVERY:
                return
            self._logged[reason] = (now, total)
        event(log, "listener.refused", reason=reason, count=total - count_then, level=logging.WARNING, **fields)

    def snapshot(self) -> dict[str, int]:
        """Refusals so far per reason (every reason present)."""
        with self._lock:
            return dict(self._refused)

    def _release(self, source: str) -> None:
        with self._lock:
            self._opening -= 1
            left = self._by_source.get(source, 1) - 1
            if left > 0:
                self._by_source[source] = left
            else:
                self._by_source.pop(source, None)
