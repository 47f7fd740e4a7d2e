"""Prometheus metrics and the HTTP endpoint serving /metrics and /healthz.

Two kinds of figures:

- counted per closed flow (`Metrics.flow`): flows by role and verdict,
  verdicts by rule, bytes by direction, peer and path;
- read at scrape time from the running parts (`Sources`): path RTT, loss, up
  and active flags from the path monitor, open tunnels per peer and path,
  streams in flight, the kernel filter table's per-rule counters, and the
  ICMP errors answering refused UDP datagrams, sent or rate-limited
  (`icmp_reject.RejectCounts`). Reading at scrape time keeps the hot path free
  of metric updates for state that already lives elsewhere.

Each agent gets its own registry, so several agents (or tests) in one process
never share series. Every label value comes from a local, bounded set: rule
names from this agent's own policy (a far end's rule name in a DENIED reply
counts as `remote`), peer names from its config, fixed words otherwise; so
nothing a far end sends can create series.

The endpoint binds where the config says (loopback by default: metrics carry
addresses, never secrets). It serves at most `max_connections` connections at
once (more are closed at once and counted), each with one deadline for the
whole request and answer; and on a non-loopback local address it serves only
/healthz, so a load balancer can check the agent without seeing its metrics.
"""
from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dataplane.filter_model import DEFAULT_RULE
from dataplane.flowlog import FlowEntry
from dataplane.geneve import fastpath
from dataplane.geneve.packet import REASONS

log = logging.getLogger("dataplane.metrics")

ROLES = frozenset({"ingress", "relay", "egress"})
REMOTE_RULE = "remote"  # label for a rule named by a far end (a DENIED reply), never its name

PathStats = Mapping[str, Mapping[str, Mapping[str, Any]]]


@dataclass
class Sources:
    """Callables the scrape reads; any may be None when the agent has no such part."""

    paths: Callable[[], PathStats] | None = None
    active_paths: Callable[[], Mapping[str, str]] | None = None
    tunnels: Callable[[], Mapping[str, Mapping[str, int]]] | None = None
    streams: Callable[[], int] | None = None
    filter_counters: Callable[[], Mapping[str, tuple[int, int]]] | None = None
    icmp_errors: Callable[[], Mapping[str, int]] | None = None  # {"sent": n, "limited": n}
    refused: Callable[[], Mapping[str, int]] | None = None  # admission refusals per reason (admission.REASONS)
    geneve: Callable[[], Mapping[str, int] | None] | None = None  # packets by result (geneve.gateway.counts); None: no gateway
    geneve_flows: Callable[[], int | None] | None = None
    geneve_fastpath: Callable[[], Mapping[str, Any] | None] | None = None  # geneve.gateway.fast_path; None: no gateway


class Metrics:
    """The agent's metrics in its own registry."""

    def __init__(self, *, node: str, sources: Sources | None = None, rules: Iterable[str] = (), peers: Iterable[str] = ()) -> None:
        self.node = node
        self.set_names(rules, peers)
        self.registry = CollectorRegistry(auto_describe=True)
        self.sources = sources or Sources()
        self._flows = Counter("transit_flows", "Closed flows by role and verdict.", ["role", "verdict"], registry=self.registry)
        self._verdicts = Counter("transit_verdicts", "Filter verdicts on closed flows, by deciding rule.", ["verdict", "rule"], registry=self.registry)
        self._bytes = Counter("transit_bytes", "Bytes carried by closed flows.", ["direction", "peer", "path"], registry=self.registry)
        self.registry.register(_ScrapeCollector(self))

    def set_names(self, rules: Iterable[str], peers: Iterable[str]) -> None:
        """The local rule and peer names labels may carry (the config in force)."""
        self._rules = frozenset(rules)
        self._peers = frozenset(peers)

    def flow(self, flow: FlowEntry | Mapping[str, Any]) -> None:
        """Count one closed flow (`count` of them for an aggregated deny line)."""
        entry = flow if isinstance(flow, FlowEntry) else FlowEntry.model_validate(dict(flow))
        role = entry.role if entry.role in ROLES else "unknown"
        self._flows.labels(role=role, verdict=entry.verdict).inc(entry.count)
        rule = DEFAULT_RULE if entry.rule is None else entry.rule if entry.rule in self._rules else REMOTE_RULE
        self._verdicts.labels(verdict=entry.verdict, rule=rule).inc(entry.count)
        peer = "local" if entry.peer is None else entry.peer if entry.peer in self._peers else "other"
        path = entry.path if entry.path in ("private", "public") else "local"
        if entry.bytes_up:
            self._bytes.labels(direction="up", peer=peer, path=path).inc(entry.bytes_up)
        if entry.bytes_down:
            self._bytes.labels(direction="down", peer=peer, path=path).inc(entry.bytes_down)

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)


