"""The GENEVE gateway: the load balancer's packets into the kernel through a TUN, a flow's replies back to it.

In: a UDP socket on the node's address and port 6081 takes what the Gateway
Load Balancer sends, only from `gwlb_cidrs`. Each packet is validated
(`packet.parse`), its flow learned (`flows.FlowTable`: the load balancer
node and the GENEVE header with its options), and the inner IPv4 packet is
written into the TUN. From there the kernel treats it like a packet from
the workload's own link: the interception table TPROXYs TCP and UDP to the
agent, the filter table judges it, ICMP echo follows the ICMP rules into
the ICMP TUN. Nothing else is routed out of the TUN (the table's forward chain).

Out: the nftables table marks every connection that entered through the
TUN (conntrack mark `fwmark`) and gives the same packet mark to its
reply-direction packets (from the agent's transparent sockets at output,
from the ICMP TUN at prerouting, and the kernel's resets and ICMP errors,
which carry the connection's mark), and `ip rule fwmark <mark> lookup
<route_table>` routes them into the TUN. The reader takes them there, finds
the flow (a packet of a flow the load balancer never delivered is dropped
and counted), and sends `header + packet` back to that load balancer node's
port 6081 from the node's own 6081: the outer addresses swapped, the GENEVE
header and options exactly as they came.

Per packet the readers use one preallocated buffer each, read in batches
until the descriptor would block, parse in place and send with
scatter-gather (`sendmsg([header, packet])`), so the only per-packet objects
are the parse result and the flow key. Every drop is counted by reason
(`counts()`), and a bad packet never stops a reader.
"""
from __future__ import annotations

import logging
import os
import select
import socket
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from ipaddress import IPv4Network

from pyroute2.netlink.exceptions import NetlinkError

from dataplane.config import GeneveSettings
from dataplane.datagram_intercept import open_tun
from dataplane.geneve.flows import FlowTable
from dataplane.geneve.packet import GENEVE_PORT, Malformed, flow_key, parse
from dataplane.intercept import KernelError, iproute, run_nft
from dataplane.logfmt import event

log = logging.getLogger("dataplane.geneve")

READ_BATCH = 256  # packets per wake-up before looking at the stop flag and the clock
POLL_MS = 500
BUFFER = 65536  # a UDP datagram can be no larger: nothing is ever truncated silently
SOCKET_BUFFER = 8 * 1024 * 1024  # bursts of 8,568-byte datagrams from the load balancer
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # asm-generic/socket.h: past net.core.*mem_max (CAP_NET_ADMIN)
TUN_QUEUE = 4096  # packets queued towards the reader: a burst of replies must not be tail-dropped at 500
EXPIRE_EVERY = 1.0  # seconds between flow-table sweeps
IFF_UP, IFF_RUNNING = 0x1, 0x40
# The kernel's reverse-path check (rp_filter, which the agent sets to loose) refuses every packet from a device
# without an IPv4 address; this one, host scope, only gives the TUN one (gwlbtun switches rp_filter off instead).
TUN_ADDRESS = "169.254.60.81"
_ADDR = struct.Struct("!I")


@dataclass(frozen=True)
class GenevePlan:
    """The kernel objects of the gateway: the desired state."""

    tun: str
    mtu: int
    fwmark: int
    route_table: int
    rule_priority: int
    nft_table: str
    icmp_tun: str | None  # echo requests go on from the TUN into the ICMP TUN, replies come back

    @classmethod
    def from_settings(cls, settings: GeneveSettings, icmp_tun: str | None) -> GenevePlan:
        """The plan for a config's `geneve` section."""
        return cls(settings.tun, settings.mtu, settings.fwmark, settings.route_table, settings.rule_priority, settings.nft_table, icmp_tun)


def render_nft(plan: GenevePlan) -> str:
    """The nft script that atomically (re)creates the gateway's table."""
    mark = f"0x{plan.fwmark:x}"
    tun = f'"{plan.tun}"'
    if plan.icmp_tun:
        icmp = f'"{plan.icmp_tun}"'
        forward = [f"    iifname {tun} oifname != {icmp} drop", f"    oifname {tun} iifname != {icmp} drop"]
    else:
        forward = [f"    iifname {tun} drop", f"    oifname {tun} drop"]
    return "\n".join([
        f"table ip {plan.nft_table} {{}}",
        f"delete table ip {plan.nft_table}",
        f"table ip {plan.nft_table} {{",
        "  chain prerouting {",
        "    type filter hook prerouting priority mangle - 10; policy accept;",
        f"    iifname {tun} ct mark set {mark}",
        f"    ct direction reply ct mark {mark} meta mark set {mark}",
        "  }",
        "  chain output {",
        "    type route hook output priority mangle - 10; policy accept;",
        f"    ct direction reply ct mark {mark} meta mark set {mark}",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter - 10; policy accept;",
        *forward,
        "  }",
        "}",
        "",
    ])


