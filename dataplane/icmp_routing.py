"""The policy routing that sends intercepted ICMP echo into the agent's TUN: desired state and kernel calls.

TPROXY cannot take ICMP, so ICMP from each local CIDR to each remote CIDR is
routed into a TUN the agent owns (`icmp_intercept.IcmpInterceptor`):
`ip rule from L to R ipproto icmp lookup <icmp_route_table>`, whose default
route is the TUN. `IcmpPlan` is that desired state; the functions here bring
the kernel to it and back, each idempotent: a reload moves from one plan to
another without a moment with neither (`update_rules`), a refused addition
takes back what it added, and removal also finds what a killed agent left
under the same table and priority.
"""
from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dataplane.header import ICMP
from dataplane.intercept import KernelError, iproute


@dataclass(frozen=True)
class IcmpPlan:
    """The kernel objects of ICMP interception: the desired state."""

    tun: str
    route_table: int
    rule_priority: int
    local: tuple[IPv4Network, ...]
    remote: tuple[IPv4Network, ...]

    def pairs(self) -> list[tuple[IPv4Network, IPv4Network]]:
        """(local, remote) CIDR pairs, one policy rule each."""
        return [(src, dst) for src in self.local for dst in self.remote]


# Errors that mean "already gone" when removing a rule or route.
_MISSING = (errno.ENOENT, errno.ESRCH)


def _describe(plan: IcmpPlan, src: IPv4Network, dst: IPv4Network) -> str:
    return f"ip rule from {src} to {dst} ipproto icmp lookup {plan.route_table} priority {plan.rule_priority}"


def _kernel_refused(what: str, exc: NetlinkError) -> KernelError:
    return KernelError(f"the kernel refused {what}: {os.strerror(exc.code)} (errno {exc.code})")


def _rule_fields(plan: IcmpPlan, src: IPv4Network, dst: IPv4Network) -> dict[str, object]:
    return {
        "family": socket.AF_INET, "src": str(src.network_address), "src_len": src.prefixlen,
        "dst": str(dst.network_address), "dst_len": dst.prefixlen, "ip_proto": ICMP,
        "table": plan.route_table, "priority": plan.rule_priority,
    }


def installed_rules(plan: IcmpPlan, *, netns: str | None = None) -> set[tuple[IPv4Network, IPv4Network]]:
    """(local, remote) pairs of the ICMP rules in the kernel under the plan's table and priority."""
    with iproute(netns) as ipr:
        return _installed(ipr, plan)


def _installed(ipr: IPRoute, plan: IcmpPlan) -> set[tuple[IPv4Network, IPv4Network]]:
    found: set[tuple[IPv4Network, IPv4Network]] = set()
    for rule in ipr.get_rules(family=socket.AF_INET):
        if (rule.get_attr("FRA_PRIORITY"), rule.get_attr("FRA_TABLE"), rule.get_attr("FRA_IP_PROTO")) != (
            plan.rule_priority, plan.route_table, ICMP
        ):
            continue
        src = IPv4Network(f"{rule.get_attr('FRA_SRC') or '0.0.0.0'}/{rule['src_len']}")
        dst = IPv4Network(f"{rule.get_attr('FRA_DST') or '0.0.0.0'}/{rule['dst_len']}")
        found.add((src, dst))
    return found


def _add_rules(ipr: IPRoute, plan: IcmpPlan, pairs: Iterable[tuple[IPv4Network, IPv4Network]]) -> None:
    """Add each rule (one already there is fine); on a refusal remove the ones added here and raise KernelError."""
    added: list[tuple[IPv4Network, IPv4Network]] = []
    for src, dst in pairs:
        try:
            ipr.rule("add", **_rule_fields(plan, src, dst))
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                continue
            _del_rules(ipr, plan, added)
            raise _kernel_refused(_describe(plan, src, dst), exc) from exc
        added.append((src, dst))


def _del_rules(ipr: IPRoute, plan: IcmpPlan, pairs: Iterable[tuple[IPv4Network, IPv4Network]]) -> list[str]:
    """Delete each rule (a missing one is fine); what the kernel refused otherwise, described."""
    refused: list[str] = []
    for src, dst in pairs:
        try:
            ipr.rule("del", **_rule_fields(plan, src, dst))
        except NetlinkError as exc:
            if exc.code not in _MISSING:
                refused.append(str(_kernel_refused(_describe(plan, src, dst), exc)))
    return refused


def install_rules(plan: IcmpPlan, *, netns: str | None = None) -> None:
    """Bring the TUN up, route the table's default into it, add the plan's rules (idempotent).

    KernelError names what the kernel refused; rules added by this call are
    removed again first.
    """
    with iproute(netns) as ipr:
        links = ipr.link_lookup(ifname=plan.tun)
        if not links:
            raise KernelError(f"no device {plan.tun} for the ICMP route")
        try:
            ipr.link("set", index=links[0], state="up")
        except NetlinkError as exc:
            raise _kernel_refused(f"ip link set dev {plan.tun} up", exc) from exc
        try:
            ipr.route("replace", dst="0.0.0.0/0", oif=links[0], table=plan.route_table)
        except NetlinkError as exc:
            raise _kernel_refused(f"ip route replace default dev {plan.tun} table {plan.route_table}", exc) from exc
        _add_rules(ipr, plan, plan.pairs())


def update_rules(old: IcmpPlan, new: IcmpPlan, *, netns: str | None = None) -> list[str]:
    """Move the rules from `old` to `new`: add what is new, then remove what is gone.

    KernelError if the kernel refuses an addition: the rules added are taken
    back and `old`'s stay, so the running state is unchanged. A stale rule
    the kernel refuses to remove does not fail the move: the refusals are
    returned, described.
    """
    with iproute(netns) as ipr:
        present = _installed(ipr, new)
        _add_rules(ipr, new, [pair for pair in new.pairs() if pair not in present])
        same_place = (old.route_table, old.rule_priority) == (new.route_table, new.rule_priority)
        wanted = set(new.pairs()) if same_place else set()
        return _del_rules(ipr, old, [pair for pair in old.pairs() if pair not in wanted])


def remove_rules(plan: IcmpPlan, *, netns: str | None = None) -> None:
    """Remove the plan's policy rules and every route in its table; missing ones are fine.

    KernelError (after trying everything) if the kernel refused to remove one.
    """
    with iproute(netns) as ipr:
        refused = _del_rules(ipr, plan, {*plan.pairs(), *_installed(ipr, plan)})  # with what a killed agent left
        for route in ipr.get_routes(family=socket.AF_INET, table=plan.route_table):
            if route.get_attr("RTA_TABLE") != plan.route_table:
                continue
            dst = f"{route.get_attr('RTA_DST') or '0.0.0.0'}/{route['dst_len']}"
            try:
                ipr.route("del", dst=dst, table=plan.route_table, type=route["type"])
            except NetlinkError as exc:
                if exc.code not in _MISSING:
                    refused.append(str(_kernel_refused(f"ip route del {dst} table {plan.route_table}", exc)))
    if refused:
        raise KernelError("; ".join(refused))