class _ScrapeCollector(Collector):
    """Gauges read from the running parts when Prometheus scrapes."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        sources = self._metrics.sources
        yield from _guarded(self._paths, sources)
        if sources.tunnels is not None:
            tunnels = GaugeMetricFamily("transit_tunnels", "Open TLS tunnels per peer and path.", labels=["peer", "path"])
            for peer, by_path in _call(sources.tunnels, {}).items():
                for path, count in by_path.items():
                    tunnels.add_metric([peer, path], count)
            yield tunnels
        if sources.streams is not None:
            yield GaugeMetricFamily("transit_streams_active", "Streams in flight.", value=_call(sources.streams, 0))
        if sources.filter_counters is not None:
            packets = CounterMetricFamily("transit_filter_packets", "New connections judged by each filter rule (kernel counters).", labels=["rule"])
            octets = CounterMetricFamily("transit_filter_bytes", "Bytes of packets judged by each filter rule (kernel counters).", labels=["rule"])
            for rule, (count, size) in _call(sources.filter_counters, {}).items():
                packets.add_metric([rule], count)
                octets.add_metric([rule], size)
            yield packets
            yield octets
        if sources.icmp_errors is not None:
            errors = CounterMetricFamily(
                "transit_icmp_errors", "ICMP errors answering refused UDP datagrams: sent, or held back by the rate limit (limited).",
                labels=["result"],
            )
            counts = _call(sources.icmp_errors, {})
            for result in ("sent", "limited"):
                errors.add_metric([result], counts.get(result, 0))
            yield errors
        if sources.refused is not None:
            refused = CounterMetricFamily(
                "transit_refused", "Connections, streams and datagram sessions refused at a resource cap, by reason.", labels=["reason"],
            )
            for reason, count in sorted(_call(sources.refused, {}).items()):
                refused.add_metric([reason], count)
            yield refused
        yield from _guarded(self._geneve, sources)

    @staticmethod
    def _geneve(sources: Sources) -> Iterable[Metric]:
        counts = _call(sources.geneve, None)
        if counts is None:
            return []
        packets = CounterMetricFamily(
            "transit_geneve_packets", "GENEVE packets by result: delivered (into the TUN), returned (to the load balancer), or the reason it was dropped.",
            labels=["result"],
        )
        for result in sorted({"delivered", "returned", *REASONS, *counts}):
            packets.add_metric([result], counts.get(result, 0))
        flows = GaugeMetricFamily("transit_geneve_flows", "Flows in the GENEVE flow table.", value=_call(sources.geneve_flows, 0) or 0)
        return [packets, flows, *_ScrapeCollector._geneve_fastpath(sources)]

    @staticmethod
    def _geneve_fastpath(sources: Sources) -> Iterable[Metric]:
        state = _call(sources.geneve_fastpath, None)
        if state is None:
            return []
        live = GaugeMetricFamily("transit_geneve_datapath", "1 for the path that moves GENEVE packets: ebpf (the kernel) or user (the worker).",
                                 labels=["path"])
        for path in ("ebpf", "user"):
            live.add_metric([path], 1 if state["datapath"] == path else 0)
        packets = CounterMetricFamily(
            "transit_geneve_ebpf_packets", "GENEVE packets the eBPF fast path handled (decapsulated, encapsulated, learned) or left to the "
            "user-space worker (up_*), by result.", labels=["result"],
        )
        for result in fastpath.COUNTERS:
            packets.add_metric([result], state["counts"].get(result, 0))
        flows = GaugeMetricFamily("transit_geneve_ebpf_flows", "Flows in the eBPF fast path's table.", value=state["flows"])
        failures = CounterMetricFamily("transit_geneve_ebpf_load_failures", "Times the eBPF fast path did not load, by reason.",
                                       labels=["reason"])
        for reason in fastpath.REASONS:
            failures.add_metric([reason], state["load_failures"].get(reason, 0))
        return [live, packets, flows, failures]

    @staticmethod
    def _paths(sources: Sources) -> Iterable[Metric]:
        if sources.paths is None:
            return []
        rtt = GaugeMetricFamily("transit_path_rtt_ms", "Mean probe RTT over the window.", labels=["peer", "path"])
        loss = GaugeMetricFamily("transit_path_loss_ratio", "Share of probes lost over the window.", labels=["peer", "path"])
        up = GaugeMetricFamily("transit_path_up", "1 when probes get through.", labels=["peer", "path"])
        active = GaugeMetricFamily("transit_path_active", "1 for the path new traffic takes.", labels=["peer", "path"])
        chosen = _call(sources.active_paths, {}) if sources.active_paths else {}
        for peer, by_path in _call(sources.paths, {}).items():
            for path, stats in by_path.items():
                if stats.get("rtt_ms") is not None:
                    rtt.add_metric([peer, path], float(stats["rtt_ms"]))
                loss.add_metric([peer, path], float(stats.get("loss") or 0.0))
                up.add_metric([peer, path], 1.0 if stats.get("up") else 0.0)
                active.add_metric([peer, path], 1.0 if chosen.get(peer) == path else 0.0)
        return [rtt, loss, up, active]


def _call(source: Callable[[], Any] | None, default: Any) -> Any:
    """A failing source costs its own series, never the whole scrape."""
    if source is None:
        return default
    try:
        return source()
    except Exception as exc:
        log.warning("metrics.source_failed error=%r", exc)
        return default


def _guarded(produce: Callable[[Sources], Iterable[Metric]], sources: Sources) -> Iterable[Metric]:
    try:
        return list(produce(sources))
    except Exception as exc:
        log.warning("metrics.source_failed error=%r", exc)
        return []


class _BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most `limit` connections at once and closes the rest at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limit: int,
                 on_refused: Callable[[], None] | None) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        self._on_refused = on_refused
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            if self._on_refused is not None:
                self._on_refused()
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # RuntimeError: can't start new thread
            self._slots.release()
            self.shutdown_request(request)
            if self._on_refused is not None:
                self._on_refused()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _DeadlineReader(io.RawIOBase):
    """Reads a socket with what is left of one deadline as its timeout (a trickled request cannot outlive it)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


