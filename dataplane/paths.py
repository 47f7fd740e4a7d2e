"""Path probing and the private/public choice per peer, with hysteresis.

Every agent answers UDP probes on its probe port (`ProbeResponder`). For each
peer, a `PathMonitor` probes the private and the public address every
`interval` seconds and keeps, per path, the RTT and loss over a sliding window.

A path is *down* once `misses` consecutive probes went unanswered within
`timeout`, and *up* again at the first answer. The choice (`decide`, pure):

- prefer private: it is active while up;
- fail over to public as soon as private is down and public is up, so with
  the defaults (0.1 s interval, 0.25 s timeout, 3 misses) failover happens
  about 0.45 s after the last answer, well under one second;
- fail back only after private has stayed up for `hold` seconds (a flapping
  private path does not drag traffic back and forth);
- if public dies while active and private is up, move back at once.

What happens to flows in progress is the caller's decision (`on_change` is
called with peer, old path and new path): the agent moves new streams to the
new path, resets streams stuck on a dead path and lets streams on a live path
finish.

Probe wire format (network order): magic b"TXP1", kind (1 request, 2 reply),
then a 12-byte nonce (u32 + u64) the responder echoes unchanged. Each probe's
nonce comes from `secrets`, and a reply counts only if it carries the nonce of
a probe in flight and comes from the address that probe went to, so nobody
off the path can fake a healthy path (or keep a dead one up). The responder
survives any error on its socket. Anything else is ignored.
"""
from __future__ import annotations

import logging
import secrets
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from dataplane.config import AgentConfig

log = logging.getLogger("dataplane.paths")

Path = Literal["private", "public"]
PATHS: tuple[Path, Path] = ("private", "public")

MAGIC = b"TXP1"
KIND_REQUEST = 1
KIND_REPLY = 2
_PROBE = struct.Struct("!4sBIQ")
PROBE_SIZE = _PROBE.size

OnChange = Callable[[str, str, str], None]


def encode_probe(kind: int, nonce_a: int, nonce_b: int) -> bytes:
    """One probe datagram carrying a (u32, u64) nonce."""
    return _PROBE.pack(MAGIC, kind, nonce_a & 0xFFFFFFFF, nonce_b & 0xFFFFFFFFFFFFFFFF)


def decode_probe(data: bytes) -> tuple[int, int, int] | None:
    """(kind, nonce_a, nonce_b) of a well-formed probe, else None."""
    if len(data) != PROBE_SIZE:
        return None
    magic, kind, nonce_a, nonce_b = _PROBE.unpack(data)
    if magic != MAGIC or kind not in (KIND_REQUEST, KIND_REPLY):
        return None
    return kind, nonce_a, nonce_b


@dataclass
class PathHealth:
    """Probe results of one path: consecutive misses, a window of outcomes, up/down."""

    misses_to_down: int
    window: int = 20
    up: bool = True
    up_since: float = 0.0
    consecutive_lost: int = 0
    outcomes: deque[float | None] = field(default_factory=deque)  # RTT in s, None = lost

    def answered(self, rtt: float, now: float) -> None:
        """Record an answered probe; a down path comes up at once."""
        self._push(rtt)
        self.consecutive_lost = 0
        if not self.up:
            self.up = True
            self.up_since = now

    def lost(self) -> None:
        """Record an unanswered probe; enough in a row take the path down."""
        self._push(None)
        self.consecutive_lost += 1
        if self.up and self.consecutive_lost >= self.misses_to_down:
            self.up = False

    def stats(self) -> dict[str, float | bool | None]:
        """{rtt_ms, loss, up} over the window (rtt_ms None when nothing answered)."""
        answered = [rtt for rtt in self.outcomes if rtt is not None]
        total = len(self.outcomes)
        return {
            "rtt_ms": round(sum(answered) / len(answered) * 1000, 3) if answered else None,
            "loss": round(1 - len(answered) / total, 3) if total else 0.0,
            "up": self.up,
        }

    def _push(self, outcome: float | None) -> None:
        self.outcomes.append(outcome)
        while len(self.outcomes) > self.window:
            self.outcomes.popleft()


