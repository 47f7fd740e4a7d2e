"""The GENEVE benchmark's pure parts: its policy, its results document and its README section."""
from __future__ import annotations

from pathlib import Path

from bench import geneve_bench as bench
from dataplane.filter_model import FilterPolicy
from testbed.gwlb import APP_HOSTS, AZ_APP


def _figures(scale: float) -> dict:
    return {"gbps_single": 2.0 * scale, "gbps_8flow": 3.0 * scale, "pps_64b": 40000 * scale, "pps_1400b": 20000 * scale,
            "busy_cores": {"gbps_single": 2.0}, "connector_agent_cores": {"gbps_single": 0.3}}


def _by_mtu() -> dict:
    return {mtu: {"ebpf": _figures(0.5), "user": _figures(0.25), "tproxy": _figures(1.0), "routed": _figures(4.0)} for mtu in ("8500", "1500")}


def test_the_bench_policy_permits_its_tcp_and_udp_traffic() -> None:
    policy = FilterPolicy.model_validate(bench.BENCH_POLICY)
    assert policy.evaluate_reference(APP_HOSTS[0], AZ_APP, "tcp", bench.PORT)[0] == "permit"
    assert policy.evaluate_reference(APP_HOSTS[0], AZ_APP, "udp", bench.PORT) == ("permit", "bench-udp")


def test_document_carries_the_issue_keys_the_baselines_and_the_target_ratio() -> None:
    doc = bench.document(_by_mtu(), load_before=(1.0, 1.0, 1.0), seconds=3.0)
    assert (doc["gbps_single"], doc["gbps_8flow"], doc["pps_64b"], doc["pps_1400b"]) == (1.0, 1.5, 20000, 10000)
    assert doc["baselines"]["tproxy"]["gbps_single"] == 2.0 and doc["baselines"]["routed"]["pps_64b"] == 160000
    assert doc["target"] == {"geneve_single_vs_tproxy_at_8500": 0.5, "user_single_vs_tproxy_at_8500": 0.25, "wanted": 0.5}
    assert doc["user"]["gbps_single"] == 0.5
    assert doc["by_mtu"]["1500"]["ratios"]["ebpf_vs_routed_gbps_8flow"] == 0.125
    assert doc["by_mtu"]["8500"]["ratios"]["user_vs_tproxy_pps_64b"] == 0.25


def test_readme_section_replaces_only_its_own_part(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    doc = bench.document(_by_mtu(), load_before=(1.0, 1.0, 1.0), seconds=3.0)
    bench.write_readme(doc, readme)
    bench.write_readme(doc, readme)
    text = readme.read_text()
    assert text.count(bench.START) == 1 and "kept" in text
    assert "| 8500 | ebpf | 1.0 | 1.5 | 20000.0 | 10000.0 |" in text and "| 1500 | user | 0.5 | 0.75 | 10000.0 | 5000.0 |" in text
