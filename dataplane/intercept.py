"""Transparent interception: TCP and UDP from local networks to remote fabric CIDRs land on the agent.

Three kernel objects, all owned by the agent and removed when it stops:

- an nftables table (family ip, one transaction) whose prerouting chain at
  priority mangle (a) marks TCP and UDP packets that already have a
  transparent socket (the fast path for intercepted streams and UDP sessions,
  and the way replies reach sockets that deliver with the original source
  address) and (b) TPROXYs new TCP and UDP from `local` to `remote` to
  127.0.0.1:<port> (one port number, both protocols), keeping the original
  destination (the TCP listener reads it with getsockname(), the UDP socket
  with IP_RECVORIGDSTADDR). With ICMP interception (`tun` set, see
  `icmp_intercept.IcmpInterceptor`, which owns the TUN and its routing)
  a forward chain lets only echoes from `local` to `remote` be routed into
  the TUN (requests to carry, replies to echoes the agent delivered) and the
  agent's packets out of it, and drops anything else
  routed from `local` to `remote`, so nothing the fabric carries can bypass
  it as plain routing (and, when the agent had to switch forwarding on,
  everything else routed too);
- `ip rule fwmark <mark> lookup <table>`;
- `local 0.0.0.0/0 dev lo table <table>`, so marked packets are delivered locally.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Network

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.exceptions import NetlinkError

from dataplane.config import AgentConfig


_RTN_LOCAL = 2  # linux/rtnetlink.h: the type of our `local 0.0.0.0/0 dev lo` route


class KernelError(RuntimeError):
    """A kernel change was refused; the message carries the tool's own words."""


@dataclass(frozen=True)
class InterceptPlan:
    """What to intercept and where it goes: the desired state for one agent."""

    table: str
    local: tuple[IPv4Network, ...]
    remote: tuple[IPv4Network, ...]
    port: int
    fwmark: int
    route_table: int
    rule_priority: int
    tun: str | None = None

    @classmethod
    def from_config(cls, config: AgentConfig) -> InterceptPlan:
        """Derive the plan from an agent config."""
        return cls(
            table=config.intercept.nft_table,
            local=tuple(config.local_cidrs),
            remote=tuple(config.remote_cidrs()),
            port=config.listen.intercept_port,
            fwmark=config.intercept.fwmark,
            route_table=config.intercept.route_table,
            rule_priority=config.intercept.rule_priority,
            tun=config.intercept.icmp_tun,
        )


def _elements(networks: Iterable[IPv4Network]) -> str:
    items = ", ".join(str(net) for net in networks)
    return f" elements = {{ {items} }};" if items else ""


def render_nft(plan: InterceptPlan, *, forward_drop: bool = False) -> str:
    """The nft script that atomically (re)creates the interception table.

    `forward_drop`: the agent switched forwarding on for the ICMP TUN, so the
    forward chain drops everything that does not go into or come out of it.
    """
    mark = f"0x{plan.fwmark:x}"
    forward: list[str] = []
    if plan.tun:
        forward = [
            "  chain forward {",
            "    type filter hook forward priority filter; policy accept;",
            f'    iifname "{plan.tun}" ip saddr @remote ip daddr @local accept',
            f'    oifname "{plan.tun}" ip saddr @local ip daddr @remote icmp type {{ echo-request, echo-reply }} accept',
            f'    iifname "{plan.tun}" drop',
            f'    oifname "{plan.tun}" drop',
            "    ip saddr @local ip daddr @remote drop",
            *(["    drop"] if forward_drop else []),
            "  }",
        ]
    return "\n".join([
        f"table ip {plan.table} {{}}",
        f"delete table ip {plan.table}",
        f"table ip {plan.table} {{",
        f"  set local {{ type ipv4_addr; flags interval; auto-merge;{_elements(plan.local)} }}",
        f"  set remote {{ type ipv4_addr; flags interval; auto-merge;{_elements(plan.remote)} }}",
        "  chain prerouting {",
        "    type filter hook prerouting priority mangle; policy accept;",
        f"    meta l4proto {{ tcp, udp }} socket transparent 1 meta mark set {mark} accept",
        f"    ip saddr @local ip daddr @remote meta l4proto tcp tproxy to 127.0.0.1:{plan.port} meta mark set {mark} accept",
        f"    ip saddr @local ip daddr @remote meta l4proto udp tproxy to 127.0.0.1:{plan.port} meta mark set {mark} accept",
        "  }",
        *forward,
        "}",
        "",
    ])


