"""Tunnels to peers: dial mutual-TLS connections on the active path and keep a few warm.

One TLS connection carries one stream (the fastest shape for throughput: no
multiplexing framing, no head-of-line blocking, each stream its own TCP
window). A handshake per stream would cost time to first byte, so while a peer
is in use the pool keeps `warm_tunnels` connections already handshaken and
verified on the active path; a stream takes one and a background refill
replaces it. The pool for a peer appears on first use (tunnels are on demand)
and is closed after the idle timeout without streams. A path change flushes the
pool so new streams dial the new path.
"""
from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from dataplane.config import PeerConfig, Timeouts
from dataplane.logfmt import event
from dataplane.tls import PeerCert, TlsContexts
from dataplane.workers import Workers

log = logging.getLogger("dataplane.tunnel")

REFILL_DELAY = 0.005  # seconds
TICKET_WAIT = 0.05  # the first tunnel to a peer waits this long for a session ticket to resume later ones


class PathChooser(Protocol):
    """What the pool needs from the path monitor (dataplane.paths.PathMonitor)."""

    def active(self, peer_name: str) -> str: ...


@dataclass
class Tunnel:
    """A verified TLS connection to a peer on one path, not yet carrying a stream."""

    sock: ssl.SSLSocket
    peer: str
    path: str
    cert: PeerCert  # the peer's verified certificate (its identity was required when dialled)
    created: float = field(default_factory=time.monotonic)

    def alive(self) -> bool:
        """A warm tunnel is silent until used: the only thing it may receive is a session ticket."""
        return _drain_tickets(self.sock, wait=0.0)


def peer_address(peer: PeerConfig, path: str) -> str:
    """The address of `peer` on `path` (the private one when no public address is configured)."""
    if path == "public" and peer.public_addr is not None:
        return str(peer.public_addr)
    return str(peer.private_addr)


def tune_tunnel(sock: socket.socket, timeouts: Timeouts) -> None:
    """Liveness for a tunnel's TCP connection: keepalive probes while it is quiet, and TCP_USER_TIMEOUT.

    A peer that vanished (a VM gone, a path black-holed) is noticed within
    `timeouts.keepalive` plus three probes when nothing is sent, and within
    `timeouts.user_timeout` when sent bytes stay unacknowledged, instead of
    after TCP's default retries (minutes). Set once at connection setup.
    """
    idle = max(1, int(timeouts.keepalive))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeouts.user_timeout * 1000))


def _drain_tickets(sock: ssl.SSLSocket, *, wait: float) -> bool:
    """Process what a tunnel received before its stream started (TLS 1.3 session tickets).

    Returns False when the peer closed the tunnel or sent application bytes
    (both mean the tunnel is unusable). Waits up to `wait` seconds for input.
    """
    poller = select.poll()  # not select.select: descriptors past 1024 are normal with many streams
    try:
        poller.register(sock, select.POLLIN)
        readable = poller.poll(wait * 1000)
    except (OSError, ValueError):
        return False
    if not readable:
        return True
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        sock.recv(1)  # b"" (closed) or application bytes: either way unusable
        return False
    except ssl.SSLWantReadError:
        return True  # only TLS messages (a ticket) were there
    except (OSError, ssl.SSLError):
        return False
    finally:
        sock.settimeout(timeout)


def dial(contexts: TlsContexts, peer: PeerConfig, path: str, timeouts: Timeouts, session: ssl.SSLSession | None = None) -> Tunnel:
    """Connect, handshake TLS 1.3 (resuming `session` if given) and verify the peer's identity.

    Raises OSError or ssl.SSLError.
    """
    address = peer_address(peer, path)
    raw = socket.create_connection((address, peer.tunnel_port), timeout=timeouts.connect)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tune_tunnel(raw, timeouts)
        raw.settimeout(timeouts.handshake)
        tls = contexts.client.wrap_socket(raw, server_side=False, session=session)
    except BaseException:
        raw.close()
        raise
    try:
        cert = contexts.require(tls, peer.identity)
    except BaseException:
        tls.close()
        raise
    return Tunnel(tls, peer.name, path, cert)


class _PeerPool:
    def __init__(self) -> None:
        self.ready: deque[Tunnel] = deque()
        self.last_used = time.monotonic()
        self.refilling = False