def install(plan: GenevePlan, *, netns: str | None = None) -> None:
    """Bring the TUN up at its MTU, route the table's default into it, add the fwmark rule, load the table."""
    with iproute(netns) as ipr:
        links = ipr.link_lookup(ifname=plan.tun)
        if not links:
            raise KernelError(f"no device {plan.tun} for GENEVE")
        try:
            ipr.link("set", index=links[0], mtu=plan.mtu, txqlen=TUN_QUEUE, state="up")
            if not ipr.get_addr(index=links[0], address=TUN_ADDRESS):
                ipr.addr("add", index=links[0], address=TUN_ADDRESS, prefixlen=32, scope=254)
            ipr.route("replace", dst="0.0.0.0/0", oif=links[0], table=plan.route_table)
            if not _has_rule(ipr, plan):
                ipr.rule("add", fwmark=plan.fwmark, table=plan.route_table, priority=plan.rule_priority, family=socket.AF_INET)
        except NetlinkError as exc:
            raise KernelError(f"the kernel refused the GENEVE TUN's link, route or rule: {os.strerror(exc.code)}") from exc
    run_nft(render_nft(plan), netns=netns)


def remove(plan: GenevePlan, *, netns: str | None = None) -> None:
    """Remove the table, the rule and the route (the TUN goes when its descriptor closes); missing ones are fine."""
    run_nft(f"table ip {plan.nft_table} {{}}\ndelete table ip {plan.nft_table}\n", netns=netns)
    with iproute(netns) as ipr:
        while _has_rule(ipr, plan):
            ipr.rule("del", fwmark=plan.fwmark, table=plan.route_table, priority=plan.rule_priority, family=socket.AF_INET)
        for route in ipr.get_routes(family=socket.AF_INET, table=plan.route_table):
            if route.get_attr("RTA_TABLE") == plan.route_table:
                try:
                    ipr.route("del", dst=f"{route.get_attr('RTA_DST') or '0.0.0.0'}/{route['dst_len']}", table=plan.route_table)
                except NetlinkError:
                    pass


def _has_rule(ipr: object, plan: GenevePlan) -> bool:
    for rule in ipr.get_rules(family=socket.AF_INET):  # type: ignore[attr-defined]
        if rule.get_attr("FRA_FWMARK") == plan.fwmark and rule.get_attr("FRA_TABLE") == plan.route_table:
            return True
    return False


def set_buffers(sock: socket.socket, size: int) -> None:
    """Receive and send buffers of `size` bytes, past the sysctl limits when the process may (CAP_NET_ADMIN)."""
    for forced, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, size)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)


class _Sources:
    """Which outer source addresses may send GENEVE: the load balancer's subnets, as integer (network, mask) pairs."""

    def __init__(self, cidrs: list[IPv4Network]) -> None:
        self._nets = tuple((int(net.network_address), int(net.netmask)) for net in cidrs)

    def allowed(self, address: str) -> bool:
        try:
            value = _ADDR.unpack(socket.inet_aton(address))[0]
        except OSError:
            return False
        return any(value & mask == net for net, mask in self._nets)


