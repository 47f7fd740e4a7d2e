"""Interception plan and nft script: derived from the config, one atomic table replacement."""
from __future__ import annotations

from ipaddress import IPv4Network

from dataplane.config import parse_config
from dataplane.intercept import InterceptPlan, render_nft

CONFIG = {
    "name": "conn", "role": "connector", "identity": "spiffe://acme/conn",
    "local_cidrs": ["10.30.40.0/24"],
    "peers": [
        {"name": "edge-a", "identity": "spiffe://acme/edge-a", "private_addr": "10.250.37.1", "cidrs": ["172.18.40.0/24", "192.168.0.0/16"]},
    ],
    "tls": {"ca": "ca.pem", "cert": "n.pem", "key": "n.key"},
}

EXPECTED = """table ip transit_intercept {}
delete table ip transit_intercept
table ip transit_intercept {
  set local { type ipv4_addr; flags interval; auto-merge; elements = { 10.30.40.0/24 }; }
  set remote { type ipv4_addr; flags interval; auto-merge; elements = { 172.18.40.0/24, 192.168.0.0/16 }; }
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto { tcp, udp } socket transparent 1 meta mark set 0x4d43 accept
    ip saddr @local ip daddr @remote meta l4proto tcp tproxy to 127.0.0.1:7440 meta mark set 0x4d43 accept
    ip saddr @local ip daddr @remote meta l4proto udp tproxy to 127.0.0.1:7440 meta mark set 0x4d43 accept
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "transit-icmp" ip saddr @remote ip daddr @local accept
    oifname "transit-icmp" ip saddr @local ip daddr @remote icmp type { echo-request, echo-reply } accept
    iifname "transit-icmp" drop
    oifname "transit-icmp" drop
    ip saddr @local ip daddr @remote drop
  }
}
"""


def test_plan_follows_the_config() -> None:
    plan = InterceptPlan.from_config(parse_config(CONFIG))
    assert plan.local == (IPv4Network("10.30.40.0/24"),)
    assert plan.remote == (IPv4Network("172.18.40.0/24"), IPv4Network("192.168.0.0/16"))
    assert (plan.port, plan.fwmark, plan.route_table) == (7440, 0x4D43, 4643)


def test_script_replaces_the_table_in_one_transaction() -> None:
    assert render_nft(InterceptPlan.from_config(parse_config(CONFIG))) == EXPECTED


def test_empty_sets_have_no_elements_clause() -> None:
    plan = InterceptPlan.from_config(parse_config({**CONFIG, "local_cidrs": []}))
    assert "set local { type ipv4_addr; flags interval; auto-merge; }" in render_nft(plan)


def test_forward_chain_drops_the_rest_when_the_agent_enabled_forwarding() -> None:
    plan = InterceptPlan.from_config(parse_config(CONFIG))
    assert "    ip saddr @local ip daddr @remote drop\n    drop\n  }" in render_nft(plan, forward_drop=True)
    assert "chain forward" not in render_nft(InterceptPlan(**{**plan.__dict__, "tun": None}))
