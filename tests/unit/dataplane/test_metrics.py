"""Metrics: per-flow counters, scrape-time gauges, and the /metrics + /healthz endpoint on loopback."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dataplane.geneve import fastpath
from dataplane.icmp_reject import RejectCounts
from dataplane.metrics import Metrics, MetricsServer, Sources


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _flow(verdict: str, rule: str | None, up: int, down: int, path: str | None = "private") -> dict[str, object]:
    return {"ts": 1.0, "role": "ingress", "src": "10.30.40.5", "sport": 1, "dst": "172.18.40.10", "dport": 5432,
            "verdict": verdict, "rule": rule, "bytes_up": up, "bytes_down": down, "path": path, "peer": "edge-a"}


def test_flows_verdicts_and_bytes_are_counted() -> None:
    metrics = Metrics(node="n1", rules=["app-to-db"], peers=["edge-a"])
    metrics.flow(_flow("permit", "app-to-db", 100, 2000))
    metrics.flow(_flow("permit", "app-to-db", 1, 2))
    metrics.flow(_flow("deny", None, 0, 0, path=None))
    samples = _samples(metrics)
    assert samples[("transit_flows_total", (("role", "ingress"), ("verdict", "permit")))] == 2
    assert samples[("transit_verdicts_total", (("rule", "default"), ("verdict", "deny")))] == 1
    assert samples[("transit_bytes_total", (("direction", "down"), ("path", "private"), ("peer", "edge-a")))] == 2002
    assert samples[("transit_bytes_total", (("direction", "up"), ("path", "private"), ("peer", "edge-a")))] == 101


def test_scrape_reads_running_parts_and_survives_a_failing_source() -> None:
    def broken() -> dict[str, tuple[int, int]]:
        raise RuntimeError("nft gone")

    sources = Sources(
        paths=lambda: {"edge-a": {"private": {"rtt_ms": 0.5, "loss": 0.0, "up": True}, "public": {"rtt_ms": None, "loss": 1.0, "up": False}}},
        active_paths=lambda: {"edge-a": "private"},
        tunnels=lambda: {"edge-a": {"private": 3}},
        streams=lambda: 7,
        filter_counters=broken,
    )
    samples = _samples(Metrics(node="n1", sources=sources))
    assert samples[("transit_path_rtt_ms", (("path", "private"), ("peer", "edge-a")))] == 0.5
    assert ("transit_path_rtt_ms", (("path", "public"), ("peer", "edge-a"))) not in samples
    assert samples[("transit_path_loss_ratio", (("path", "public"), ("peer", "edge-a")))] == 1.0
    assert samples[("transit_path_up", (("path", "public"), ("peer", "edge-a")))] == 0.0
    assert samples[("transit_path_active", (("path", "private"), ("peer", "edge-a")))] == 1.0
    assert samples[("transit_tunnels", (("path", "private"), ("peer", "edge-a")))] == 3
    assert samples[("transit_streams_active", ())] == 7
    assert not any(name.startswith("transit_filter") and labels for name, labels in samples)


def test_filter_counters_are_exported() -> None:
    samples = _samples(Metrics(node="n1", sources=Sources(filter_counters=lambda: {"no-ssh": (3, 180), "default": (1, 60)})))
    assert samples[("transit_filter_packets_total", (("rule", "no-ssh"),))] == 3
    assert samples[("transit_filter_bytes_total", (("rule", "default"),))] == 60


def test_the_geneve_fast_path_exports_its_live_path_counters_and_load_failures_with_bounded_labels() -> None:
    state = {"datapath": "user", "counts": {}, "flows": 0, "load_failures": {"no_privilege": 1}}
    samples = _samples(Metrics(node="n1", sources=Sources(geneve=lambda: {"delivered": 5}, geneve_flows=lambda: 1, geneve_fastpath=lambda: state)))
    assert samples[("transit_geneve_datapath", (("path", "user"),))] == 1 and samples[("transit_geneve_datapath", (("path", "ebpf"),))] == 0
    assert samples[("transit_geneve_ebpf_load_failures_total", (("reason", "no_privilege"),))] == 1
    assert {labels for name, labels in samples if name == "transit_geneve_ebpf_load_failures_total"} == {
        (("reason", reason),) for reason in fastpath.REASONS}
    state = {"datapath": "ebpf", "counts": {"decapsulated": 9, "encapsulated": 4}, "flows": 3, "load_failures": {}}
    samples = _samples(Metrics(node="n1", sources=Sources(geneve=lambda: {}, geneve_flows=lambda: 0, geneve_fastpath=lambda: state)))
    assert samples[("transit_geneve_ebpf_packets_total", (("result", "decapsulated"),))] == 9
    assert samples[("transit_geneve_ebpf_flows", ())] == 3
    assert {labels for name, labels in samples if name == "transit_geneve_ebpf_packets_total"} == {
        (("result", result),) for result in fastpath.COUNTERS}  # every label up front, nothing a packet could add


def test_endpoint_serves_metrics_and_health() -> None:
    metrics = Metrics(node="n1", sources=Sources(streams=lambda: 2))
    health = {"node": "n1", "streams": 2}
    server = MetricsServer("127.0.0.1", 0, metrics, lambda: health)
    server.start()
    try:
        host, port = server.address
        body = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=3).read().decode()
        assert "transit_streams_active 2.0" in body
        document = json.loads(urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=3).read())
        assert document == {"node": "n1", "streams": 2, "status": "ok"}
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://{host}:{port}/nope", timeout=3)
        assert info.value.code == 404
    finally:
        server.stop()


def test_failing_health_answers_503() -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("boom")

    server = MetricsServer("127.0.0.1", 0, Metrics(node="n1"), broken)
    server.start()
    try:
        host, port = server.address
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=3)
        assert info.value.code == 503
        assert json.loads(info.value.read())["status"] == "error"
    finally:
        server.stop()


def test_icmp_errors_are_one_counter_by_result() -> None:
    counts = RejectCounts()
    sources = Sources(icmp_errors=counts.snapshot)
    metrics = Metrics(node="n1", sources=sources)
    samples = _samples(metrics)
    assert samples[("transit_icmp_errors_total", (("result", "sent"),))] == 0  # both series exist from the start
    assert samples[("transit_icmp_errors_total", (("result", "limited"),))] == 0
    for _ in range(3):
        counts.sent()
    counts.limited()
    samples = _samples(metrics)
    assert samples[("transit_icmp_errors_total", (("result", "sent"),))] == 3
    assert samples[("transit_icmp_errors_total", (("result", "limited"),))] == 1
    text = metrics.render().decode()
    assert "# TYPE transit_icmp_errors_total counter" in text
    assert 'transit_icmp_errors_total{result="sent"} 3.0' in text


def test_no_icmp_error_series_without_a_source() -> None:
    assert not any(name.startswith("transit_icmp_errors") for name, _ in _samples(Metrics(node="n1")))


def test_labels_come_only_from_local_names_whatever_a_far_end_sends() -> None:
    metrics = Metrics(node="n1", rules=["app-to-db"], peers=["edge-a"])
    for index in range(20):
        far = {**_flow("deny", f"evil-{index:03d}", 0, 0), "peer": f"stranger-{index}"}
        metrics.flow(far)
    series = {(name, labels) for name, labels in _samples(metrics) if name.endswith("_total")}
    assert not any("evil" in str(labels) or "stranger" in str(labels) for _name, labels in series)
    assert _samples(metrics)[("transit_verdicts_total", (("rule", "remote"), ("verdict", "deny")))] == 20


def test_an_aggregated_deny_line_counts_every_flow_it_stands_for() -> None:
    metrics = Metrics(node="n1")
    metrics.flow({**_flow("deny", None, 0, 0), "count": 2000})
    assert _samples(metrics)[("transit_flows_total", (("role", "ingress"), ("verdict", "deny")))] == 2000


def test_metrics_are_served_on_loopback_only() -> None:
    from dataplane.metrics import serves_metrics

    assert serves_metrics("127.0.0.1") and serves_metrics("127.3.2.1")
    assert not serves_metrics("10.0.0.5") and not serves_metrics("0.0.0.0")


def test_a_trickled_request_is_cut_off_at_the_deadline_and_connections_are_capped() -> None:
    import socket
    import time

    refused: list[int] = []
    server = MetricsServer("127.0.0.1", 0, Metrics(node="n1"), lambda: {"node": "n1"}, max_connections=2, deadline=0.5,
                           on_refused=lambda: refused.append(1))
    server.start()
    host, port = server.address
    try:
        slow = [socket.create_connection((host, port), timeout=3) for _ in range(2)]
        started = time.monotonic()
        for sock in slow:
            sock.sendall(b"GET /hea")
        extra = socket.create_connection((host, port), timeout=3)
        assert extra.recv(100) == b""  # closed at once: both slots are taken
        for sock in slow:
            sock.sendall(b"l")  # trickling does not extend the deadline
        for sock in slow:
            sock.settimeout(3)
            assert sock.recv(100) == b""  # cut off at the deadline, no answer
        assert time.monotonic() - started < 2
        assert refused == [1]
        for sock in [*slow, extra]:
            sock.close()
        time.sleep(0.1)
        document = json.loads(urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=3).read())
        assert document["node"] == "n1"
    finally:
        server.stop()


def test_health_with_a_failing_check_answers_503() -> None:
    from dataplane.health import Health

    health = Health(lambda: {"node": "n1"})
    health.add("listeners", lambda: (True, "tunnel"))
    health.add("geneve", lambda: (False, "listener gone"))
    server = MetricsServer("127.0.0.1", 0, Metrics(node="n1"), health.report)
    server.start()
    host, port = server.address
    try:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=3)
        assert caught.value.code == 503
        document = json.loads(caught.value.read())
        assert document["status"] == "fail"
        assert document["checks"]["geneve"] == {"ok": False, "detail": "listener gone"}
        assert document["checks"]["listeners"]["ok"] is True
    finally:
        server.stop()
