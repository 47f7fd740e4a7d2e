"""The GENEVE flow table: replies find their flow, the table is bounded, and old flows age out."""
from __future__ import annotations

from dataplane.geneve.flows import FlowTable

KEY = (6, 1, 40000, 2, 5432)


def test_a_reply_finds_the_node_and_header_its_flow_came_with():
    table = FlowTable(limit=4, idle=10)
    assert table.learn(KEY, "10.30.41.5", memoryview(b"header-1"), now=0)
    entry = table.lookup(KEY, now=1)
    assert entry is not None and (entry.gwlb, entry.header) == ("10.30.41.5", b"header-1")
    assert table.lookup((6, 1, 40001, 2, 5432), now=1) is None


def test_a_new_cookie_or_node_for_a_known_flow_replaces_the_old_one():
    table = FlowTable(limit=4, idle=10)
    table.learn(KEY, "10.30.41.5", b"header-1", now=0)
    table.learn(KEY, "10.30.41.6", b"header-2", now=1)
    entry = table.lookup(KEY, now=2)
    assert entry is not None and (entry.gwlb, entry.header) == ("10.30.41.6", b"header-2")


def test_a_full_table_refuses_new_flows_and_keeps_the_ones_it_carries():
    table = FlowTable(limit=2, idle=10)
    assert table.learn((6, 1, 1, 2, 2), "a", b"h", now=0)
    assert table.learn((6, 1, 3, 2, 2), "a", b"h", now=0)
    assert not table.learn((6, 1, 5, 2, 2), "a", b"h", now=5)
    assert len(table) == 2 and table.lookup((6, 1, 1, 2, 2), now=5) is not None


def test_a_full_table_makes_room_from_expired_flows():
    table = FlowTable(limit=2, idle=10)
    table.learn((6, 1, 1, 2, 2), "a", b"h", now=0)
    table.learn((6, 1, 3, 2, 2), "a", b"h", now=8)
    assert table.learn((6, 1, 5, 2, 2), "a", b"h", now=12)  # the first one idled out
    assert table.lookup((6, 1, 1, 2, 2), now=12) is None and len(table) == 2


def test_replies_keep_a_flow_alive_and_idle_flows_expire():
    table = FlowTable(limit=8, idle=10)
    table.learn((6, 1, 1, 2, 2), "a", b"h", now=0)
    table.learn((6, 1, 3, 2, 2), "a", b"h", now=0)
    table.lookup((6, 1, 1, 2, 2), now=9)  # a reply went out
    assert table.expire(now=15) == 1
    assert table.lookup((6, 1, 1, 2, 2), now=15) is not None