def serves_metrics(local_address: str) -> bool:
    """/metrics only on loopback; any other local address gets /healthz alone."""
    try:
        return IPv4Address(local_address).is_loopback
    except ValueError:
        return False


class MetricsServer:
    """HTTP on one address: GET /metrics (Prometheus text, loopback only) and GET /healthz (JSON).

    `health()` returns the /healthz document; its `status` other than `ok`
    (or an exception) answers 503.
    """

    def __init__(
        self, host: str, port: int, metrics: Metrics, health: Callable[[], Mapping[str, Any]], *,
        max_connections: int = 8, deadline: float = 2.0, on_refused: Callable[[], None] | None = None,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._deadline = deadline
        self._server = _BoundedServer((host, port), self._handler_class(), max_connections, on_refused)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound (port 0 picks a free one)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:  # one deadline for the whole exchange, not per receive
                super().setup()
                self._deadline = time.monotonic() + server._deadline
                self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self._deadline))

            def do_GET(self) -> None:  # the name http.server dispatches GET to
                path = self.path.split("?", 1)[0]
                if path == "/metrics" and serves_metrics(self.connection.getsockname()[0]):
                    self._send(200, CONTENT_TYPE_LATEST, server._metrics.render())
                elif path == "/healthz":
                    try:
                        body = dict(server._health())
                        body.setdefault("status", "ok")
                        status = 200 if body["status"] == "ok" else 503
                    except Exception as exc:
                        body, status = {"status": "error", "error": repr(exc)}, 503
                    self._send(status, "application/json", json.dumps(body, default=str).encode())
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found: /healthz (and /metrics on loopback)\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.connection.settimeout(max(0.05, self._deadline - time.monotonic()))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
                return  # scrapes every few seconds would drown the agent log

        return Handler
