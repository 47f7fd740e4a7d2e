"""The pure parts of `transit local-check` and the local target's pre-flight check."""
from __future__ import annotations

from pathlib import Path

from components import load_spec
from components.local.target import problems
from components.plan import build_plan
from transit_cli.local_check import FlowResult, Session, find_local_outputs

ROOT = Path(__file__).resolve().parents[3]


def test_finds_the_local_hand_off_wherever_the_stack_exports_it() -> None:
    local = {"prefix": "acme-local", "flows": [], "routers": []}
    assert find_local_outputs({"fabric": "acme", "outputs": {"local": local}}) is local
    assert find_local_outputs({"local": local}) is local
    assert find_local_outputs({"fabric": "acme", "outputs": {"edges": []}}) is None


def test_flow_and_session_verdicts() -> None:
    assert FlowResult("t", "a", "b", 22, "tcp", "deny", "deny").ok
    assert not FlowResult("t", "a", "b", 22, "tcp", "deny", "permit").ok
    assert Session("cr", "10.0.0.1", 64512, "Established", 1, 2, "dx").ok
    assert not Session("cr", "10.0.0.1", 64512, "Active", 0, 0, "dx").ok


def test_check_names_every_missing_md5_secret_before_anything_is_created() -> None:
    spec = load_spec(ROOT / "stacks" / "fabrics" / "architecture_example.yaml")
    plan = build_plan(spec)
    found = problems(spec, plan, None, None, {"fraDxMd5": "x"})
    assert len(found) == 2
    assert any("fraErMd5" in p for p in found) and any("dcFraMd5" in p for p in found)
    assert problems(spec, plan, None, None, {"fraDxMd5": "x", "fraErMd5": "y", "dcFraMd5": "z"}) == []


def test_wait_sessions_waits_for_routes_not_only_for_established(monkeypatch) -> None:
    from transit_cli import local_check

    polls = iter([
        [Session("cr", "10.0.0.1", 64512, "Active", 0, 0, "dx")],
        [Session("cr", "10.0.0.1", 64512, "Established", 0, 1, "dx")],
        [Session("cr", "10.0.0.1", 64512, "Established", 1, 2, "dx")],
    ])
    monkeypatch.setattr(local_check, "read_sessions", lambda router: next(polls))
    monkeypatch.setattr(local_check.time, "sleep", lambda seconds: None)
    sessions = local_check.wait_sessions([{"ns": "x", "name": "cr"}], timeout=60)
    assert sessions[0].prefixes_received == 1
