"""ICMP echo interception: the agent's TUN, where echo flows enter the fabric and where delivered echoes keep their source.

TPROXY cannot take ICMP, so the agent owns a TUN device and policy routing
(`icmp_routing`) sends ICMP from each local CIDR to each remote CIDR into it;
forwarding is switched on for that while the agent runs, and the
interception table's forward chain lets nothing else be routed from local to
remote (see `intercept.render_nft`). The reader thread takes echo requests,
keys a session by (source, destination, identifier) and hands it to the
Forwarder; replies come back as echo replies written into the TUN from the
original destination to the original source, with correct checksums.
Because the request is routed into the TUN and never delivered locally, the
kernel never answers an echo for a remote address.

The same TUN keeps the client's address when this agent delivers an echo
(`delivery`): the request is written into the TUN from the original source
to the local destination, so the kernel routes it to the host like any
packet; the host's reply, addressed to the remote source, is routed by the
same rules back into the TUN, where the reader hands it to the delivery
session keyed by (source, destination, identifier). Anything else read from
the TUN is dropped. A refused echo is answered with the ICMP error
`packets.refusal_icmp` gives for its status, through the TUN.

Sessions are bounded like UDP's (`datagram_sessions.Sessions`).
"""
from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Callable
from ipaddress import IPv4Address

from dataplane import sysctl
from dataplane.admission import Admission
from dataplane.datagram_endpoints import Endpoint, inbox
from dataplane.datagram_sessions import READ_BATCH, Handler, Reader, Sessions, count_refusal, offer, start_session
from dataplane.header import ICMP
from dataplane.icmp_routing import IcmpPlan, install_rules, remove_rules, update_rules
from dataplane.intercept import KernelError
from dataplane.logfmt import event
from dataplane.packets import ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, echo, icmp_error, ipv4_packet, parse_echo, refusal_icmp
from dataplane.tun import open_tun
from dataplane.workers import Workers

log = logging.getLogger("dataplane.datagram")


class IcmpInterceptor:
    """The agent's TUN device, the policy routing into it, and the thread that reads echo requests from it."""

    def __init__(self, plan: IcmpPlan, handler: Handler, workers: Workers, *, admission: Admission | None = None,
                 limits: Callable[[], tuple[int, int]] | None = None, forwarding_was: str | None = None) -> None:
        self.plan = plan
        self._forwarding_was = forwarding_was  # ip_forward before any run of the agent (the run state), if known
        self._handler = handler
        self._workers = workers
        self._admission = admission
        self.sessions = Sessions(limits)
        self.deliveries = Sessions()
        self._forwarding_previous: dict[str, str] = {}
        self._fd = -1
        self._reader: Reader | None = None
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
        self._reader = Reader("icmp-intercept", self._fd, self._drain)
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
                    offer(writer, payload)
                continue
            key = (src, dst, ident)
            writer = self.sessions.get(key)
            if writer is not None:
                offer(writer, payload)
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
            count_refusal(self._admission, refused, "icmp")
            return

        def reply(frame: bytes) -> None:
            seq = struct.unpack_from("!H", frame)[0]
            self._write(ipv4_packet(dst, src, ICMP, echo(0, ident, seq, frame[2:])))

        endpoint = Endpoint(
            [reader], reply, refuse=lambda status: self._write(icmp_error(packet, *refusal_icmp(status))),
            on_close=lambda: self.sessions.forget(key, writer),
        )
        start_session(self._workers, self._admission, endpoint, self._handler, src, ident, dst, 0, ICMP, [payload])
