"""Where a closed stream is reported, and where the agent is watched from.

The agent calls `Observer.flow()` once per closed stream, from the stream's own
thread: it writes the agent log line (debug), one flow log line
(dataplane.flowlog) and the flow counters (dataplane.metrics). `start()` binds
the /metrics + /healthz endpoint, whose gauges are read from the running parts
at scrape time (`Sources`).

Denials are aggregated for the flow log (`DenyAggregator`): the first denial
of a 5-tuple (with its rule and outcome) is written at once; more of the same
within `DENY_WINDOW` are counted and written as one line with `count` when the
window closes (`tick()`, called every second by the agent). At most
`DENY_KEYS` 5-tuples are tracked at once; past that, denials aggregate per
rule, so a flood of distinct 5-tuples writes a few lines a second, not one per
packet. The metrics count every denial. `reopen()` (SIGUSR1) starts a new flow
log file after logrotate moved the old one.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from dataplane.config import AgentConfig
from dataplane.denylog import DeniedPacket, DenyListener
from dataplane.filter_table import LOG_GROUP
from dataplane.flowlog import FlowLogWriter
from dataplane.forward import FlowRecord
from dataplane.logfmt import event
from dataplane.metrics import Metrics, MetricsServer, Sources

log = logging.getLogger("dataplane.flow")

DENY_WINDOW = 1.0  # seconds a denied 5-tuple's further denials are counted into one line
DENY_KEYS = 4096  # 5-tuples aggregated at once; past that, per rule
_KEY_FIELDS = ("role", "proto", "src", "sport", "dst", "dport", "rule", "outcome")
_ANY = {"src": "0.0.0.0", "sport": 0, "dst": "0.0.0.0", "dport": 0}  # the 5-tuple of a per-rule summary line


class DenyAggregator:
    """Turns a stream of denial lines into a few: the first at once, the rest counted per window."""

    def __init__(self, write: Callable[[dict[str, Any]], None], *, window: float = DENY_WINDOW, keys: int = DENY_KEYS) -> None:
        self._write = write
        self._window = window
        self._keys = keys
        self._lock = threading.Lock()
        self._open: dict[tuple[object, ...], list[Any]] = {}  # key -> [window end, line, count since first]

    def add(self, line: dict[str, Any]) -> None:
        """One denial: written now if it opens a window, else counted."""
        now = time.monotonic()
        key = tuple(line.get(name) for name in _KEY_FIELDS)
        with self._lock:
            if key not in self._open and len(self._open) >= self._keys:
                line = {**line, **_ANY}
                key = tuple(line.get(name) for name in _KEY_FIELDS)
            entry = self._open.get(key)
            if entry is not None:
                entry[2] += 1
                return
            self._open[key] = [now + self._window, line, 0]
        self._write(line)

    def tick(self, *, final: bool = False) -> None:
        """Write one line (with `count`) per window that closed with more denials in it; `final`: close all."""
        now = time.monotonic()
        with self._lock:
            closed = [key for key, entry in self._open.items() if final or entry[0] <= now]
            lines = [(self._open[key][1], self._open.pop(key)[2]) for key in closed]
        for line, count in lines:
            if count:
                self._write({**line, "ts": time.time(), "count": count})


class Observer:
    """Fans a closed stream out to the log, the flow log and the metrics; serves the endpoint."""

    def __init__(
        self, config: AgentConfig, *, sources: Sources, rtt: Callable[[str, str], float | None],
        on_deny: Callable[[DeniedPacket], None] | None = None,
    ) -> None:
        self._config = config
        self._rtt = rtt
        self._on_deny = on_deny  # the agent's own answer to a kernel deny (an ICMP error for UDP)
        self.metrics = Metrics(node=config.name, sources=sources, rules=[rule.name for rule in config.filter.rules],
                               peers=[peer.name for peer in config.peers])
        self._writer: FlowLogWriter | None = None
        self._server: MetricsServer | None = None
        self._health: Callable[[], Mapping[str, Any]] | None = None
        self._denies: DenyListener | None = None
        self._aggregator = DenyAggregator(self._write)
        self._refused: Callable[[], None] | None = None

    def start(self, *, health: Callable[[], Mapping[str, Any]], on_refused: Callable[[], None] | None = None) -> None:
        """Open the flow log and bind the metrics endpoint (OSError if the address is taken)."""
        self._health = health
        self._refused = on_refused
        if self._config.flow_log is not None:
            self._writer = FlowLogWriter(self._config.flow_log)
        self._start_server(self._config)
        self._denies = DenyListener(LOG_GROUP, self._denied)
        try:
            self._denies.start()
        except OSError as exc:  # no NFLOG, or the group is taken: kernel denies stay in the kernel log and counters only
            self._denies = None
            event(log, "denylog.unavailable", error=str(exc), level=logging.WARNING)

    def _start_server(self, config: AgentConfig) -> None:
        endpoint = config.listen.metrics
        if endpoint is None or self._health is None:
            return
        self._server = MetricsServer(
            str(endpoint.host), endpoint.port, self.metrics, self._health, max_connections=config.limits.metrics_connections,
            deadline=config.timeouts.metrics_request, on_refused=self._refused,
        )
        self._server.start()
        event(log, "metrics.start", addr=f"{endpoint.host}:{endpoint.port}")

    def tick(self) -> None:
        """Write the aggregated denial lines whose window closed (the agent calls this every second)."""
        self._aggregator.tick()

    def reopen(self) -> None:
        """Start a new flow log file at the same path (SIGUSR1, after logrotate moved the old one)."""
        writer = self._writer
        if writer is None:
            return
        try:
            writer.reopen()
            event(log, "flowlog.reopened", path=str(writer.path))
        except OSError as exc:
            event(log, "flowlog.reopen_failed", error=str(exc), level=logging.ERROR)

    def stop(self) -> None:
        """Stop the endpoint and close the flow log."""
        if self._denies is not None:
            self._denies.stop()
            self._denies = None
        self._aggregator.tick(final=True)
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def reconfigure(self, config: AgentConfig) -> None:
        """Follow a reloaded config: a new flow log path or metrics address takes effect now."""
        old = self._config
        self._config = config
        if old.flow_log != config.flow_log:
            if self._writer is not None:
                self._writer.close()
            self._writer = FlowLogWriter(config.flow_log) if config.flow_log is not None else None
        self.metrics.set_names([rule.name for rule in config.filter.rules], [peer.name for peer in config.peers])
        if (old.listen.metrics, old.limits.metrics_connections, old.timeouts.metrics_request) != (
            config.listen.metrics, config.limits.metrics_connections, config.timeouts.metrics_request
        ) and self._health is not None:
            if self._server is not None:
                self._server.stop()
                self._server = None
            self._start_server(config)

    def _denied(self, packet: DeniedPacket) -> None:
        """A connection the kernel filter table refused at ingress: one flow log line, one deny counted."""
        self._report(packet.as_flow(node=self._config.name, role="ingress", identity=self._config.identity))
        if self._on_deny is not None:
            try:
                self._on_deny(packet)
            except Exception as exc:  # an answer that fails must not stop the deny listener
                event(log, "denylog.answer_failed", error=repr(exc), level=logging.WARNING)

    def flow(self, record: FlowRecord) -> None:
        """Report one closed stream."""
        line = record.as_dict()
        if record.peer and record.path:
            line["rtt_ms"] = self._rtt(record.peer, record.path)
        event(
            log, "flow.close", role=record.role, src=f"{record.src}:{record.sport}", dst=f"{record.dst}:{record.dport}",
            identity=record.src_identity, verdict=record.verdict, rule=record.rule or "-", path=record.path or "-",
            up=record.bytes_up, down=record.bytes_down, outcome=record.outcome, duration_s=record.duration_s,
            level=logging.DEBUG,
        )
        self._report(line)

    def _report(self, line: dict[str, Any]) -> None:
        self.metrics.flow(line)
        if line.get("verdict") == "deny":
            self._aggregator.add(line)
        else:
            self._write(line)

    def _write(self, line: dict[str, Any]) -> None:
        writer = self._writer
        if writer is not None:
            try:
                writer.write(line)
            except (OSError, ValueError) as exc:
                event(log, "flowlog.write_failed", error=str(exc), level=logging.WARNING)
