"""Where a closed stream is reported, and where the agent is watched from.

The agent calls `Observer.flow()` once per closed stream, from the stream's own
thread: it writes the agent log line (debug), one flow log line
(dataplane.flowlog) and the flow counters (dataplane.metrics). `start()` binds
the /metrics + /healthz endpoint, whose gauges are read from the running parts
at scrape time (`Sources`).
"""
from __future__ import annotations

import logging
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


class Observer:
    """Fans a closed stream out to the log, the flow log and the metrics; serves the endpoint."""

    def __init__(
        self, config: AgentConfig, *, sources: Sources, rtt: Callable[[str, str], float | None],
        on_deny: Callable[[DeniedPacket], None] | None = None,
    ) -> None:
        self._config = config
        self._rtt = rtt
        self._on_deny = on_deny  # the agent's own answer to a kernel deny (an ICMP error for UDP)
        self.metrics = Metrics(node=config.name, sources=sources)
        self._writer: FlowLogWriter | None = None
        self._server: MetricsServer | None = None
        self._health: Callable[[], Mapping[str, Any]] | None = None
        self._denies: DenyListener | None = None

    def start(self, *, health: Callable[[], Mapping[str, Any]]) -> None:
        """Open the flow log and bind the metrics endpoint (OSError if the address is taken)."""
        self._health = health
        if self._config.flow_log is not None:
            self._writer = FlowLogWriter(self._config.flow_log)
        endpoint = self._config.listen.metrics
        if endpoint is not None:
            self._server = MetricsServer(str(endpoint.host), endpoint.port, self.metrics, health)
            self._server.start()
            event(log, "metrics.start", addr=f"{endpoint.host}:{endpoint.port}")
        self._denies = DenyListener(LOG_GROUP, self._denied)
        try:
            self._denies.start()
        except OSError as exc:  # no NFLOG, or the group is taken: kernel denies stay in the kernel log and counters only
            self._denies = None
            event(log, "denylog.unavailable", error=str(exc), level=logging.WARNING)

    def stop(self) -> None:
        """Stop the endpoint and close the flow log."""
        if self._denies is not None:
            self._denies.stop()
            self._denies = None
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
        if old.listen.metrics != config.listen.metrics and self._health is not None:
            if self._server is not None:
                self._server.stop()
                self._server = None
            endpoint = config.listen.metrics
            if endpoint is not None:
                self._server = MetricsServer(str(endpoint.host), endpoint.port, self.metrics, self._health)
                self._server.start()

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
        writer = self._writer
        if writer is not None:
            try:
                writer.write(line)
            except (OSError, ValueError) as exc:
                event(log, "flowlog.write_failed", error=str(exc), level=logging.WARNING)