def run_nft(script: str, *, netns: str | None = None) -> None:
    """Apply an nft script in one transaction; KernelError (nothing changed) if nft refuses it."""
    cmd = ["nft", "-f", "-"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    done = subprocess.run(cmd, input=script, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KernelError(f"nft refused the change: {done.stderr.strip()}")


@contextmanager
def iproute(netns: str | None) -> Iterator[IPRoute]:
    """A netlink socket in `netns` (or this namespace), closed on the way out."""
    ipr = NetNS(netns) if netns else IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _has_rule(ipr: IPRoute, plan: InterceptPlan) -> bool:
    for rule in ipr.get_rules(family=2):
        if rule.get_attr("FRA_FWMARK") == plan.fwmark and rule.get_attr("FRA_TABLE") == plan.route_table:
            return True
    return False


def _has_route(ipr: IPRoute, plan: InterceptPlan) -> bool:
    return bool(ipr.get_routes(family=2, table=plan.route_table, type="local", dst_len=0))


def check(plan: InterceptPlan, *, netns: str | None = None) -> None:
    """KernelError when `plan.route_table` holds routes the agent did not make (another user's table).

    Checked before anything changes, so a config that points at such a table
    is refused while the running interception keeps working.
    """
    try:
        with iproute(netns) as ipr:
            foreign = [route for route in ipr.get_routes(family=2, table=plan.route_table)
                       if route.get_attr("RTA_TABLE") == plan.route_table and not (route["type"] == _RTN_LOCAL and route["dst_len"] == 0)]
    except (NetlinkError, OSError) as exc:
        raise KernelError(f"reading route table {plan.route_table}: {exc}") from exc
    if foreign:
        raise KernelError(f"intercept.route_table {plan.route_table} already holds {len(foreign)} route(s) the agent did not make; choose a free table")


def apply(plan: InterceptPlan, *, netns: str | None = None, forward_drop: bool = False) -> None:
    """Create or update the interception objects (idempotent).

    All or nothing: if the kernel refuses a step (a netlink error of any kind,
    e.g. EEXIST because `route_table` already holds a default route), what
    this plan installed is removed again and KernelError names the step; the
    caller puts its previous plan back.
    """
    run_nft(render_nft(plan, forward_drop=forward_drop), netns=netns)
    step = "lo lookup"
    try:
        with iproute(netns) as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            if not _has_route(ipr, plan):
                step = f"ip route add local 0.0.0.0/0 dev lo table {plan.route_table}"
                ipr.route("add", dst="0.0.0.0/0", type="local", scope=254, oif=lo, table=plan.route_table)
            if not _has_rule(ipr, plan):
                step = f"ip rule add fwmark {plan.fwmark:#x} lookup {plan.route_table} priority {plan.rule_priority}"
                ipr.rule("add", fwmark=plan.fwmark, table=plan.route_table, priority=plan.rule_priority, family=2)
    except (NetlinkError, OSError, IndexError) as exc:
        try:
            remove(plan, netns=netns)
        except KernelError:
            pass  # the caller's rollback and /healthz report what is left
        raise KernelError(f"{step}: {exc}") from exc


def remove(plan: InterceptPlan, *, netns: str | None = None) -> None:
    """Remove every object `apply` made; missing ones are fine. KernelError if the kernel refuses."""
    run_nft(f"table ip {plan.table} {{}}\ndelete table ip {plan.table}\n", netns=netns)
    try:
        with iproute(netns) as ipr:
            while _has_rule(ipr, plan):
                ipr.rule("del", fwmark=plan.fwmark, table=plan.route_table, priority=plan.rule_priority, family=2)
            if _has_route(ipr, plan):
                lo = ipr.link_lookup(ifname="lo")[0]
                ipr.route("del", dst="0.0.0.0/0", type="local", scope=254, oif=lo, table=plan.route_table)
    except (NetlinkError, OSError, IndexError) as exc:
        raise KernelError(f"removing policy routing of table {plan.route_table}: {exc}") from exc
