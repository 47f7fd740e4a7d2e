"""AgentConfig: valid documents load, bad ones are refused with the field path."""
from __future__ import annotations

import json
import random
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from dataplane.config import AgentConfig, ConfigError, load_config, parse_config


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "edge-a",
        "role": "edge",
        "identity": "spiffe://acme/edge-a",
        "local_cidrs": ["10.30.40.0/24"],
        "peers": [
            {"name": "edge-b", "identity": "spiffe://acme/edge-b", "private_addr": "100.64.0.2",
             "public_addr": "198.51.100.2", "cidrs": ["172.18.40.0/24"]},
        ],
        "filter": {"default": "deny", "rules": [{"name": "web", "action": "permit", "proto": "tcp", "ports": [443]}]},
        "tls": {"ca": "/etc/transit/ca.pem", "cert": "/etc/transit/node.pem", "key": "/etc/transit/node.key"},
    }
    doc.update(changes)
    return doc


def test_valid_document_loads_with_defaults() -> None:
    config = parse_config(_doc())
    assert isinstance(config, AgentConfig)
    assert config.listen.tunnel.port == 7443
    assert config.timeouts.idle == 300
    assert [str(c) for c in config.remote_cidrs()] == ["172.18.40.0/24"]
    assert config.peer("edge-b").public_addr is not None
    assert config.filter.evaluate("10.30.40.1", "172.18.40.5", "tcp", 443) == ("permit", "web")


def _problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    return info.value.problems


def test_bad_peer_address_names_the_field() -> None:
    doc = _doc()
    doc["peers"][0]["private_addr"] = "not-an-ip"
    problems = _problems(doc)
    assert any(p.startswith("peers[0].private_addr:") for p in problems), problems


def test_bad_filter_rule_names_the_field() -> None:
    doc = _doc()
    doc["filter"]["rules"][0]["ports"] = [70000]
    problems = _problems(doc)
    assert any(p.startswith("filter.rules[0].ports") for p in problems), problems


def test_every_problem_is_listed_at_once() -> None:
    problems = _problems(_doc(role="router", identity="https://acme/x", unknown=1))
    paths = {p.split(":")[0] for p in problems}
    assert {"role", "identity", "unknown"} <= paths


def test_overlapping_peer_cidrs_refused() -> None:
    doc = _doc()
    doc["peers"].append({"name": "edge-c", "identity": "spiffe://acme/edge-c", "private_addr": "100.64.0.3", "cidrs": ["172.18.0.0/16"]})
    problems = _problems(doc)
    assert any("overlaps" in p for p in problems), problems


def test_peer_cidr_overlapping_local_refused() -> None:
    doc = _doc(local_cidrs=["172.18.40.0/25"])
    assert any("overlaps local_cidrs" in p for p in _problems(doc))


def test_own_identity_as_peer_refused() -> None:
    doc = _doc()
    doc["peers"][0]["identity"] = "spiffe://acme/edge-a"
    assert any("own identity" in p for p in _problems(doc))


def test_load_config_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.problems[0].startswith("(file): cannot read")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "not JSON" in info.value.problems[0]


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(_doc(log_level="info")))
    assert load_config(path, environ={"TRANSIT_AGENT_LOG_LEVEL": "debug"}).log_level == "debug"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"TRANSIT_AGENT_LOG_LEVEL": "loud"})
    assert info.value.problems[0].startswith("log_level:")


def test_every_field_is_documented() -> None:
    def walk(model: type) -> None:
        for name, info in model.model_fields.items():  # type: ignore[attr-defined]
            assert info.description, f"{model.__name__}.{name} has no description"
            annotation = info.annotation
            for candidate in getattr(annotation, "__args__", (annotation,)):
                if isinstance(candidate, type) and hasattr(candidate, "model_fields") and candidate.__module__ == "dataplane.config":
                    walk(candidate)
    walk(AgentConfig)


def test_bad_node_names_and_peer_identity_name_their_fields() -> None:
    doc = _doc(name="Edge_A")
    doc["peers"][0].update(name="edge b", identity="edge-b")
    paths = {p.split(":")[0] for p in _problems(doc)}
    assert {"name", "peers[0].name", "peers[0].identity"} <= paths