class GeneveGateway:
    """The UDP listener, the TUN, the flow table and the two reader threads."""

    def __init__(self, settings: GeneveSettings, *, icmp_tun: str | None) -> None:
        self.settings = settings
        self.plan = GenevePlan.from_settings(settings, icmp_tun)
        self.flows = FlowTable(limit=settings.flow_limit, idle=settings.flow_idle)
        self._sources = _Sources(settings.gwlb_cidrs)
        self._inbound: defaultdict[str, int] = defaultdict(int)  # written by the GENEVE reader only
        self._outbound: defaultdict[str, int] = defaultdict(int)  # written by the TUN reader only
        self._stopped = threading.Event()
        self._sock: socket.socket | None = None
        self._fd = -1
        self._threads: list[threading.Thread] = []
        self._installed = False

    # ---- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Create the TUN, install routing and the table, bind 6081, start reading; undone on failure."""
        try:
            self._fd = open_tun(self.plan.tun)
            remove(self.plan)  # whatever a killed agent left under the same table and mark
            install(self.plan)
            self._installed = True
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock = sock
            set_buffers(sock, SOCKET_BUFFER)
            sock.bind((str(self.settings.listen.host), self.settings.listen.port))
            sock.setblocking(False)
        except BaseException:
            self.stop()
            raise
        self._threads = [
            threading.Thread(target=self._guard, args=(self._from_gwlb,), name="geneve-in", daemon=True),
            threading.Thread(target=self._guard, args=(self._to_gwlb,), name="geneve-out", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        event(log, "listener.start", listener="geneve", addr=f"{self.settings.listen.host}:{self.settings.listen.port}", tun=self.plan.tun, mtu=self.plan.mtu)

    def stop(self) -> None:
        """Stop reading, close the socket and the TUN (the kernel removes the device), remove the routing and table."""
        self._stopped.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=POLL_MS / 1000 * 2 + 1)
        self._threads = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._installed:
            try:
                remove(self.plan)
            except KernelError as exc:
                event(log, "geneve.cleanup_failed", error=str(exc), level=logging.WARNING)
            self._installed = False
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # ---- health and counts -------------------------------------------------

    def check(self) -> dict[str, object]:
        """{ok, problem}: the listener and both readers run and the TUN is up and has its carrier."""
        if self._sock is None or self._fd < 0:
            return {"ok": False, "problem": "not started"}
        dead = [thread.name for thread in self._threads if not thread.is_alive()]
        if dead:
            return {"ok": False, "problem": f"reader stopped: {', '.join(dead)}"}
        with iproute(None) as ipr:
            links = ipr.get_links(ifname=self.plan.tun)
        if not links:
            return {"ok": False, "problem": f"{self.plan.tun} is gone"}
        flags = links[0]["flags"]
        if not (flags & IFF_UP and flags & IFF_RUNNING):
            return {"ok": False, "problem": f"{self.plan.tun} is down"}
        return {"ok": True, "flows": len(self.flows)}

    def counts(self) -> dict[str, int]:
        """Packets by result: `delivered` (into the TUN), `returned` (to the load balancer), and each drop reason."""
        merged: dict[str, int] = {}
        for source in (dict(self._inbound), dict(self._outbound)):
            for key, value in source.items():
                merged[key] = merged.get(key, 0) + value
        return merged

    # ---- the readers ---------------------------------------------------------

    def _guard(self, loop: object) -> None:
        try:
            loop()  # type: ignore[operator]
        except Exception as exc:  # a reader that dies makes the health check fail: the load balancer moves flows away
            event(log, "geneve.reader_crash", error=repr(exc), level=logging.ERROR)

    def _wait(self, poller: select.poll) -> bool:
        """Wait until the descriptor is readable; False when stopping."""
        while not self._stopped.is_set():
            if poller.poll(POLL_MS):
                return True
        return False

    def _from_gwlb(self) -> None:
        """GENEVE in: validate, learn the flow, write the inner packet into the TUN."""
        sock, fd, flows, counts = self._sock, self._fd, self.flows, self._inbound
        assert sock is not None
        allowed, mtu = self._sources.allowed, self.plan.mtu
        buf = bytearray(BUFFER)
        view = memoryview(buf)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        swept = time.monotonic()
        while self._wait(poller):
            now = time.monotonic()
            if now - swept > EXPIRE_EVERY:
                flows.expire(now)
                swept = now
            for _ in range(READ_BATCH):
                try:
                    length, (source, _port) = sock.recvfrom_into(buf)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    counts["receive_error"] += 1
                    break
                if not allowed(source):
                    counts["foreign_source"] += 1
                    continue
                try:
                    packet = parse(view, length)
                except Malformed as exc:
                    counts[exc.reason] += 1
                    continue
                if packet.inner_len > mtu:
                    counts["oversize"] += 1
                    continue
                if not flows.learn(packet.key, source, view[:packet.header_len], now):
                    counts["flow_table_full"] += 1
                    continue
                try:
                    os.write(fd, view[packet.header_len:length])
                except OSError:
                    counts["tun_write_failed"] += 1
                    continue
                counts["delivered"] += 1

    def _to_gwlb(self) -> None:
        """Replies out of the TUN: find the flow, send it back to its load balancer node with its header."""
        sock, fd, flows, counts = self._sock, self._fd, self.flows, self._outbound
        assert sock is not None
        buf = bytearray(BUFFER)
        view = memoryview(buf)
        buffers = [buf]
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while self._wait(poller):
            now = time.monotonic()
            for _ in range(READ_BATCH):
                try:
                    length = os.readv(fd, buffers)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    counts["tun_read_error"] += 1
                    break
                try:
                    key = flow_key(view, 0, length)
                except Malformed:
                    counts["reply_not_carried"] += 1  # IPv6 router solicitations and the like: nothing to return
                    continue
                entry = flows.lookup(key, now)
                if entry is None:
                    counts["no_flow"] += 1
                    continue
                try:
                    sock.sendmsg([entry.header, view[:length]], (), 0, (entry.gwlb, GENEVE_PORT))
                except OSError:
                    counts["send_failed"] += 1
                    continue
                counts["returned"] += 1
