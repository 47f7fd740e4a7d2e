"""The one contract every pump keeps, and the loop that drives it.

A pump moves one flow between side `a` (the side that opened it) and side
`b` in one thread, until the flow ends or goes quiet. Three kinds exist:
`relay.BytePump` (TCP bytes through user space, plain or TLS, framed at the
endpoints), `splice.SplicePump` (TCP bytes socket -> pipe -> socket in the
kernel) and `datagram.DatagramPump` (datagrams framed over a tunnel stream).
They differ in their legs and in which exceptions mean "this flow failed";
everything else is here, once: the abort flag, the idle clock, the poll,
parking and how a result is reported. The two TCP pumps are made of two
legs (a -> b and b -> a) and share `DuplexPump` too: the step that moves
both legs and answers, what to poll, what woke, the byte counts and the
close-or-reset of both sockets; each says only how one leg moves.

The loop follows ExaBGP's reactor, where each peer answers NOW, LATER or
CLOSE and the loop polls the LATER ones. Here `step()` moves what can move
without waiting and answers:

- `NOW`: something moved and more may move without waiting (TLS can hold
  decrypted bytes poll cannot see), so step again at once;
- `LATER`: blocked; poll the descriptors `wants()` names, tell the pump
  what woke (`woke()`), then step again;
- an `Outcome` (CLOSE): the flow ended, and how.

A pump stamps `last` whenever bytes move. While blocked, the loop waits at
most until the idle deadline (IDLE) or, with `park_after` > 0 and a
`parkable()` pump, until the flow has been quiet that long (PARKED). A
parked pump keeps its sockets and state: the Forwarder hands `watched()` to
the shared parking thread and calls `run()` again when one of them wakes.
"""
from __future__ import annotations

import enum
import select
import socket
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol, TypeVar

from dataplane.header import Status

ALWAYS = select.POLLHUP | select.POLLERR | select.POLLNVAL  # poll reports these whether asked or not
_LINGER_RESET = struct.pack("ii", 1, 0)


class Outcome(str, enum.Enum):
    """How a flow ended (or paused: PARKED)."""

    CLOSED = "closed"      # both directions finished cleanly
    RESET = "reset"        # a side reset, failed, or the tunnel was truncated
    IDLE = "idle"          # no bytes for the idle timeout
    ABORTED = "aborted"    # abort() called (failover, drain)
    REFUSED = "refused"    # the far end replied with a non-OK status
    PARKED = "parked"      # quiet for `park_after`: sockets still open, run() again to resume


class Step(enum.Enum):
    """What one step asks of the loop when the flow goes on (an Outcome ends it)."""

    NOW = "now"      # moved: step again before polling
    LATER = "later"  # blocked: poll `wants()`, then step again


# The members as plain names: a module global costs a tenth of an Enum attribute lookup (~15 vs ~140 ns), and the loop runs per read.
NOW = Step.NOW
LATER = Step.LATER

@dataclass
class PumpResult:
    """Bytes moved each way, how it ended, and the far end's reply when one was read."""

    up: int  # application bytes a -> b
    down: int  # application bytes b -> a
    outcome: Outcome
    status: Status | None = None
    rule: str | None = None
    error: str | None = None


