"""The walk that stateful, ordered cloud firewalls share (Azure NSGs, GCP VPC firewalls).

A flow leaves through its source scope's outbound rules and enters through
its destination scope's inbound rules; in each, the first matching rule
decides, and the flow passes only when every scope on its path allows it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import Any


def decide_on_path(
    scopes: Sequence[tuple[Any, dict[str, list[Any]]]],
    src_ip: str,
    dst_ip: str,
    proto: int,
    port: int | None,
    *,
    outbound: str,
    inbound: str,
    denies: Callable[[Any], bool],
) -> tuple[str, str] | None:
    """(permit|deny, deciding scope/direction/rule), or None when no scope is on the flow's path.

    `scopes` pairs each scope (with `.name` and `.cidrs`) with its compiled rules
    per direction, in evaluation order; each compiled rule has `.matches(...)`
    and the source `.rule` (with `.direction` and `.name`).
    """
    src, dst = IPv4Address(src_ip), IPv4Address(dst_ip)
    on_path = [(scope, rules[outbound]) for scope, rules in scopes if any(src in net for net in scope.cidrs)]
    on_path += [(scope, rules[inbound]) for scope, rules in scopes if any(dst in net for net in scope.cidrs)]
    if not on_path:
        return None
    reasons = []
    for scope, rules in on_path:
        rule = next(r.rule for r in rules if r.matches(src, dst, proto, port))
        reasons.append(f"{scope.name}/{rule.direction.lower()}/{rule.name}")
        if denies(rule):
            return "deny", reasons[-1]
    return "permit", ", ".join(reasons)
