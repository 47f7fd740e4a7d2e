"""Forget the conntrack entries of flows the agent has just reset (netlink, through pyroute2).

The filter table accepts packets of established connections without judging
them again (`ct state established,related accept`), so a flow a reload now
denies must leave conntrack as well as the agent: its next packet is then
new, and the kernel judges it against the new policy.
"""
from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from pyroute2 import Conntrack
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

FiveTuple = tuple[str, int, str, int, int]
"""(src, sport, dst, dport, proto) of a flow's original direction."""


def forget(flows: Iterable[FiveTuple]) -> int:
    """Delete the conntrack entry of each flow (ICMP: sport is the echo identifier); returns how many went.

    An entry already gone is not an error; any other refusal is raised as OSError.
    """
    removed = 0
    ct = Conntrack()
    try:
        for src, sport, dst, dport, proto in flows:
            if proto == socket.IPPROTO_ICMP:
                key = NFCTAttrTuple(saddr=src, daddr=dst, proto=proto, icmp_id=sport, icmp_type=8, icmp_code=0)
            else:
                key = NFCTAttrTuple(saddr=src, daddr=dst, proto=proto, sport=sport, dport=dport)
            try:
                ct.entry("del", tuple_orig=key)
            except NetlinkError as exc:
                if exc.code == errno.ENOENT:
                    continue
                raise OSError(exc.code, f"conntrack: cannot delete {src}:{sport} -> {dst}:{dport}/{proto}: {exc}") from exc
            removed += 1
    finally:
        ct.close()
    return removed