def reset(sock: socket.socket) -> None:
    """Close a socket with an RST (SO_LINGER 0) so the other end learns at once."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    close(sock)


def close(sock: socket.socket) -> None:
    """Close, ignoring errors (the socket may already be gone)."""
    try:
        socket.socket.close(sock)
    except OSError:
        pass


def shutdown(sock: socket.socket, how: int) -> None:
    """TCP-level shutdown; on an SSLSocket this bypasses SSLSocket.shutdown, which drops the TLS state."""
    try:
        socket.socket.shutdown(sock, how)
    except OSError:
        pass


class Pump(ABC):
    """Drives a flow between `a` and `b` until it ends or parks; subclasses say only what differs.

    What a subclass gives: `errors` (the exceptions that end the flow as
    RESET, or ABORTED after abort()), `step`, `wants`, `woke`, `parkable`,
    `watched`, `counts` and `finish`; `parked` when a parked flow can drop
    something. `status`, `rule` and `error` are reported in the result.
    """

    errors: ClassVar[tuple[type[BaseException], ...]] = (OSError,)

    def __init__(self, a: object, b: socket.socket, *, idle: float, park_after: float = 0.0) -> None:
        self.a = a
        self.b = b
        self.idle = idle
        self.park_after = park_after
        self.last = time.monotonic()
        self._aborted = threading.Event()
        self.status: Status | None = None
        self.rule: str | None = None
        self.error: str | None = None

    # ---- what every pump offers, the same way ---------------------------

    def abort(self) -> None:
        """End the flow from any thread: shut down each stream side; the pump thread returns ABORTED."""
        self._aborted.set()
        for side in (self.a, self.b):
            if isinstance(side, socket.socket):  # a datagram Endpoint is closed by finish()
                shutdown(side, socket.SHUT_RDWR)

    def idle_deadline(self) -> float:
        """When the flow times out if nothing moves (monotonic)."""
        return self.last + self.idle

    def run(self) -> PumpResult:
        """Move the flow until it ends, idles out, parks, or abort() is called.

        After PARKED every socket stays open and another call to run() resumes.
        """
        for sock in self.watched():
            sock.setblocking(False)
        try:
            outcome = self._loop()
        except self.errors as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            outcome = Outcome.ABORTED if self._aborted.is_set() else Outcome.RESET
        if outcome is Outcome.PARKED:
            self.parked()
        else:
            self.finish(outcome)
        up, down = self.counts()
        return PumpResult(up, down, outcome, self.status, self.rule, self.error)

    def _loop(self) -> Outcome:
        poller = select.poll()
        aborted, step, now, later = self._aborted, self.step, NOW, LATER
        while True:
            if aborted.is_set():
                return Outcome.ABORTED
            result = step()
            if result is now:
                continue
            if result is not later:
                return result
            ready = _wait(poller, self.wants(), self)
            if isinstance(ready, Outcome):
                return ready
            if ready is not None:
                self.woke(ready)

    # ---- what differs -----------------------------------------------------

    @abstractmethod
    def step(self) -> Step | Outcome:
        """Move what can move without waiting; stamp `last` if anything moved."""

    @abstractmethod
    def wants(self) -> dict[int, int]:
        """Poll events per descriptor while blocked."""

    @abstractmethod
    def woke(self, ready: dict[int, int]) -> None:
        """Note which descriptors poll reported ready."""

    @abstractmethod
    def parkable(self) -> bool:
        """Quiet with nothing in flight (nothing queued, nothing buffered where poll cannot see it)."""

    @abstractmethod
    def watched(self) -> Sequence[socket.socket]:
        """Every socket whose readiness must wake the flow while it is parked."""

    @abstractmethod
    def counts(self) -> tuple[int, int]:
        """Application bytes moved so far: (a -> b, b -> a)."""

    @abstractmethod
    def finish(self, outcome: Outcome) -> None:
        """Release everything once the flow has ended with `outcome` (close cleanly or reset)."""

    def parked(self) -> None:
        """Drop what a parked flow need not keep while it waits (nothing, unless a pump says so)."""


def _wait(poller: select.poll, events: dict[int, int], pump: Pump) -> dict[int, int] | Outcome | None:
    """One wait: poll `events` until a descriptor is ready or the flow goes quiet.

    Returns the ready descriptors; `Outcome.IDLE` once nothing has moved for
    `pump.idle` seconds; `Outcome.PARKED` after `pump.park_after` when the
    pump is parkable; None when the poll woke early and the caller should
    simply step and wait again.
    """
    for fd, mask in events.items():
        poller.register(fd, mask | ALWAYS)
    last, idle, park_after = pump.last, pump.idle, pump.park_after
    parking = park_after > 0 and pump.parkable()
    quiet = time.monotonic() - last
    timeout = idle - quiet
    if parking:
        timeout = min(timeout, park_after - quiet)
    ready = dict(poller.poll(max(0.0, timeout) * 1000))
    if ready:
        return ready
    quiet = time.monotonic() - last
    if quiet >= idle:
        return Outcome.IDLE
    if parking and quiet >= park_after:
        return Outcome.PARKED
    return None


class Leg(Protocol):
    """One direction of a `DuplexPump`: read from `src_fd`, write to `dst_fd`.

    `can_read`/`can_write` are "may make progress" flags, cleared when an
    operation would block and set again when poll reports the events in
    `read_wants`/`write_wants` (or an error) on that side.
    """

    src_fd: int
    dst_fd: int
    count: int  # application bytes moved so far
    done: bool  # finished and passed the end on
    can_read: bool
    can_write: bool
    read_wants: int
    write_wants: int

    def wants(self) -> tuple[int, int]:
        """(events wanted on src, events wanted on dst) while blocked."""
        ...


L = TypeVar("L", bound=Leg)


class DuplexPump(Pump, Generic[L]):
    """A pump made of two legs between two sockets: `up` (a -> b) and `down` (b -> a).

    What is left to a subclass: `move` (one leg, until it blocks),
    `parkable`, and `errors` / `parked` / `finish` when it holds more than
    the two sockets.
    """

    def __init__(self, a: socket.socket, b: socket.socket, up: L, down: L, *, idle: float, park_after: float = 0.0) -> None:
        super().__init__(a, b, idle=idle, park_after=park_after)
        self.a: socket.socket = a
        self.up = up
        self.down = down
        self.legs = (up, down)
        self._sides = (up.src_fd, down.src_fd)

    @abstractmethod
    def move(self, leg: L) -> tuple[bool, Outcome | None]:
        """Move one leg until it blocks: (progress made, the outcome if the flow ends)."""

    def step(self) -> Step | Outcome:
        """Each leg moves until it blocks; NOW after progress (TLS may hold more than poll sees), CLOSED once both are done."""
        moved = False
        for leg in self.legs:
            progress, ended = self.move(leg)
            if ended is not None:
                return ended
            moved = moved or progress
        if self.up.done and self.down.done:
            return Outcome.CLOSED
        if moved:
            self.last = time.monotonic()
            return NOW
        return LATER

    def wants(self) -> dict[int, int]:
        events = dict.fromkeys(self._sides, 0)
        for leg in self.legs:
            src_ev, dst_ev = leg.wants()
            events[leg.src_fd] |= src_ev
            events[leg.dst_fd] |= dst_ev
        return events

    def woke(self, ready: dict[int, int]) -> None:
        for leg in self.legs:
            if ready.get(leg.src_fd, 0) & (leg.read_wants | ALWAYS):
                leg.can_read = True
            if ready.get(leg.dst_fd, 0) & (leg.write_wants | ALWAYS):
                leg.can_write = True

    def watched(self) -> tuple[socket.socket, socket.socket]:
        return self.a, self.b

    def counts(self) -> tuple[int, int]:
        return self.up.count, self.down.count

    def finish(self, outcome: Outcome) -> None:
        """Close both sockets after a clean end; reset both otherwise."""
        for sock in (self.a, self.b):
            if outcome is Outcome.CLOSED:
                close(sock)
            else:
                reset(sock)
