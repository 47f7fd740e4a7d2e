"""Trust rules: what a stream header may claim given the identity that authenticated it."""
from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from dataplane.config import PeerConfig, parse_config
from dataplane.header import FLAG_END_TO_END, StreamHeader
from dataplane.trust import Trust

CONN, EDGEA, EDGEB, CONN2 = (f"spiffe://acme/{n}" for n in ("conn", "edgea", "edgeb", "conn2"))


def _trust(end_to_end: bool = True) -> Trust:
    return Trust.from_config(parse_config({
        "name": "edgeb", "role": "edge", "identity": EDGEB, "local_cidrs": ["172.18.40.0/24"], "end_to_end": end_to_end,
        "peers": [{"name": "edgea", "identity": EDGEA, "private_addr": "100.64.37.1", "cidrs": ["10.30.0.0/16"]}],
        "members": [
            {"identity": CONN, "cidrs": ["10.30.40.0/24"]},
            {"identity": CONN2, "cidrs": ["10.30.41.0/24", "10.30.42.0/24"]},
            {"identity": EDGEA},
            {"identity": EDGEB, "cidrs": ["172.18.40.0/24", "172.19.0.0/16"]},
        ],
        "tls": {"ca": "ca.pem", "cert": "node.pem", "key": "node.key"},
    }))


EDGEA_PEER = PeerConfig(name="edgea", identity=EDGEA, private_addr=IPv4Address("100.64.37.1"), cidrs=["10.30.0.0/16"])  # type: ignore[list-item]


def _header(src: str, identity: str, end_to_end: bool = True) -> StreamHeader:
    return StreamHeader(IPv4Address(src), IPv4Address("172.18.40.10"), 40000, 5432, identity, 1, flags=FLAG_END_TO_END if end_to_end else 0)


def test_an_originator_may_claim_only_sources_inside_its_own_prefixes() -> None:
    trust = _trust()
    assert trust.refusal(_header("10.30.40.10", CONN), CONN, None) is None
    assert trust.refusal(_header("10.30.41.10", CONN), CONN, None) == f"source 10.30.41.10 is outside the prefixes of {CONN}"


def test_an_identity_that_is_no_member_speaks_for_nothing() -> None:
    stranger = "spiffe://acme/stranger"
    assert _trust().refusal(_header("10.30.40.66", stranger), stranger, None) == f"source 10.30.40.66 is outside the prefixes of {stranger}"


def test_an_edge_without_native_networks_may_originate_nothing() -> None:
    assert _trust().refusal(_header("10.30.40.10", EDGEA), EDGEA, EDGEA_PEER) is not None


def test_an_end_to_end_header_must_name_the_authenticated_identity_even_from_a_peer() -> None:
    reason = _trust().refusal(_header("10.30.40.10", CONN), EDGEA, EDGEA_PEER)
    assert reason == f"header identity {CONN} is not the authenticated {EDGEA}"


@pytest.mark.parametrize(("agent_e2e", "header_e2e"), [(True, False), (False, True)])
def test_flags_that_contradict_the_agents_mode_are_refused(agent_e2e: bool, header_e2e: bool) -> None:
    reason = _trust(agent_e2e).refusal(_header("10.30.40.10", CONN, header_e2e), CONN, None)
    assert reason is not None and "header at a" in reason


def test_a_reload_judging_running_streams_can_skip_the_mode() -> None:
    assert _trust(True).refusal(_header("10.30.40.10", CONN, False), CONN, None, check_mode=False) is None


def test_a_hop_by_hop_relay_may_carry_an_originators_stream_from_behind_it() -> None:
    trust = _trust(False)
    assert trust.refusal(_header("10.30.41.10", CONN2, False), EDGEA, EDGEA_PEER) is None


def test_a_hop_by_hop_relay_cannot_carry_a_source_that_is_not_behind_it() -> None:
    trust = _trust(False)
    narrow = PeerConfig(name="edgea", identity=EDGEA, private_addr=IPv4Address("100.64.37.1"), cidrs=["10.30.40.0/24"])  # type: ignore[list-item]
    assert trust.refusal(_header("10.30.41.10", CONN2, False), EDGEA, narrow) == "source 10.30.41.10 is not behind relay edgea"


def test_a_non_peer_cannot_vouch_for_another_identity_even_hop_by_hop() -> None:
    stranger = "spiffe://acme/stranger"
    assert _trust(False).refusal(_header("10.30.40.10", CONN, False), stranger, None) == f"header identity {CONN} is not the authenticated {stranger}"


def test_the_deliverer_is_the_member_whose_prefixes_hold_the_destination() -> None:
    trust = _trust()
    assert trust.deliverer(IPv4Address("172.18.40.10")) == EDGEB
    assert trust.deliverer(IPv4Address("10.30.42.1")) == CONN2
    assert trust.deliverer(IPv4Address("192.0.2.1")) is None