def decide(active: Path, private: PathHealth, public: PathHealth | None, now: float, hold: float) -> Path:
    """The path new traffic should take (pure; see the module docstring)."""
    if public is None:
        return "private"
    if active == "private":
        if not private.up and public.up:
            return "public"
        return "private"
    if private.up and (not public.up or now - private.up_since >= hold):
        return "private"
    return "public"


@dataclass(frozen=True)
class PeerPaths:
    """What the monitor needs to know about one peer."""

    name: str
    private_addr: str
    public_addr: str | None
    probe_port: int
    tunnel_port: int


class ProbeResponder:
    """Answers probes on one UDP address; every agent runs one."""

    def __init__(self, host: str, port: int) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name="probe-responder", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        return int(self._sock.getsockname()[1])

    def start(self) -> None:
        """Begin answering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and release the port."""
        self._stopped = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=2)

    def _serve(self) -> None:
        while not self._stopped:
            try:
                data, address = self._sock.recvfrom(64)
                probe = decode_probe(data)
                if probe is None or probe[0] != KIND_REQUEST:
                    continue
                self._sock.sendto(encode_probe(KIND_REPLY, probe[1], probe[2]), address)
            except Exception as exc:  # a queued ICMP error, ENOBUFS, ...: answer the next probe anyway
                if self._stopped or self._sock.fileno() < 0:
                    return
                log.warning("probe.responder_error error=%r", exc)
                time.sleep(0.01)


@dataclass
class _Target:
    """One (peer, path) being probed: its socket and the probes awaiting an answer."""

    peer: str
    path: Path
    sock: socket.socket
    address: tuple[str, int]
    health: PathHealth
    pending: dict[tuple[int, int], float] = field(default_factory=dict)  # nonce -> monotonic send time


