"""Interception of UDP and ICMP echo: where datagram flows enter the fabric.

UDP (`UdpInterceptor`): nftables TPROXYs UDP from `local` to `remote` to a
transparent UDP socket on 127.0.0.1:<intercept_port> (the TCP listener's
port number, in UDP). IP_RECVORIGDSTADDR gives each datagram's original
destination. A session table keyed by the 5-tuple turns the first datagram
of a flow into a session: a transparent socket bound to the original
destination and connected to the client (replies leave from the address the
application sent to; later datagrams of the flow reach that socket directly
through the `socket transparent` rule) plus an inbox for datagrams that were
already queued on the shared socket. The Forwarder carries the session in a
tunnel stream until it is idle for `timeouts.datagram_idle`.

ICMP echo (`IcmpInterceptor`): TPROXY cannot take ICMP, so the agent owns a
TUN device and policy routing sends ICMP from each local CIDR to each remote
CIDR into it (`ip rule from L to R ipproto icmp lookup <icmp_route_table>`,
whose default route is the TUN; forwarding is switched on for that while the
agent runs, and the interception table's forward chain lets nothing else be
routed from local to remote, see `intercept.render_nft`). The reader thread
takes echo requests, keys a session by (source, destination, identifier)
and hands it to the Forwarder; replies come back as echo replies written
into the TUN from the original destination to the original source, with
correct checksums. Because the request is routed into the TUN and never
delivered locally, the kernel never answers an echo for a remote address.

The same TUN keeps the client's address when this agent delivers an echo
(`delivery`): the request is written into the TUN from the original source
to the local destination, so the kernel routes it to the host like any
packet; the host's reply, addressed to the remote source, is routed by the
same rules back into the TUN, where the reader hands it to the delivery
session keyed by (source, destination, identifier). Anything else read from
the TUN is dropped.

A refused UDP datagram is answered at once with an ICMP error from its
original destination, through a rate-limited raw socket
(`icmp_reject.IcmpRejecter`): destination unreachable, administratively
prohibited (3/13) for the kernel filter table's denials, which the agent
learns through NFLOG (`UdpInterceptor.refuse_denied`); for a refusal the far
end reports, the session endpoint's `refuse` sends the error
`packets.refusal_icmp` gives for its status (3/13 denied, 3/1 unreachable,
3/0 no route, 11/0 hop limit). A refused echo gets the same error through
the TUN.

Sessions are bounded overall and per client address (`limits.datagram_sessions`,
`limits.datagram_sessions_per_source`); past that, new flows are dropped and
counted (`transit_refused_total`), and a session whose thread cannot be
started is dropped the same way.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dataplane import sysctl
from dataplane.admission import Admission
from dataplane.datagram import IP_TRANSPARENT, Endpoint, inbox
from dataplane.icmp_reject import IcmpRejecter, RejectCounts
from dataplane.packets import ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, echo, icmp_error, ipv4_packet, parse_echo, refusal_icmp, udp_quote
from dataplane.header import ICMP, UDP, Status
from dataplane.intercept import KernelError, iproute
from dataplane.logfmt import event
from dataplane.workers import Workers

log = logging.getLogger("dataplane.datagram")

IP_RECVORIGDSTADDR = 20  # linux/in.h (also IP_ORIGDSTADDR, the control message type)
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_SESSIONS = 4096  # when no limits are given (tests); the agent passes `limits.datagram_sessions`
POLL_SECONDS = 0.5  # how often the reader threads look at their stop flag
READ_BATCH = 256
SO_ATTACH_FILTER = 26  # asm-generic/socket.h
SKF_NET_OFF = -0x100000  # linux/filter.h: classic BPF offsets from the network header
BPF_LD, BPF_JMP, BPF_RET = 0x00, 0x05, 0x06
BPF_W, BPF_H, BPF_ABS, BPF_JEQ, BPF_K = 0x00, 0x08, 0x20, 0x10, 0x00

# (endpoint, src, sport, dst, dport, proto, first datagrams)
Handler = Callable[[Endpoint, IPv4Address, int, IPv4Address, int, int, list[bytes]], None]


def orig_dst(ancillary: list[tuple[int, int, bytes]]) -> tuple[str, int] | None:
    """The original destination from IP_ORIGDSTADDR ancillary data (a sockaddr_in), or None."""
    for level, kind, data in ancillary:
        if level == socket.SOL_IP and kind == IP_RECVORIGDSTADDR and len(data) >= 8:
            port = struct.unpack_from("!H", data, 2)[0]
            return socket.inet_ntoa(data[4:8]), port
    return None


class _Sessions:
    """Key -> inbox writer of the live sessions, shared by a reader thread and the pump threads.

    Capped overall and per client (the key's first element): `limits()` gives
    (sessions, sessions per source), read at each new session.
    """

    def __init__(self, limits: Callable[[], tuple[int, int]] | None = None) -> None:
        self._lock = threading.Lock()
        self._map: dict[tuple[object, ...], socket.socket] = {}
        self._limits = limits or (lambda: (MAX_SESSIONS, MAX_SESSIONS))
        self._by_source: dict[object, int] = {}

    def get(self, key: tuple[object, ...]) -> socket.socket | None:
        with self._lock:
            return self._map.get(key)

    def add(self, key: tuple[object, ...], writer: socket.socket) -> str | None:
        """Register a session; None, or the reason it is refused (`admission.REASONS`)."""
        total, per_source = self._limits()
        with self._lock:
            if len(self._map) >= total:
                return "datagram_sessions"
            if self._by_source.get(key[0], 0) >= per_source:
                return "source_datagram_sessions"
            self._map[key] = writer
            self._by_source[key[0]] = self._by_source.get(key[0], 0) + 1
            return None

    def forget(self, key: tuple[object, ...], writer: socket.socket) -> None:
        with self._lock:
            if self._map.get(key) is writer:
                del self._map[key]
                left = self._by_source.get(key[0], 1) - 1
                if left > 0:
                    self._by_source[key[0]] = left
                else:
                    self._by_source.pop(key[0], None)
        writer.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._map)


def _offer(writer: socket.socket, data: bytes) -> None:
    """Queue a datagram for a running session (dropped if its inbox is full, as a busy link would)."""
    try:
        writer.send(data)
    except OSError:
        pass


class _Reader:
    """A thread that waits on one descriptor, with a stop flag it checks at least every POLL_SECONDS."""

    def __init__(self, name: str, fd: int, on_ready: Callable[[], None]) -> None:
        self._fd = fd
        self._on_ready = on_ready
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        """Is the reader thread running (the health check)?"""
        return self._thread.is_alive() and not self._stopped.is_set()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * POLL_SECONDS + 1)

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not self._stopped.is_set():
            try:
                if poller.poll(POLL_SECONDS * 1000):
                    self._on_ready()
            except Exception as exc:  # one bad datagram must never stop interception
                event(log, "datagram.reader_error", error=repr(exc), level=logging.ERROR)


class UdpInterceptor:
    """The transparent UDP socket TPROXY sends intercepted datagrams to, and its session table."""

    def __init__(self, port: int, handler: Handler, workers: Workers, *, wanted: Callable[[str, str], bool],
                 reject_counts: RejectCounts | None = None, admission: Admission | None = None,
                 limits: Callable[[], tuple[int, int]] | None = None) -> None:
        self.port = port
        self._wanted = wanted  # (src, dst): is this a flow interception should take (local to remote)?
        self._handler = handler
        self._workers = workers
        self._admission = admission
        self.sessions = _Sessions(limits)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            self._sock.setsockopt(socket.SOL_IP, IP_RECVORIGDSTADDR, 1)
            self._sock.bind(("127.0.0.1", port))
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise
        self._reader = _Reader("udp-intercept", self._sock.fileno(), self._drain)
        try:
            self._rejecter: IcmpRejecter | None = IcmpRejecter(counts=reject_counts)
        except OSError as exc:  # no CAP_NET_RAW: refused datagrams are dropped silently, as the kernel does
            self._rejecter = None
            event(log, "datagram.reject_unavailable", error=exc.strerror, level=logging.WARNING)

    def start(self) -> None:
        """Begin taking datagrams."""
        self._reader.start()
        event(log, "listener.start", listener="udp-intercept", addr=f"127.0.0.1:{self.port}")

    def alive(self) -> bool:
        """Is the datagram reader running (the health check)?"""
        return self._reader.alive()

    def stop(self) -> None:
        """Stop taking new flows; running sessions end with their streams (refusals after this are silent)."""
        self._reader.stop()
        self._sock.close()
        if self._rejecter is not None:
            self._rejecter.close()

    def refuse_denied(self, src: str, dst: str, head: bytes) -> bool:
        """A UDP datagram the kernel filter table refused (reported by NFLOG): answer it with admin-prohibited.

        Only for flows this agent intercepts; `head` is the datagram's IPv4
        header and first 8 bytes. False when nothing was sent (not ours, rate
        limited, or no raw socket).
        """
        if self._rejecter is None or not head or not self._wanted(src, dst):
            return False
        return self._rejecter.reject(head)

    def _refuse_session(self, src: str, sport: int, dst: str, dport: int, length: int, status: Status) -> None:
        """A session was refused: the ICMP error for `status`, quoting the headers of the datagram that opened it."""
        if self._rejecter is not None:
            self._rejecter.reject(udp_quote(IPv4Address(src), sport, IPv4Address(dst), dport, length), status)

    def _drain(self) -> None:
        for _ in range(READ_BATCH):
            try:
                data, ancillary, _flags, (src, sport) = self._sock.recvmsg(65535, socket.CMSG_SPACE(16))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an error queued on the socket (ICMP for an earlier send): nothing to read
            original = orig_dst(ancillary)
            if original is None:
                continue
            dst, dport = original
            if not self._wanted(src, dst):
                continue  # sent to the socket itself, not intercepted: nothing to carry
            self._dispatch((src, sport, dst, dport), data)

    def _dispatch(self, key: tuple[str, int, str, int], data: bytes) -> None:
        """Give a datagram to its flow's session, opening one for a new flow."""
        writer = self.sessions.get(key)
        if writer is not None:
            _offer(writer, data)
        else:
            self._open(key, data)

    def _open(self, key: tuple[str, int, str, int], data: bytes) -> None:
        src, sport, dst, dport = key
        try:
            reply = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as exc:
            event(log, "datagram.session_failed", proto="udp", error=exc.strerror, level=logging.WARNING)
            return
        try:
            only_from(reply, src, sport)
            reply.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            reply.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            reply.bind((dst, dport))
            reply.connect((src, sport))
        except OSError as exc:
            reply.close()
            event(log, "datagram.session_failed", proto="udp", dst=f"{dst}:{dport}", error=exc.strerror, level=logging.WARNING)
            return
        first = [data]
        reader, writer = inbox()
        refused = self.sessions.add(key, writer)
        if refused:
            for sock in (reply, reader, writer):
                sock.close()
            _refused(self._admission, refused, "udp")
            return
        endpoint = Endpoint(
            [reply, reader], reply.send, refuse=lambda status: self._refuse_session(src, sport, dst, dport, len(data), status),
            on_close=lambda: self.sessions.forget(key, writer),
        )
        _start(self._workers, self._admission, endpoint, self._handler, IPv4Address(src), sport, IPv4Address(dst), dport, UDP, first)


def _refused(admission: Admission | None, reason: str, proto: str) -> None:
    """A new datagram session over a cap: counted (and logged at most once a second) by admission."""
    if admission is not None:
        admission.refused(reason, proto=proto)
    else:
        event(log, "datagram.session_limit", proto=proto, reason=reason, level=logging.WARNING)


def _start(workers: Workers, admission: Admission | None, endpoint: Endpoint, handler: Handler, *args: object) -> None:
    """Run a new session on a worker; when no thread can be started, drop it (its first datagrams with it)."""
    try:
        workers.submit(_safe, handler, endpoint, *args)
    except Exception as exc:  # RuntimeError: can't start new thread
        endpoint.close()
        if admission is not None:
            admission.refused("threads", error=repr(exc))


def only_from(sock: socket.socket, src: str, sport: int) -> None:
    """Let `sock` queue only datagrams from `src`:`sport` (a classic BPF socket filter, set before bind).

    A session socket is bound to the original destination before it is
    connected to its client; in between it is an unconnected socket on that
    address, and the kernel would queue it another client's datagram to the
    same destination, which the session would then answer on the wrong flow.
    The filter closes that window: such a datagram is dropped (UDP, the
    client sends again and reaches its own session), never misdelivered.
    """
    program = [
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, (SKF_NET_OFF + 12) & 0xFFFFFFFF),  # IPv4 source address
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 3, int(IPv4Address(src))),
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 0),  # UDP source port (the filter sees the datagram from its UDP header)
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 1, sport),
        (BPF_RET | BPF_K, 0, 0, 0xFFFFFFFF),
        (BPF_RET | BPF_K, 0, 0, 0),
    ]
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *insn) for insn in program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_tun(name: str) -> int:
    """A non-blocking descriptor of a new layer-3 TUN device `name` (no packet info); the device goes when it closes."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        os.set_blocking(fd, False)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _safe(handler: Handler, endpoint: Endpoint, *args: object) -> None:
    try:
        handler(endpoint, *args)  # type: ignore[arg-type]
    except Exception as exc:
        event(log, "stream.crash", listener="datagram", error=repr(exc), level=logging.ERROR)
        endpoint.close()


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


class IcmpInterceptor:
    """The agent's TUN device, the policy routing into it, and the thread that reads echo requests from it."""

    def __init__(self, plan: IcmpPlan, handler: Handler, workers: Workers, *, admission: Admission | None = None,
                 limits: Callable[[], tuple[int, int]] | None = None, forwarding_was: str | None = None) -> None:
        self.plan = plan
        self._forwarding_was = forwarding_was  # ip_forward before any run of the agent (the run state), if known
        self._handler = handler
        self._workers = workers
        self._admission = admission
        self.sessions = _Sessions(limits)
        self.deliveries = _Sessions()
        self._forwarding_previous: dict[str, str] = {}
        self._fd = -1
        self._reader: _Reader | None = None
        self._write_lock = threading.Lock()

    def start(self) -> None:
        """Create the TUN, switch forwarding on, install the route and rules, start reading; undone on failure."""
        try:
            self._forwarding_previous = sysctl.apply({"net.ipv4.ip_forward": ("1", "route intercepted ICMP into the TUN")})
            if self._forwarding_was not in (None, "1"):  # a killed run left it on: it was off before the agent
                self._forwarding_previous = {"net.ipv4.ip_forward": str(self._forwarding_was)}
            self._fd = open_tun(self.plan.tun)
            remove_rules(self.plan)  # whatever a killed agent left under the same table and priority
            install_rules(self.plan)
        except BaseException:
            self.stop()
            raise
        self._reader = _Reader("icmp-intercept", self._fd, self._drain)
        self._reader.start()
        event(log, "listener.start", listener="icmp-intercept", tun=self.plan.tun)

    @property
    def forwarding_enabled(self) -> bool:
        """True when the agent switched forwarding on (it was off): the forward chain then drops the rest."""
        return "net.ipv4.ip_forward" in self._forwarding_previous

    def update(self, plan: IcmpPlan) -> None:
        """Move to a new set of rules (same TUN and table); KernelError leaves the old rules in place."""
        if plan == self.plan:
            return
        if (plan.tun, plan.route_table) != (self.plan.tun, self.plan.route_table):
            raise KernelError("the ICMP TUN or route table changed: restart interception")
        for refused in update_rules(self.plan, plan):  # the new rules are in; a stale one stayed
            event(log, "datagram.cleanup_failed", error=refused, level=logging.WARNING)
        self.plan = plan

    def stop(self) -> None:
        """Stop reading, remove rules and route, close the TUN (the kernel removes the device), restore forwarding."""
        if self._reader is not None:
            self._reader.stop()
            self._reader = None
        try:
            remove_rules(self.plan)
        except KernelError as exc:  # stopping goes on: the TUN closes, and with it the route and its traffic
            event(log, "datagram.cleanup_failed", error=str(exc), level=logging.WARNING)
        if self._fd >= 0:
            with self._write_lock:
                os.close(self._fd)
                self._fd = -1
        sysctl.restore(self._forwarding_previous)
        self._forwarding_previous = {}

    def _write(self, packet: bytes) -> None:
        with self._write_lock:
            if self._fd < 0:
                return
            try:
                os.write(self._fd, packet)
            except OSError:
                pass  # the TUN is going away, or the kernel refused the packet: an echo reply lost

    def _drain(self) -> None:
        for _ in range(READ_BATCH):
            try:
                packet = os.read(self._fd, 65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            parsed = parse_echo(packet)
            if parsed is None:
                continue  # not an echo: nothing else is carried, and nothing else is routed
            kind, src, dst, ident, seq, data = parsed
            if not any(src in net for net in self.plan.local) or not any(dst in net for net in self.plan.remote):
                continue
            payload = struct.pack("!H", seq) + data
            if kind == ICMP_ECHO_REPLY:
                # A local host answering an echo this agent delivered from a remote source.
                writer = self.deliveries.get((dst, src, ident))
                if writer is not None:
                    _offer(writer, payload)
                continue
            key = (src, dst, ident)
            writer = self.sessions.get(key)
            if writer is not None:
                _offer(writer, payload)
            else:
                self._open(key, payload, packet)

    def covers(self, src: IPv4Address, dst: IPv4Address) -> bool:
        """True when the host's replies to `src` come back into this TUN (src remote, dst local)."""
        return any(src in net for net in self.plan.remote) and any(dst in net for net in self.plan.local)

    def delivery(self, src: IPv4Address, dst: IPv4Address, ident: int) -> Endpoint | None:
        """The delivering side of an echo flow that keeps the client's address, or None if this TUN cannot.

        Requests go into the TUN from `src` to `dst` with the client's own
        identifier; the reader brings the host's replies back.
        """
        if not self.covers(src, dst):
            return None
        key = (src, dst, ident)
        reader, writer = inbox()
        if self.deliveries.add(key, writer):
            reader.close()
            writer.close()
            return None

        def request(frame: bytes) -> None:
            seq = struct.unpack_from("!H", frame)[0]
            self._write(ipv4_packet(src, dst, ICMP, echo(ICMP_ECHO_REQUEST, ident, seq, frame[2:])))

        return Endpoint([reader], request, on_close=lambda: self.deliveries.forget(key, writer))

    def _open(self, key: tuple[IPv4Address, IPv4Address, int], payload: bytes, packet: bytes) -> None:
        src, dst, ident = key
        reader, writer = inbox()
        refused = self.sessions.add(key, writer)
        if refused:
            reader.close()
            writer.close()
            _refused(self._admission, refused, "icmp")
            return

        def reply(frame: bytes) -> None:
            seq = struct.unpack_from("!H", frame)[0]
            self._write(ipv4_packet(dst, src, ICMP, echo(0, ident, seq, frame[2:])))

        endpoint = Endpoint(
            [reader], reply, refuse=lambda status: self._write(icmp_error(packet, *refusal_icmp(status))),
            on_close=lambda: self.sessions.forget(key, writer),
        )
        _start(self._workers, self._admission, endpoint, self._handler, src, ident, dst, 0, ICMP, [payload])
