"""Flow log: lines written are read back; torn and foreign lines are skipped; follow survives rotation."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from dataplane.flowlog import FlowEntry, FlowLogReader, FlowLogWriter


def _flow(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "ts": 1_790_000_000.5, "node": "conn-aws-app", "role": "ingress", "src": "10.30.40.5", "sport": 40000,
        "dst": "172.18.40.10", "dport": 5432, "proto": "tcp", "src_identity": "spiffe://acme/conn-aws-app",
        "dst_identity": "spiffe://acme/edge-az-weu", "bytes_up": 1200, "bytes_down": 56000, "duration_s": 1.25,
        "verdict": "permit", "rule": "app-to-db", "path": "private", "peer": "edge-aws-use1", "rtt_ms": 0.4,
        "outcome": "closed", "flow_id": "f1",
    }
    base.update(changes)
    return base


def test_written_flows_read_back_in_order(tmp_path: Path) -> None:
    log = tmp_path / "flows" / "flows.jsonl"
    writer = FlowLogWriter(log)
    writer.write(_flow())
    writer.write(FlowEntry.model_validate(_flow(verdict="deny", rule="no-ssh", dport=22, bytes_up=0, bytes_down=0, flow_id="f2")))
    writer.close()
    entries = list(FlowLogReader(log).read())
    assert [e.flow_id for e in entries] == ["f1", "f2"]
    assert entries[0].bytes_down == 56000 and entries[1].verdict == "deny" and entries[1].rule == "no-ssh"
    assert len(log.read_text().splitlines()) == 2


def test_bad_records_are_refused_by_the_writer(tmp_path: Path) -> None:
    writer = FlowLogWriter(tmp_path / "f.jsonl")
    with pytest.raises(ValidationError):
        writer.write(_flow(verdict="maybe"))
    with pytest.raises(ValidationError):
        writer.write(_flow(dport=70000))
    writer.close()
    assert (tmp_path / "f.jsonl").read_text() == ""


def test_reader_skips_and_counts_garbage(tmp_path: Path) -> None:
    log = tmp_path / "f.jsonl"
    good = FlowEntry.model_validate(_flow()).model_dump_json()
    log.write_text(f"{good}\nnot json\n{{\"ts\": 1}}\n\n[1, 2]\n{good[:40]}")
    reader = FlowLogReader(log)
    assert len(list(reader.read())) == 1
    assert reader.skipped == 3  # the torn last line is not counted: it may still be being written


def test_follow_from_where_read_stopped_misses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "f.jsonl"
    line = FlowEntry.model_validate(_flow(flow_id="torn")).model_dump_json()
    log.write_text(FlowEntry.model_validate(_flow(flow_id="first")).model_dump_json() + "\n" + line[:30])
    reader = FlowLogReader(log)
    assert [e.flow_id for e in reader.read()] == ["first"]
    with open(log, "a") as handle:  # the writer finishes its line, then writes another
        handle.write(line[30:] + "\n" + FlowEntry.model_validate(_flow(flow_id="next")).model_dump_json() + "\n")
    stop = threading.Event()
    seen = []
    for entry in reader.follow(poll=0.02, from_offset=reader.offset, stop=stop):
        seen.append(entry.flow_id)
        if len(seen) == 2:
            stop.set()
    assert seen == ["torn", "next"]


def test_follow_sees_new_lines_and_rotation(tmp_path: Path) -> None:
    log = tmp_path / "f.jsonl"
    writer = FlowLogWriter(log)
    writer.write(_flow(flow_id="old"))
    stop = threading.Event()
    seen: list[str] = []
    done = threading.Event()

    def consume() -> None:
        for entry in FlowLogReader(log).follow(poll=0.02, from_start=False, stop=stop):
            seen.append(entry.flow_id)
            if len(seen) == 2:
                done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(0.1)
    writer.write(_flow(flow_id="a"))
    time.sleep(0.1)
    log.rename(tmp_path / "f.jsonl.1")
    writer.reopen()
    writer.write(_flow(flow_id="b"))
    assert done.wait(3)
    stop.set()
    thread.join(2)
    writer.close()
    assert seen == ["a", "b"]