def test_datagram_idle_and_icmp_interception_settings_are_validated() -> None:
    config = parse_config(_doc())
    assert config.timeouts.datagram_idle == 30.0
    assert (config.intercept.icmp_tun, config.intercept.icmp_route_table) == ("transit-icmp", 4644)
    assert _problems(_doc(timeouts={"datagram_idle": 0}))[0].startswith("timeouts.datagram_idle:")
    assert _problems(_doc(timeouts={"datagram_idle": 7200}))[0].startswith("timeouts.datagram_idle:")
    assert _problems(_doc(intercept={"icmp_tun": "a-name-longer-than-15"}))[0].startswith("intercept.icmp_tun:")
    assert "icmp_route_table must differ from route_table" in _problems(_doc(intercept={"icmp_route_table": 4643}))[0]


MEMBERS = [
    {"identity": "spiffe://acme/edge-a", "cidrs": ["10.30.40.0/24"]},
    {"identity": "spiffe://acme/edge-b", "cidrs": ["172.18.40.0/24"]},
]


def test_members_and_denylist_load_with_serials_normalised() -> None:
    config = parse_config(_doc(members=MEMBERS, denylist={"identities": ["spiffe://acme/old"], "serials": ["0a:1B:ff", "00ff"]}))
    assert [m.identity for m in config.members] == ["spiffe://acme/edge-a", "spiffe://acme/edge-b"]
    assert config.denylist.serials == ["A1BFF", "FF"]


def test_overlapping_member_prefixes_are_refused_with_their_field_path() -> None:
    doc = _doc(members=[*MEMBERS, {"identity": "spiffe://acme/conn", "cidrs": ["172.18.0.0/16"]}])
    assert _problems(doc) == ["members[2].cidrs: 172.18.0.0/16 overlaps 172.18.40.0/24 of members[1] (each prefix has one owner)"]


def test_member_overlaps_are_found_whatever_their_order_or_nesting() -> None:
    """The neighbour check after sorting finds exactly the overlaps a pairwise comparison finds."""
    rng = random.Random(7)
    for _ in range(300):
        cidrs = {IPv4Network((rng.choice([0x0A000000, 0x0A000100, 0x0A010000]) + rng.randrange(0, 512) * 16, rng.randint(16, 28)), strict=False)
                 for _ in range(rng.randint(2, 6))}
        listed = [str(c) for c in cidrs]
        rng.shuffle(listed)
        members = [{"identity": "spiffe://acme/edge-a", "cidrs": ["10.30.40.0/24"]}]
        members += [{"identity": f"spiffe://acme/n{i}", "cidrs": [c]} for i, c in enumerate(listed)]
        pairwise = any(IPv4Network(a).overlaps(IPv4Network(b)) for i, a in enumerate(listed) for b in listed[i + 1:])
        try:
            parse_config(_doc(members=members))
            problems: list[str] = []
        except ConfigError as refused:
            problems = refused.problems
        assert any("one owner" in p for p in problems) == pairwise, (listed, problems)


def test_a_member_listed_twice_is_refused() -> None:
    doc = _doc(members=[*MEMBERS, {"identity": "spiffe://acme/edge-a"}])
    assert _problems(doc) == ["members[2].identity: spiffe://acme/edge-a is listed by members[0] already"]


def test_local_cidrs_must_be_among_this_nodes_own_prefixes() -> None:
    doc = _doc(members=[MEMBERS[1]])
    assert _problems(doc) == ["members: local_cidrs 10.30.40.0/24 is not among this node's prefixes; add it to the entry of spiffe://acme/edge-a"]


def test_a_node_cannot_denylist_itself() -> None:
    problems = _problems(_doc(denylist={"identities": ["spiffe://acme/edge-a"]}))
    assert problems == ["denylist.identities[0]: this node's own identity cannot be denied (replace its certificate instead)"]


@pytest.mark.parametrize("serial", ["", "xyz", "0" * 41])
def test_a_serial_that_is_not_hex_is_refused_with_its_path(serial: str) -> None:
    problems = _problems(_doc(denylist={"serials": [serial]}))
    assert len(problems) == 1 and problems[0].startswith("denylist.serials[0]: must be a certificate serial in hex"), problems
