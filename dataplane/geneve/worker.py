"""The GENEVE packet loops, in a process of their own: `python -m dataplane.geneve.worker`.

Why a process: per packet, the loops are Python, and in the agent's process
they would take turns on one interpreter lock with the stream threads that
encrypt the same flows, so a single flow could never use more than one core.
Here they run beside the agent (on the other core of a two-core VM), on the
UDP socket and the TUN descriptor the agent opened and hands over
(`pass_fds`). The agent keeps the kernel objects and its own copies of the
descriptors; the worker only moves packets.

Counters live in a shared memory block (a memfd the agent made) as signed
64-bit slots: one per result in `COUNTERS`, the flow-table size, and one
heartbeat per loop (CLOCK_MONOTONIC nanoseconds, written each time the loop
wakes) by which the agent's health check knows both loops are alive. The
worker asks the kernel for SIGTERM when the agent dies (PR_SET_PDEATHSIG),
so it never outlives it.
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import mmap
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Network

from dataplane.geneve.flows import FlowTable
from dataplane.geneve.packet import GENEVE_PORT, REASONS, Malformed, flow_key, parse
from dataplane.logfmt import event

log = logging.getLogger("dataplane.geneve")

COUNTERS = (
    "delivered", "returned", *REASONS, "foreign_source", "oversize", "flow_table_full", "tun_write_failed",
    "receive_error", "no_flow", "reply_not_carried", "send_failed", "tun_read_error",
)
SLOTS = (*COUNTERS, "flows", "heartbeat_in", "heartbeat_out")
INDEX = {name: position for position, name in enumerate(SLOTS)}
READ_BATCH = 256  # packets per wake-up before the loop looks at the clock
POLL_MS = 500
HEARTBEAT_LIMIT = 3.0  # seconds: a loop silent for longer is stuck or dead
BUFFER = 65536  # no UDP datagram is larger, so nothing is ever truncated silently
EXPIRE_EVERY = 1.0
_PR_SET_PDEATHSIG = 1
_ADDR = struct.Struct("!I")


class Counters:
    """The shared counter block: `SLOTS` as int64, in a memfd both processes map."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map = mmap.mmap(fd, len(SLOTS) * 8)
        self.slots = memoryview(self._map).cast("q")

    @classmethod
    def create(cls) -> Counters:
        """A new zeroed block (the agent's side)."""
        fd = os.memfd_create("transit-geneve-counters", os.MFD_CLOEXEC)
        os.ftruncate(fd, len(SLOTS) * 8)
        return cls(fd)

    def snapshot(self) -> dict[str, int]:
        """Every counter by name."""
        return {name: self.slots[INDEX[name]] for name in COUNTERS}

    def value(self, name: str) -> int:
        return self.slots[INDEX[name]]

    def alive(self, now_ns: int) -> bool:
        """Both loops woke within HEARTBEAT_LIMIT."""
        limit = int(HEARTBEAT_LIMIT * 1e9)
        return all(now_ns - self.slots[INDEX[beat]] < limit for beat in ("heartbeat_in", "heartbeat_out"))

    def reset_heartbeats(self) -> None:
        """Forget the last worker's beats (before starting another)."""
        for beat in ("heartbeat_in", "heartbeat_out"):
            self.slots[INDEX[beat]] = 0

    def close(self) -> None:
        self.slots.release()
        self._map.close()
        os.close(self.fd)


class Sources:
    """Which outer source addresses may send GENEVE: the load balancer's subnets, as integer (network, mask) pairs."""

    def __init__(self, cidrs: list[IPv4Network]) -> None:
        self._nets = tuple((int(net.network_address), int(net.netmask)) for net in cidrs)

    def allowed(self, address: str) -> bool:
        try:
            value = _ADDR.unpack(socket.inet_aton(address))[0]
        except OSError:
            return False
        return any(value & mask == net for net, mask in self._nets)


