"""The data plane benchmark's pure parts: its policies, its results document and its README section."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import dataplane_bench as bench
from dataplane.filter_model import FilterPolicy
from testbed.seed000 import AWS_APP, AZ_APP


@pytest.mark.parametrize("count", [10, 10_000])
def test_policies_have_the_count_and_still_decide_the_bench_traffic(count: int) -> None:
    policy = FilterPolicy.model_validate(bench.policy(count))
    assert len(policy.rules) == count
    assert policy.evaluate_reference(AWS_APP, AZ_APP, "tcp", bench.IPERF_PORT) == ("permit", "app-to-db")
    assert policy.evaluate_reference(AWS_APP, AZ_APP, "tcp", bench.TTFB_PORT) == ("permit", "app-to-db")
    assert policy.evaluate_reference(AWS_APP, AZ_APP, "tcp", 22) == ("deny", "no-ssh")
    assert policy.evaluate_reference(AWS_APP, AZ_APP, "udp", bench.UDP_PORT) == ("permit", "app-udp")


def _measured() -> dict:
    return {
        "raw_single_gbps": 10.0, "raw_8flow_gbps": 12.0, "stunnel_single_gbps": 2.0, "stunnel_8flow_gbps": 3.0,
        "transit_single_gbps": 4.5, "transit_8flow_gbps": 6.0, "rules_10_gbps": 4.0, "rules_10000_gbps": 3.9,
        "cold_ttfb": {"p50_ms": 4.0, "p99_ms": 12.0, "max_ms": 13.0, "failures": 0},
        "flows_1000": {"opened": 1000, "peak_rss_mb": {"conn": 90.0, "edgea": 120.0, "edgeb": 80.0}},
    }


def test_document_has_the_issue_keys_ratios_and_target_verdicts() -> None:
    doc = bench._document(_measured(), {}, 12.0)
    for key in ("raw_single_gbps", "stunnel_single_gbps", "transit_single_gbps", "transit_8flow_gbps", "cold_ttfb_p50_ms",
                "cold_ttfb_p99_ms", "rules_10_gbps", "rules_10000_gbps", "agent_rss_mb_1000_flows"):
        assert doc[key] is not None, key
    assert doc["agent_rss_mb_1000_flows"] == 120.0
    assert doc["ratios"]["transit_vs_stunnel_single"] == 2.25
    assert doc["ratios"]["rules_10000_vs_10"] == 0.975
    met = {name: row["met"] for name, row in doc["targets"].items()}
    assert met == {"transit_vs_stunnel_single": True, "transit_vs_raw_single": False, "rules_10000_vs_10": True,
                   "cold_ttfb_p99_ms": False, "agent_rss_mb_1000_flows": True}
    assert doc["machine"]["nproc"] and doc["machine"]["kernel"]


def test_missing_measurements_are_reported_not_invented() -> None:
    measured = _measured()
    del measured["transit_single_gbps"], measured["cold_ttfb"]
    doc = bench._document(measured, {"transit_single_gbps": "RuntimeError: iperf3 failed"}, 1.0)
    assert doc["transit_single_gbps"] is None and doc["cold_ttfb_p99_ms"] is None
    assert doc["targets"]["cold_ttfb_p99_ms"]["met"] is None
    section = bench.readme_section(doc)
    assert "not measured" in section and "iperf3 failed" in section


def test_readme_section_is_replaced_and_other_sections_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n## Local up\n\nkeep me\n")
    monkeypatch.setattr(bench, "README", readme)
    bench.write_readme(bench._document(_measured(), {}, 1.0))
    first = readme.read_text()
    assert "keep me" in first and first.count(bench.START) == 1 and "| 1 flow, Gbit/s | 10.0 | 2.0 | 4.5 |" in first
    changed = _measured()
    changed["raw_single_gbps"] = 11.0
    bench.write_readme(bench._document(changed, {}, 1.0))
    second = readme.read_text()
    assert "keep me" in second and second.count(bench.START) == 1 and "| 11.0 |" in second and "| 10.0 |" not in second


def test_readme_from_the_results_file_shows_the_raw_rule_figures() -> None:
    import json

    measured = _measured()
    ttfb = {"p50_ms": 0.07, "p99_ms": 0.2, "max_ms": 0.3, "failures": 0}
    measured["raw_rules_10"] = {"apply_s": 0.02, "gbps": 9.5, "samples": [9.5], "ttfb": ttfb}
    measured["raw_rules_10000"] = {"apply_s": 1.9, "gbps": 9.4, "samples": [9.4], "ttfb": ttfb}
    doc = json.loads(json.dumps(bench._document(measured, {}, 1.0)))
    section = bench.readme_section(doc)
    assert "| 9.5 / 9.4 |" in section and "0.07/0.2 ; 0.07/0.2" in section
    assert doc["ratios"]["raw_rules_10000_vs_10"] == 0.989


def test_latency_summary_uses_nearest_rank_and_never_invents_figures() -> None:
    samples = [float(value) for value in range(200, 0, -1)]  # 1..200 ms, unsorted
    assert bench.latency_summary(samples, 3) == {"p50_ms": 100.5, "p99_ms": 198.0, "max_ms": 200.0, "failures": 3}
    assert bench.latency_summary([], 200) == {"p50_ms": None, "p99_ms": None, "max_ms": None, "failures": 200}


def test_each_sample_records_the_machine_cpu_it_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """150 of 200 jiffies busy on 2 CPUs is 1.5 cores; at 6 Gbit/s (0.75 GB/s) that is 2 core-seconds per GB."""
    readings = iter([(1000, 4000), (1150, 4200), (2000, 5000), (2100, 5200)])
    monkeypatch.setattr(bench, "_cpu_jiffies", lambda: next(readings))
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    m: dict = {}
    bench._sampled(m, {}, "transit_single_gbps", lambda: 6.0)
    assert m["busy_cores"]["transit_single_gbps"] == [1.5]
    assert m["core_s_per_gb"]["transit_single_gbps"] == 2.0
    bench._sampled(m, {}, "transit_single_gbps", lambda: 4.0)  # 1.0 core at 0.5 GB/s: 2.0 again
    assert m["core_s_per_gb"]["transit_single_gbps"] == 2.0
    doc = bench._document({**_measured(), **m}, {}, 1.0)
    assert doc["core_s_per_gb"]["transit"] == 2.0 and doc["busy_cores_single"]["transit"] == 1.25
    assert doc["core_s_per_gb"]["raw"] is None
    assert "1.25 ; 2.0" in bench.readme_section(doc)
