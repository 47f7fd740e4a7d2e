"""The GENEVE packet loop, in a process of their own: `python -m dataplane.geneve.worker`.

Why a process: per packet, the loop is Python, and in the agent's process
it would take turns on one interpreter lock with the stream threads that
encrypt the same flows, so a single flow could never use more than one core.
Here they run beside the agent (on the other core of a two-core VM), on the
UDP socket and the TUN descriptor the agent opened and hands over
(`pass_fds`). The agent keeps the kernel objects and its own copies of the
descriptors; the worker only moves packets.

Counters live in a shared memory block (a memfd the agent made) as signed
64-bit slots: one per result in `COUNTERS`, the flow-table size, and a
heartbeat (CLOCK_MONOTONIC nanoseconds, written each time the loop wakes)
by which the agent's health check knows the loop is alive. The
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
import time
from ipaddress import IPv4Network

from dataplane.geneve.flows import FlowTable
from dataplane.geneve.packet import GENEVE_PORT, REASONS, Malformed, flow_key, parse
from dataplane.logfmt import event

log = logging.getLogger("dataplane.geneve")

COUNTERS = (
    "delivered", "returned", *REASONS, "foreign_source", "oversize", "flow_table_full", "tun_write_failed",
    "receive_error", "no_flow", "reply_not_carried", "send_failed", "tun_read_error",
)
SLOTS = (*COUNTERS, "flows", "heartbeat")
INDEX = {name: position for position, name in enumerate(SLOTS)}
DELIVERED, RETURNED = INDEX["delivered"], INDEX["returned"]
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
        """The loop woke within HEARTBEAT_LIMIT."""
        return now_ns - self.slots[INDEX["heartbeat"]] < int(HEARTBEAT_LIMIT * 1e9)

    def reset_heartbeat(self) -> None:
        """Forget the last worker's beat (before starting another)."""
        self.slots[INDEX["heartbeat"]] = 0

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
    """One loop, one thread: GENEVE in to the TUN, replies out of the TUN back in GENEVE.

    One thread polls both descriptors, so no packet waits for a lock handed
    between two loops; each wake-up drains a batch from whichever is ready.
    """

    def __init__(self, sock: socket.socket, tun_fd: int, counters: Counters, *, sources: Sources, mtu: int, flows: FlowTable) -> None:
        self.sock = sock
        self.tun_fd = tun_fd
        self.counters = counters
        self.sources = sources
        self.mtu = mtu
        self.flows = flows
        self.stopped = False
        self._in = bytearray(BUFFER)
        self._out = bytearray(BUFFER)

    def run(self) -> None:
        """Until `stopped`; the heartbeat slot says when the loop last woke."""
        slots, flows, beat, flow_slot = self.counters.slots, self.flows, INDEX["heartbeat"], INDEX["flows"]
        sock_fd = self.sock.fileno()
        poller = select.poll()
        poller.register(sock_fd, select.POLLIN)
        poller.register(self.tun_fd, select.POLLIN)
        swept = time.monotonic()
        while not self.stopped:
            slots[beat] = time.monotonic_ns()
            ready = poller.poll(POLL_MS)
            now = time.monotonic()
            if now - swept > EXPIRE_EVERY:
                flows.expire(now)
                swept = now
            for fd, _events in ready:
                if fd == sock_fd:
                    self.from_gwlb(now)
                else:
                    self.to_gwlb(now)
            slots[flow_slot] = len(flows)

    def from_gwlb(self, now: float) -> None:
        """GENEVE in: check the source, validate, learn the flow, write the inner packet into the TUN."""
        fd, flows, slots, mtu, buf = self.tun_fd, self.flows, self.counters.slots, self.mtu, self._in
        allowed, write, recv_into = self.sources.allowed, os.write, self.sock.recvfrom_into
        view = memoryview(buf)
        for _ in range(READ_BATCH):
            try:
                length, (source, _port) = recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                slots[INDEX["receive_error"]] += 1
                return
            if not allowed(source):
                slots[INDEX["foreign_source"]] += 1
                continue
            try:
                packet = parse(view, length)
            except Malformed as exc:
                slots[INDEX[exc.reason]] += 1
                continue
            if packet.inner_len > mtu:
                slots[INDEX["oversize"]] += 1
                continue
            if not flows.learn(packet.key, source, view[:packet.header_len], now):
                slots[INDEX["flow_table_full"]] += 1
                continue
            try:
                write(fd, view[packet.header_len:length])
            except OSError:
                slots[INDEX["tun_write_failed"]] += 1
                continue
            slots[DELIVERED] += 1

    def to_gwlb(self, now: float) -> None:
        """Replies out of the TUN: find the flow, send it back to its load balancer node with its header."""
        fd, flows, slots, buf = self.tun_fd, self.flows, self.counters.slots, self._out
        sendmsg, readv = self.sock.sendmsg, os.readv
        view = memoryview(buf)
        buffers = [buf]
        for _ in range(READ_BATCH):
            try:
                length = readv(fd, buffers)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                slots[INDEX["tun_read_error"]] += 1
                return
            try:
                key = flow_key(view, 0, length)
            except Malformed:
                slots[INDEX["reply_not_carried"]] += 1  # IPv6 router solicitations and the like: nothing to return
                continue
            entry = flows.lookup(key, now)
            if entry is None:
                slots[INDEX["no_flow"]] += 1
                continue
            try:
                sendmsg([entry.header, view[:length]], (), 0, (entry.gwlb, GENEVE_PORT))
            except OSError:
                slots[INDEX["send_failed"]] += 1
                continue
            slots[RETURNED] += 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (AttributeError, OSError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the loop on the descriptors the agent passed; SIGTERM stops it."""
    parser = argparse.ArgumentParser(prog="transit-geneve-worker", description="GENEVE packet loop of transit-agent (started by it)")
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
    def stop(*_: object) -> None:
        relay.stopped = True

    signal.signal(signal.SIGTERM, stop)
    try:
        relay.run()
    except Exception as exc:  # the agent sees the exit, fails its health check and starts another worker
        event(log, "geneve.worker_crash", error=repr(exc), level=logging.ERROR)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