class TunnelPool:
    """Warm, verified tunnels per peer on the path the chooser says is active."""

    def __init__(
        self,
        *,
        contexts: Callable[[], TlsContexts],
        peers: Callable[[], dict[str, PeerConfig]],
        paths: PathChooser,
        timeouts: Callable[[], Timeouts],
        warm: Callable[[], int],
        workers: Workers,
    ) -> None:
        self._contexts = contexts
        self._peers = peers
        self._paths = paths
        self._timeouts = timeouts
        self._warm = warm
        self._workers = workers
        self._lock = threading.Lock()
        self._pools: dict[str, _PeerPool] = {}
        # (peer, path) -> (client context, session): resumption skips certificate work in the handshake.
        self._sessions: dict[tuple[str, str], tuple[ssl.SSLContext, ssl.SSLSession]] = {}

    def set_paths(self, paths: PathChooser) -> None:
        """Follow a new path monitor (after a reload restarted it)."""
        self._paths = paths

    def take(self, peer_name: str) -> Tunnel:
        """A tunnel to `peer_name` on its active path: a warm one if any, else dialled now."""
        peer = self._peers()[peer_name]
        path = self._paths.active(peer_name)
        max_age = self._timeouts().idle / 2
        with self._lock:
            pool = self._pools.setdefault(peer_name, _PeerPool())
            pool.last_used = time.monotonic()
            while pool.ready:
                tunnel = pool.ready.popleft()
                if tunnel.path == path and time.monotonic() - tunnel.created < max_age and tunnel.alive():
                    self._keep_session(tunnel)
                    self._refill_later(peer_name, pool)
                    return tunnel
                tunnel.sock.close()
            self._refill_later(peer_name, pool)
        tunnel = self._dial(peer, path)
        event(log, "tunnel.open", peer=peer_name, path=path, warm=False, resumed=tunnel.sock.session_reused)
        return tunnel

    def path_for(self, peer_name: str) -> str:
        """The path new traffic to `peer_name` takes now."""
        return self._paths.active(peer_name)

    def open_inner(self, plain: socket.socket, key: tuple[str, str], *, identity: str, timeout: float) -> tuple[ssl.SSLSocket, PeerCert]:
        """TLS with the delivering agent over a connection a relay splices (end-to-end streams).

        The far end must be `identity`, the member that delivers the
        destination (`dataplane.trust.Trust.deliverer`), and not denylisted:
        any other fabric node (an impostor on the far edge's address) is
        dropped before a byte of the stream is sent (PeerIdentityError). The
        session is cached under `key` (peer, destination route) for resumption.
        """
        contexts = self._contexts()
        cached = self._sessions.get(key)
        session = cached[1] if cached and cached[0] is contexts.client else None
        plain.settimeout(timeout)
        inner = contexts.client.wrap_socket(plain, server_side=False, session=session)
        try:
            cert = contexts.require(inner, identity)
        except BaseException:
            inner.close()
            raise
        if session is None and not _drain_tickets(inner, wait=TICKET_WAIT):
            inner.close()
            raise ConnectionResetError("the delivering agent closed the end-to-end session")
        fresh = inner.session
        if fresh is not None and fresh.has_ticket:
            self._sessions[key] = (contexts.client, fresh)
        return inner, cert

    def _dial(self, peer: PeerConfig, path: str) -> Tunnel:
        """Dial with a cached session when there is one for this peer, path and context."""
        contexts = self._contexts()
        cached = self._sessions.get((peer.name, path))
        session = cached[1] if cached and cached[0] is contexts.client else None
        tunnel = dial(contexts, peer, path, self._timeouts(), session)
        if session is None and _drain_tickets(tunnel.sock, wait=TICKET_WAIT):
            self._keep_session(tunnel)
        return tunnel

    def _keep_session(self, tunnel: Tunnel) -> None:
        """Remember the tunnel's session once it holds a ticket."""
        session = tunnel.sock.session
        if session is not None and session.has_ticket:
            self._sessions[(tunnel.peer, tunnel.path)] = (tunnel.sock.context, session)

    def _refill_later(self, peer_name: str, pool: _PeerPool) -> None:
        """Start one background refill for the peer unless one is running (lock held)."""
        if pool.refilling or self._warm() == 0:
            return
        pool.refilling = True
        self._workers.submit(self._refill, peer_name, pool)

    def _refill(self, peer_name: str, pool: _PeerPool) -> None:
        # Let the stream that just took a tunnel get its first bytes through before handshakes compete for the CPU.
        time.sleep(REFILL_DELAY)
        try:
            while True:
                with self._lock:
                    if self._pools.get(peer_name) is not pool or len(pool.ready) >= self._warm():
                        return
                peer = self._peers().get(peer_name)
                if peer is None:
                    return
                path = self._paths.active(peer_name)
                try:
                    tunnel = self._dial(peer, path)
                except (OSError, ssl.SSLError) as exc:
                    event(log, "tunnel.warm_failed", peer=peer_name, path=path, error=type(exc).__name__, level=logging.WARNING)
                    return
                with self._lock:
                    if self._pools.get(peer_name) is pool:
                        pool.ready.append(tunnel)
                        continue
                tunnel.sock.close()
                return
        finally:
            with self._lock:
                pool.refilling = False

    def flush(self, peer_name: str | None = None) -> int:
        """Close the warm tunnels of one peer (or all); returns how many were closed."""
        with self._lock:
            names = list(self._pools) if peer_name is None else [peer_name]
            doomed = [self._pools.pop(name) for name in names if name in self._pools]
            for key in [key for key in self._sessions if key[0] in names]:
                del self._sessions[key]
        closed = 0
        for pool in doomed:
            while pool.ready:
                pool.ready.popleft().sock.close()
                closed += 1
        return closed

    def reap(self) -> None:
        """Close the pools of peers unused for the idle timeout (tunnels close when idle)."""
        idle = self._timeouts().idle
        now = time.monotonic()
        with self._lock:
            stale = [name for name, pool in self._pools.items() if now - pool.last_used > idle]
        for name in stale:
            if self.flush(name):
                event(log, "tunnel.idle_close", peer=name)

    def warm_count(self) -> dict[str, dict[str, int]]:
        """Warm tunnels per peer and path (for metrics, health and tests)."""
        counts: dict[str, dict[str, int]] = {}
        with self._lock:
            for name, pool in self._pools.items():
                for tunnel in pool.ready:
                    counts.setdefault(name, {}).setdefault(tunnel.path, 0)
                    counts[name][tunnel.path] += 1
        return counts
