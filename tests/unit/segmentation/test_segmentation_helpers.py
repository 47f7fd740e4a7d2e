"""The helpers every compiler shares: CIDR containment, port items, group books."""
from __future__ import annotations

from ipaddress import IPv4Network as Net

from components.segmentation.cidrs import overlaps, within
from components.segmentation.groups import GroupBook, asg_name, tag_name
from components.segmentation.ports import covers_port, port_items, port_range


def test_within_keeps_the_parts_of_a_rule_end_inside_the_scope() -> None:
    scope = [Net("10.0.0.0/24"), Net("10.2.0.0/16")]
    assert within([Net("10.0.0.16/28"), Net("10.1.0.0/24")], scope) == [Net("10.0.0.16/28")]
    assert within([Net("10.0.0.0/8")], scope) == scope
    assert within([Net("10.0.0.0/24")], scope) == [Net("10.0.0.0/24")]
    assert within([Net("192.168.0.0/16")], scope) == []


def test_overlaps_is_true_only_when_an_address_is_shared() -> None:
    assert overlaps([Net("10.0.0.0/8")], [Net("10.9.9.0/24")])
    assert not overlaps([Net("10.0.0.0/24")], [Net("10.0.1.0/24")])


def test_port_items_and_ranges_round_trip_and_star_is_every_port() -> None:
    assert port_items([(22, 22), (8000, 8080)]) == ["22", "8000-8080"]
    assert [port_range(item) for item in ["22", "8000-8080", 443]] == [(22, 22), (8000, 8080), (443, 443)]
    assert port_range("*") == (0, 65535)


def test_no_ranges_cover_every_port_and_a_portless_flow_only_then() -> None:
    assert covers_port((), 22) and covers_port((), None)
    assert covers_port(((20, 22),), 22) and not covers_port(((20, 22),), 23)
    assert not covers_port(((20, 22),), None)


def test_a_group_named_twice_in_one_network_merges_its_members() -> None:
    book = GroupBook()
    assert book.add(asg_name("az-app", "db"), "az-app", [Net("172.18.40.10/32")]) == "asg-az-app-db"
    book.add(asg_name("az-app", "db"), "az-app", [Net("172.18.40.11/32")])
    book.add(tag_name("gcp-app", "db"), "gcp-app", [Net("10.40.0.16/28")])
    [azure, gcp] = book.groups()
    assert (azure.name, azure.members) == ("asg-az-app-db", [Net("172.18.40.10/31")])
    assert (gcp.name, gcp.network) == ("transit-db", "gcp-app")
