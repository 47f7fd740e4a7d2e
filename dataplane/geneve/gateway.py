"""The GENEVE gateway: the load balancer's packets into the kernel through a TUN, a flow's replies back to it.

In: a UDP socket on port 6081 of the node takes what the Gateway Load
Balancer sends, only from `gwlb_cidrs`. Each packet is validated
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
<route_table>` routes them into the TUN. The loop takes them there, finds
the flow (a packet of a flow the load balancer never delivered is dropped
and counted), and sends `header + packet` back to that load balancer node's
port 6081 from the node's own 6081: the outer addresses swapped, the GENEVE
header and options exactly as they came.

Fast path: unless `datapath` is `user`, the kernel does both directions
(`fastpath`, `bpf/geneve.bpf.c`): a tc program decapsulates on the
interface the load balancer arrives on and marks the inner packet with
`fwmark`, which the table turns into the connection's mark as for a packet
from the TUN; another wraps the replies routed into the TUN on its egress.
What they leave (anything they do not fully understand, a reply of a flow
they do not know) reaches the socket and the TUN, and the loop below, as
before. When they do not load, `auto` runs the loop alone.

The packet loop runs in a child process (`worker`, why: there) on the
socket and TUN this process opened. It uses one preallocated buffer per
direction, reads in batches until the descriptor would block, parse in
place and send with scatter-gather (`sendmsg([header, packet])`), so the
only per-packet objects are the parse result and the flow key. Every drop is
counted by reason (`counts()`), and a bad packet never stops a loop.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Address

from pyroute2.netlink.exceptions import NetlinkError

from dataplane.config import GeneveSettings
from dataplane.geneve import fastpath
from dataplane.geneve.fastpath import FastPath, FastPathError, FastPathPlan
from dataplane.geneve.worker import POLL_MS, Counters
from dataplane.intercept import KernelError, iproute, run_nft
from dataplane.logfmt import event
from dataplane.tun import open_tun

log = logging.getLogger("dataplane.geneve")

WORKER_START = 10.0  # seconds for the worker's interpreter to start and its loop to beat
SOCKET_BUFFER = 8 * 1024 * 1024  # bursts of 8,568-byte datagrams from the load balancer
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # asm-generic/socket.h: past net.core.*mem_max (CAP_NET_ADMIN)
TUN_QUEUE = 4096  # packets queued towards the loop: a burst of replies must not be tail-dropped at 500
IFF_UP, IFF_RUNNING = 0x1, 0x40
# The kernel's reverse-path check (rp_filter, which the agent sets to loose) refuses every packet from a device
# without an IPv4 address; this one, host scope, only gives the TUN one (gwlbtun switches rp_filter off instead).
TUN_ADDRESS = "169.254.60.81"


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
    # A flow that came in GENEVE (through the TUN, or decapsulated by the fast path) is never routed on, but echoes.
    if plan.icmp_tun:
        icmp = f'"{plan.icmp_tun}"'
        forward = [f"    iifname {tun} oifname != {icmp} drop", f"    ct direction original ct mark {mark} oifname != {icmp} drop",
                   f"    oifname {tun} iifname != {icmp} drop"]
    else:
        forward = [f"    iifname {tun} drop", f"    ct direction original ct mark {mark} drop", f"    oifname {tun} drop"]
    return "\n".join([
        f"table ip {plan.nft_table} {{}}",
        f"delete table ip {plan.nft_table}",
        f"table ip {plan.nft_table} {{",
        "  chain prerouting {",
        "    type filter hook prerouting priority mangle - 10; policy accept;",
        f"    iifname {tun} ct mark set {mark}",
        f"    meta mark {mark} ct mark set {mark} meta mark set 0",  # decapsulated by the eBPF fast path (fastpath.py)
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
    """Remove the fast path's filters (by name, on any device), the table, the rule and the route (the TUN goes when
    its descriptor closes); missing ones are fine."""
    fastpath.remove_filters(plan.tun, None, netns=netns)
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


class GeneveGateway:
    """The UDP listener, the TUN and the kernel objects; the packet loop runs in `worker`, a child process."""

    def __init__(self, settings: GeneveSettings, *, icmp_tun: str | None) -> None:
        self.settings = settings
        self.plan = GenevePlan.from_settings(settings, icmp_tun)
        self._sock: socket.socket | None = None
        self._fd = -1
        self._counters: Counters | None = None
        self._worker: subprocess.Popen[bytes] | None = None
        self._installed = False
        self._fast: FastPath | None = None
        self.load_failures: dict[str, int] = dict.fromkeys(fastpath.REASONS, 0)  # fast path load failures by reason

    # ---- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Create the TUN, install routing and the table, bind 6081, start the worker and the fast path; undone on failure."""
        try:
            self._fd = open_tun(self.plan.tun)
            remove(self.plan)  # whatever a killed agent left under the same table and mark
            install(self.plan)
            self._installed = True
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock = sock
            set_buffers(sock, SOCKET_BUFFER)
            sock.bind((str(self.settings.listen.host), self.settings.listen.port))
            self._counters = Counters.create()
            self._spawn()
            if self.settings.datapath != "user":
                self._start_fast_path()
        except BaseException:
            self.stop()
            raise
        assert self._worker is not None
        event(log, "listener.start", listener="geneve", addr=f"{self.settings.listen.host}:{self.settings.listen.port}", tun=self.plan.tun,
              mtu=self.plan.mtu, worker=self._worker.pid, datapath=self.datapath)

    @property
    def datapath(self) -> str:
        """The live path: `ebpf` (the kernel, the worker taking what it leaves) or `user` (the worker alone)."""
        return "ebpf" if self._fast is not None else "user"

    def _start_fast_path(self) -> None:
        """Load and attach the eBPF fast path; with `datapath: auto`, a failure leaves the user-space path alone."""
        try:
            ifindex, local = ingress_interface(self.settings)
            fast = FastPath(FastPathPlan(ifindex, self.plan.tun, local, tuple(self.settings.gwlb_cidrs), self.plan.mtu, self.plan.fwmark,
                                         self.settings.flow_limit, self.settings.flow_idle))
            fast.start()
        except FastPathError as exc:
            self.load_failures[exc.reason] += 1
            if self.settings.datapath == "ebpf":
                raise KernelError(f"the GENEVE eBPF fast path did not load: {exc}") from exc
            event(log, "geneve.fastpath_unavailable", reason=exc.reason, error=str(exc), datapath="user", level=logging.WARNING)
            return
        self._fast = fast

    def _spawn(self) -> None:
        """Start the worker on this process's socket, TUN and counters, and wait until its loop beats."""
        assert self._sock is not None and self._counters is not None
        fds = (self._sock.fileno(), self._fd, self._counters.fd)
        self._counters.reset_heartbeat()
        self._worker = subprocess.Popen(
            [sys.executable, "-m", "dataplane.geneve.worker", "--sock-fd", str(fds[0]), "--tun-fd", str(fds[1]),
             "--counters-fd", str(fds[2]), "--mtu", str(self.plan.mtu), "--flow-limit", str(self.settings.flow_limit),
             "--flow-idle", str(self.settings.flow_idle), *[arg for cidr in self.settings.gwlb_cidrs for arg in ("--gwlb-cidr", str(cidr))]],
            pass_fds=fds, stdin=subprocess.DEVNULL,
        )
        self._wait_alive()

    def revive(self) -> bool:
        """Restart a worker that exited (its flow table starts empty: flows resume on their next packet from the
        load balancer); True when it did. The agent's loop calls this once a second."""
        if self._worker is None or self._worker.poll() is None:
            return False
        code = self._worker.returncode
        try:
            self._spawn()
        except KernelError as exc:
            event(log, "geneve.worker_restart_failed", exit_code=code, error=str(exc), level=logging.ERROR)
            return False
        event(log, "geneve.worker_restart", exit_code=code, worker=self._worker.pid, level=logging.WARNING)
        return True

    def _wait_alive(self) -> None:
        """Until the worker's loop beats (KernelError if it exits or takes too long)."""
        assert self._worker is not None and self._counters is not None
        deadline = time.monotonic() + WORKER_START
        while not self._counters.alive(time.monotonic_ns()):
            if self._worker.poll() is not None:
                raise KernelError(f"the GENEVE worker exited with {self._worker.returncode} at start")
            if time.monotonic() > deadline:
                raise KernelError(f"the GENEVE worker did not start within {WORKER_START} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Detach the fast path, stop the worker, close the socket and the TUN (the kernel removes the device), remove the
        routing and table."""
        if self._fast is not None:
            try:
                self._fast.stop()
            except (NetlinkError, OSError) as exc:
                event(log, "geneve.cleanup_failed", error=f"eBPF filters: {exc}", level=logging.WARNING)
            self._fast = None
        if self._worker is not None:
            if self._worker.poll() is None:
                self._worker.terminate()
            try:
                self._worker.wait(timeout=POLL_MS / 1000 * 2 + 1)
            except subprocess.TimeoutExpired:
                self._worker.kill()
                self._worker.wait()
            self._worker = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._counters is not None:
            self._counters.close()
            self._counters = None
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
        """{ok, problem}: the worker runs, its loop is awake, and the TUN is up and has its carrier."""
        if self._worker is None or self._counters is None or self._fd < 0:
            return {"ok": False, "problem": "not started"}
        if self._worker.poll() is not None:
            return {"ok": False, "problem": f"the GENEVE worker exited with {self._worker.returncode}"}
        if not self._counters.alive(time.monotonic_ns()):
            return {"ok": False, "problem": "the GENEVE loop stopped"}
        with iproute(None) as ipr:
            links = ipr.get_links(ifname=self.plan.tun)
        if not links:
            return {"ok": False, "problem": f"{self.plan.tun} is gone"}
        flags = links[0]["flags"]
        if not (flags & IFF_UP and flags & IFF_RUNNING):
            return {"ok": False, "problem": f"{self.plan.tun} is down"}
        if self._fast is not None and not self._fast.attached():
            return {"ok": False, "problem": "the eBPF fast path's tc filters are gone"}
        return {"ok": True, "flows": self.flow_count(), "datapath": self.datapath}

    def counts(self) -> dict[str, int]:
        """Packets by result: `delivered` (into the TUN), `returned` (to the load balancer), and each drop reason."""
        return self._counters.snapshot() if self._counters else {}

    def flow_count(self) -> int:
        """Flows in the worker's table (as of its last batch)."""
        return self._counters.value("flows") if self._counters else 0

    def fast_path(self) -> dict[str, object]:
        """The fast path's state for /metrics: the live path, its counters and flows, load failures by reason."""
        fast = self._fast
        return {"datapath": self.datapath, "counts": fast.counts() if fast else {}, "flows": fast.flow_count() if fast else 0,
                "load_failures": dict(self.load_failures)}


def ingress_interface(settings: GeneveSettings) -> tuple[int, IPv4Address | None]:
    """The interface the load balancer's GENEVE arrives on and the address it is sent to: the one holding
    `listen.host`, or (listening on 0.0.0.0) the one the kernel routes the first `gwlb_cidrs` subnet through, with
    the source address it would use there."""
    host = settings.listen.host
    with iproute(None) as ipr:
        if not host.is_unspecified:
            found = ipr.get_addr(family=socket.AF_INET, address=str(host))
            if not found:
                raise FastPathError("attach_failed", f"no interface holds {host}")
            return int(found[0]["index"]), IPv4Address(host)
        subnet = settings.gwlb_cidrs[0]
        probe = subnet.network_address + 1 if subnet.prefixlen < 31 else subnet.network_address  # a host, not the subnet's own address
        try:
            routes = ipr.route("get", dst=str(probe))
        except NetlinkError as exc:
            raise FastPathError("attach_failed", f"no route to {settings.gwlb_cidrs[0]}: {os.strerror(exc.code)}") from exc
        source = routes[0].get_attr("RTA_PREFSRC")
        return int(routes[0].get_attr("RTA_OIF")), IPv4Address(source) if source else None
