"""AgentConfig's `geneve` section: defaults, field paths for bad values, and the per-network source address."""
from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest

from dataplane.config import ConfigError, parse_config
from tests.unit.dataplane.test_config import _doc

GENEVE: dict[str, Any] = {
    "listen": {"host": "10.30.41.20", "port": 6081},
    "gwlb_cidrs": ["10.30.41.0/28"],
    "networks": [{"cidrs": ["10.30.40.0/25"]}, {"cidrs": ["10.30.40.128/25"], "deliver_from": "client"}],
}


def _geneve(**changes: Any) -> dict[str, Any]:
    return _doc(geneve={**GENEVE, **changes})


def _problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    return caught.value.problems


def test_geneve_defaults_carry_the_load_balancers_8500_byte_mtu():
    geneve = parse_config(_geneve()).geneve
    assert geneve is not None
    assert (geneve.tun, geneve.mtu, geneve.flow_limit, geneve.flow_idle) == ("transit-gnv", 8500, 65536, 350)
    assert geneve.networks[0].deliver_from == "node"


def test_delivery_source_follows_the_network_the_destination_is_in():
    config = parse_config(_geneve())
    assert not config.preserve_source_for(IPv4Address("10.30.40.10"))  # deliver_from node
    assert config.preserve_source_for(IPv4Address("10.30.40.200"))  # deliver_from client
    assert config.preserve_source_for(IPv4Address("10.99.0.1"))  # not behind the load balancer
    assert not parse_config({**_geneve(), "preserve_source": False}).preserve_source_for(IPv4Address("10.30.40.200"))


@pytest.mark.parametrize(("changes", "expected"), [
    ({"mtu": 9001}, "geneve.mtu: Input should be less than or equal to 8500"),
    ({"tun": "a-very-long-tun-name"}, "geneve.tun: String should match pattern"),
    ({"networks": []}, "geneve.networks: List should have at least 1 item"),
    ({"networks": [{"cidrs": ["10.30.40.0/24"], "deliver_from": "gwlb"}]}, "geneve.networks[0].deliver_from: Input should be 'node' or 'client'"),
    ({"gwlb_cidrs": []}, "geneve.gwlb_cidrs: List should have at least 1 item"),
    ({"listen": {"host": "10.30.41.20"}}, "geneve.listen.port: Field required"),
    ({"flow_limit": 10}, "geneve.flow_limit: Input should be greater than or equal to 16"),
])
def test_bad_geneve_fields_are_refused_with_their_path(changes: dict[str, Any], expected: str):
    assert any(problem.startswith(expected) for problem in _problems(_geneve(**changes))), _problems(_geneve(**changes))


@pytest.mark.parametrize(("changes", "expected"), [
    ({"networks": [{"cidrs": ["10.99.0.0/24"]}]}, "geneve.networks[0].cidrs[0] 10.99.0.0/24 is not inside local_cidrs"),
    ({"route_table": 4644}, "geneve.route_table 4644 is already used by intercept"),
    ({"fwmark": 0x4D43}, "geneve.fwmark 0x4d43 equals intercept.fwmark"),
    ({"tun": "transit-icmp"}, "geneve.tun transit-icmp is intercept.icmp_tun"),
])
def test_geneve_settings_that_clash_with_the_rest_are_refused_naming_the_field(changes: dict[str, Any], expected: str):
    assert any(expected in problem for problem in _problems(_geneve(**changes)))