class PathMonitor:
    """Probes every peer's paths and keeps the active one per peer.

    `on_change(peer, old, new)` runs on the monitor thread after the switch,
    outside the monitor's lock.
    """

    def __init__(
        self,
        peers: Iterable[PeerPaths],
        *,
        interval: float = 0.1,
        timeout: float = 0.25,
        misses: int = 3,
        hold: float = 3.0,
        window: int = 20,
        responder: tuple[str, int] | None = None,
        on_change: OnChange | None = None,
    ) -> None:
        self._peers = {peer.name: peer for peer in peers}
        self._interval = interval
        self._timeout = timeout
        self._misses = misses
        self._hold = hold
        self._window = window
        self._responder_addr = responder
        self._on_change = on_change
        self._lock = threading.Lock()
        self._active: dict[str, Path] = {name: "private" for name in self._peers}
        self._health: dict[tuple[str, Path], PathHealth] = {}
        for name, peer in self._peers.items():
            for path in PATHS:
                if path == "private" or peer.public_addr is not None:
                    self._health[(name, path)] = PathHealth(misses_to_down=misses, window=window)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._responder: ProbeResponder | None = None
        self._targets: list[_Target] = []

    @classmethod
    def from_config(cls, config: AgentConfig, *, on_change: OnChange | None = None) -> PathMonitor:
        """A monitor for every peer of an AgentConfig, answering probes on its probe endpoint."""
        peers = [
            PeerPaths(
                name=peer.name,
                private_addr=str(peer.private_addr),
                public_addr=str(peer.public_addr) if peer.public_addr is not None else None,
                probe_port=peer.probe_port,
                tunnel_port=peer.tunnel_port,
            )
            for peer in config.peers
        ]
        settings = config.paths
        return cls(
            peers,
            interval=settings.probe_interval,
            timeout=max(settings.probe_interval, 0.25),
            misses=settings.failover_misses,
            hold=settings.failback_hold,
            responder=(str(config.listen.probe.host), config.listen.probe.port),
            on_change=on_change,
        )

    # ---- queries (any thread) ------------------------------------------

    def active(self, peer_name: str) -> Path:
        """The path new traffic to `peer_name` should take."""
        with self._lock:
            return self._active[peer_name]

    def address(self, peer_name: str) -> tuple[str, int]:
        """(ip, tunnel port) of `peer_name` on its active path."""
        peer = self._peers[peer_name]
        if self.active(peer_name) == "public" and peer.public_addr is not None:
            return peer.public_addr, peer.tunnel_port
        return peer.private_addr, peer.tunnel_port

    def is_up(self, peer_name: str, path: str) -> bool:
        """Whether probes currently reach `peer_name` over `path` (False for a path it lacks)."""
        with self._lock:
            health = self._health.get((peer_name, path))  # type: ignore[arg-type]
            return bool(health and health.up)

    def stats(self) -> dict[str, dict[str, dict[str, float | bool | None]]]:
        """{peer: {path: {rtt_ms, loss, up}}} over the current window."""
        with self._lock:
            out: dict[str, dict[str, dict[str, float | bool | None]]] = {}
            for (peer, path), health in self._health.items():
                out.setdefault(peer, {})[path] = health.stats()
            return out

    # ---- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Bind the responder and probe sockets, then probe on a background thread."""
        if self._thread is not None:
            return
        try:
            if self._responder_addr is not None:
                self._responder = ProbeResponder(*self._responder_addr)
                self._responder.start()
            for (name, path), health in self._health.items():
                peer = self._peers[name]
                address = peer.private_addr if path == "private" else peer.public_addr
                # Not connected: connect() fails without a route, and a path that is down
                # at start must count as down, not stop the agent from starting.
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._targets.append(_Target(name, path, sock, (str(address), peer.probe_port), health))
        except OSError:
            self._close()
            raise
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="path-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop probing and answering; safe to call more than once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self._close()

    def _close(self) -> None:
        for target in self._targets:
            target.sock.close()
        self._targets = []
        if self._responder is not None:
            self._responder.stop()
            self._responder = None

    # ---- the probe loop --------------------------------------------------

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for target in self._targets:
            selector.register(target.sock, selectors.EVENT_READ, target)
        next_send = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_send:
                    self._send_all(now)
                    next_send += self._interval
                    if next_send < now:
                        next_send = now + self._interval
                for key, _ in selector.select(timeout=max(0.0, min(next_send - time.monotonic(), 0.05))):
                    self._receive(key.data)
                self._expire_and_decide(time.monotonic())
        finally:
            selector.close()

    def _send_all(self, now: float) -> None:
        for target in self._targets:
            nonce = (secrets.randbits(32), secrets.randbits(64))
            target.pending[nonce] = now
            try:
                target.sock.sendto(encode_probe(KIND_REQUEST, *nonce), target.address)
            except OSError:
                pass  # no route: counts as a probe that will not be answered

    def _receive(self, target: _Target) -> None:
        while True:
            try:
                data, sender = target.sock.recvfrom(64)
            except OSError:  # BlockingIOError: nothing more to read now
                return
            probe = decode_probe(data)
            if probe is None or probe[0] != KIND_REPLY or sender != target.address:
                continue  # not an answer from where the probe went
            sent = target.pending.pop((probe[1], probe[2]), None)
            if sent is None:
                continue  # late or unknown: already counted as lost
            now = time.monotonic()
            with self._lock:
                target.health.answered(now - sent, now)

    def _expire_and_decide(self, now: float) -> None:
        changes: list[tuple[str, Path, Path]] = []
        with self._lock:
            for target in self._targets:
                for nonce in [nonce for nonce, sent in target.pending.items() if now - sent > self._timeout]:
                    del target.pending[nonce]
                    target.health.lost()
            for name in self._peers:
                old = self._active[name]
                new = decide(old, self._health[(name, "private")], self._health.get((name, "public")), now, self._hold)
                if new != old:
                    self._active[name] = new
                    changes.append((name, old, new))
        for name, old, new in changes:
            log.info("path.change peer=%s old=%s new=%s", name, old, new)
            if self._on_change is not None:
                try:
                    self._on_change(name, old, new)
                except Exception:
                    log.exception("path.on_change_failed peer=%s", name)