class Relay:
    """The two loops: GENEVE in to the TUN, replies out of the TUN back in GENEVE."""

    def __init__(self, sock: socket.socket, tun_fd: int, counters: Counters, *, sources: Sources, mtu: int, flows: FlowTable) -> None:
        self.sock = sock
        self.tun_fd = tun_fd
        self.counters = counters
        self.sources = sources
        self.mtu = mtu
        self.flows = flows
        self.stopped = threading.Event()

    def run(self) -> None:
        """Both loops until `stopped` is set; returns when either loop ends."""
        threads = [threading.Thread(target=self._guard, args=(loop,), name=loop.__name__, daemon=True) for loop in (self.from_gwlb, self.to_gwlb)]
        for thread in threads:
            thread.start()
        while all(thread.is_alive() for thread in threads):
            threads[0].join(timeout=1)
        self.stopped.set()

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except Exception as exc:  # its heartbeat stops: the health check fails and the load balancer moves flows away
            event(log, "geneve.reader_crash", loop=loop.__name__, error=repr(exc), level=logging.ERROR)

    def _wait(self, poller: select.poll, beat: int) -> bool:
        """Wait until the descriptor is readable, beating the heartbeat; False when stopping."""
        slots = self.counters.slots
        while not self.stopped.is_set():
            slots[beat] = time.monotonic_ns()
            if poller.poll(POLL_MS):
                return True
        return False

    def from_gwlb(self) -> None:
        """GENEVE in: check the source, validate, learn the flow, write the inner packet into the TUN."""
        sock, fd, flows, slots, mtu = self.sock, self.tun_fd, self.flows, self.counters.slots, self.mtu
        allowed, write, recv_into, monotonic = self.sources.allowed, os.write, sock.recvfrom_into, time.monotonic
        delivered, flow_slot = INDEX["delivered"], INDEX["flows"]
        foreign, oversize, full, write_failed, receive_error = (
            INDEX["foreign_source"], INDEX["oversize"], INDEX["flow_table_full"], INDEX["tun_write_failed"], INDEX["receive_error"])
        buf = bytearray(BUFFER)
        view = memoryview(buf)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        swept = monotonic()
        while self._wait(poller, INDEX["heartbeat_in"]):
            now = monotonic()
            if now - swept > EXPIRE_EVERY:
                flows.expire(now)
                slots[flow_slot] = len(flows)
                swept = now
            for _ in range(READ_BATCH):
                try:
                    length, (source, _port) = recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    slots[receive_error] += 1
                    break
                if not allowed(source):
                    slots[foreign] += 1
                    continue
                try:
                    packet = parse(view, length)
                except Malformed as exc:
                    slots[INDEX[exc.reason]] += 1
                    continue
                if packet.inner_len > mtu:
                    slots[oversize] += 1
                    continue
                if not flows.learn(packet.key, source, view[:packet.header_len], now):
                    slots[full] += 1
                    continue
                try:
                    write(fd, view[packet.header_len:length])
                except OSError:
                    slots[write_failed] += 1
                    continue
                slots[delivered] += 1
            slots[flow_slot] = len(flows)

    def to_gwlb(self) -> None:
        """Replies out of the TUN: find the flow, send it back to its load balancer node with its header."""
        sock, fd, flows, slots = self.sock, self.tun_fd, self.flows, self.counters.slots
        sendmsg, readv, monotonic = sock.sendmsg, os.readv, time.monotonic
        returned, no_flow, not_carried, send_failed, read_error = (
            INDEX["returned"], INDEX["no_flow"], INDEX["reply_not_carried"], INDEX["send_failed"], INDEX["tun_read_error"])
        buf = bytearray(BUFFER)
        view = memoryview(buf)
        buffers = [buf]
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while self._wait(poller, INDEX["heartbeat_out"]):
            now = monotonic()
            for _ in range(READ_BATCH):
                try:
                    length = readv(fd, buffers)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    slots[read_error] += 1
                    break
                try:
                    key = flow_key(view, 0, length)
                except Malformed:
                    slots[not_carried] += 1  # IPv6 router solicitations and the like: nothing to return
                    continue
                entry = flows.lookup(key, now)
                if entry is None:
                    slots[no_flow] += 1
                    continue
                try:
                    sendmsg([entry.header, view[:length]], (), 0, (entry.gwlb, GENEVE_PORT))
                except OSError:
                    slots[send_failed] += 1
                    continue
                slots[returned] += 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (AttributeError, OSError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the loops on the descriptors the agent passed; SIGTERM stops them."""
    parser = argparse.ArgumentParser(prog="transit-geneve-worker", description="GENEVE packet loops of transit-agent (started by it)")
    parser.add_argument("--sock-fd", type=int, required=True)
    parser.add_argument("--tun-fd", type=int, required=True)
    parser.add_argument("--counters-fd", type=int, required=True)
    parser.add_argument("--mtu", type=int, required=True)
    parser.add_argument("--flow-limit", type=int, required=True)
    parser.add_argument("--flow-idle", type=float, required=True)
    parser.add_argument("--gwlb-cidr", action="append", type=IPv4Network, required=True)
    args = parser.parse_args(argv)
    _die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    sock = socket.socket(fileno=args.sock_fd)
    sock.setblocking(False)
    counters = Counters(args.counters_fd)
    relay = Relay(sock, args.tun_fd, counters, sources=Sources(args.gwlb_cidr), mtu=args.mtu,
                  flows=FlowTable(limit=args.flow_limit, idle=args.flow_idle))
    signal.signal(signal.SIGTERM, lambda *_: relay.stopped.set())
    relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
