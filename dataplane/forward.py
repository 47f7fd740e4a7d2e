"""What happens to a stream at each agent: ingress, relay or delivery.

- Ingress (an intercepted application flow: a TCP connection, a UDP session
  or an ICMP echo flow): one path for every kind (`Forwarder._ingress`).
  Check the policy on the original 5-tuple (ingress enforcement), pick the
  peer whose CIDRs hold the destination, take a tunnel, send the stream
  header, relay, and turn the far end's refusal into a refusal for the
  application. End-to-end streams (the default) then leave the edge's TLS
  session and open one with the delivering agent through it (pinned to the
  member whose prefixes hold the destination), sending the header again
  inside. What differs between the kinds is only the application side
  (`Intercepted`: the 5-tuple, how a refusal is told, the pump), so no check
  can apply to one kind and not the other.
- Relay (a tunnel whose destination is not local): for an end-to-end stream,
  leave the TLS session and splice the TCP connection to the next agent in the
  kernel (`dataplane.splice`); otherwise forward the header one hop fewer over
  its own tunnel and relay decrypted bytes. The reply passes through either way.
- Delivery (a tunnel whose destination is in `local_cidrs`): check the policy on
  the header's 5-tuple (egress enforcement, the only place that sees the real
  flow inside TLS), connect to the destination (from the original source
  address when `preserve_source`), reply, relay.

Every tunnel's header passes the same checks before relay or delivery
(`_tunnel_header`: denylist, `dataplane.trust`, the per-peer cap), whatever
the protocol it carries. UDP and ICMP echo flows (`dataplane.datagram_pump`) take
the same path with the same header, reply, TLS, splicing and registry: only
the application side (an `Endpoint` the interception hands over, or a UDP
socket / raw ICMP socket at delivery) and the pump (`DatagramPump`,
length-prefixed datagrams) differ.

Every stream is registered with the peer and path it uses so a path change can
reset the streams stuck on the dead path, and every closed stream produces one
FlowRecord for the flow log and metrics.
"""
from __future__ import annotations

import itertools
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Network

from dataplane.admission import Admission, Slot
from dataplane.config import AgentConfig, PeerConfig
from dataplane import deadline as deadlines
from dataplane.filter_compile import CompiledPolicy
from dataplane.filter_table import verdict_for
from dataplane.datagram_endpoints import Endpoint, IcmpOrigin, udp_destination
from dataplane.datagram_pump import DatagramPump
from dataplane.header import FLAG_END_TO_END, HEADER_FIXED_LEN, ICMP, TCP, UDP, HeaderError, Status, StreamHeader, decode, encode_reply, parse_fixed
from dataplane.logfmt import event
from dataplane.parking import Parking
from dataplane.workers import Workers
from dataplane.pump import Outcome, Pump, PumpResult, reset
from dataplane.relay import BytePump
from dataplane.splice import SplicePump
from dataplane.tls import PeerCert, PeerIdentityError, TlsContexts, peer_cert
from dataplane.trust import Trust
from dataplane.tunnel import Tunnel, TunnelPool, peer_address, tune_tunnel

log = logging.getLogger("dataplane.forward")

IP_TRANSPARENT = 19  # linux/in.h; socket exposes it only on Python 3.12+


@dataclass(frozen=True)
class FlowRecord:
    """One closed stream as this agent saw it (the flow log line, the metrics increment)."""

    ts: float
    node: str
    role: str  # ingress | relay | egress
    src: str
    sport: int
    dst: str
    dport: int
    proto: str
    src_identity: str
    dst_identity: str
    bytes_up: int
    bytes_down: int
    duration_s: float
    verdict: str  # permit | deny | error
    rule: str | None
    path: str | None
    peer: str | None
    outcome: str
    flow_id: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


class Router:
    """Longest-prefix choice between local delivery and the peer that owns a destination."""

    def __init__(self, config: AgentConfig) -> None:
        self.local = list(config.local_cidrs)
        routes: list[tuple[IPv4Network, PeerConfig]] = [(cidr, peer) for peer in config.peers for cidr in peer.cidrs]
        self.routes = sorted(routes, key=lambda item: item[0].prefixlen, reverse=True)
        self.by_identity = {peer.identity: peer for peer in config.peers}

    def is_local(self, dst: IPv4Address) -> bool:
        """True when this agent delivers `dst` itself."""
        return any(dst in cidr for cidr in self.local)

    def peer_for(self, dst: IPv4Address) -> PeerConfig | None:
        """The peer to relay `dst` to, or None."""
        route = self.route_for(dst)
        return route[1] if route else None

    def route_for(self, dst: IPv4Address) -> tuple[IPv4Network, PeerConfig] | None:
        """The most specific (cidr, peer) holding `dst`, or None."""
        for cidr, peer in self.routes:
            if dst in cidr:
                return cidr, peer
        return None

    def peer_at(self, address: str) -> PeerConfig | None:
        """The peer that owns `address` on either path (how a relayed end-to-end stream is attributed)."""
        for peer in self.by_identity.values():
            if address in (str(peer.private_addr), str(peer.public_addr)):
                return peer
        return None


@dataclass(frozen=True)
class Runtime:
    """The parts of the running state a stream reads once at its start (swapped whole on reload)."""

    config: AgentConfig
    contexts: TlsContexts
    router: Router
    policy: CompiledPolicy  # config.filter compiled once: a few bisections per check, whatever the rule count
    trust: Trust  # config.members and mode: what each identity may claim


@dataclass(frozen=True)
class Claim:
    """What a stream in flight was admitted on, kept so a reload can judge it again (`Forwarder.rejudge`)."""

    role: str  # ingress | relay | egress
    header: StreamHeader
    cert: PeerCert  # the other end's certificate: the far end at an ingress, the sender elsewhere


@dataclass(frozen=True)
class Intercepted:
    """A flow the interception took, as the one ingress path (`Forwarder._ingress`) sees it.

    TCP and datagram flows differ only in what is here: the original 5-tuple,
    how the application hears a refusal, how the flow is dropped, and the pump
    that carries it. Every check lives in the path, none in a kind.
    """

    src: IPv4Address
    sport: int
    dst: IPv4Address
    dport: int
    proto: int  # header.TCP | UDP | ICMP
    refuse: Callable[[], None]  # the policy denied it: tell the application (a TCP reset, an ICMP error) and close
    drop: Callable[[], None]  # it cannot be carried (no route, no tunnel): close (TCP: a reset)
    pump: Callable[[Runtime, ssl.SSLSocket], Pump]  # carry it over the tunnel stream opened for it


def tcp_flow(app: socket.socket) -> Intercepted | None:
    """A connection TPROXY captured (its local address is the original destination); None, closed, if it is gone already."""
    try:
        src, sport = app.getpeername()
        dst, dport = app.getsockname()
    except OSError:
        app.close()
        return None

    def pump(rt: Runtime, stream: ssl.SSLSocket) -> Pump:
        app.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return BytePump(app, stream, idle=rt.config.timeouts.idle, park_after=rt.config.timeouts.park, framed="b", expect_reply=True)

    return Intercepted(IPv4Address(src), sport, IPv4Address(dst), dport, TCP, refuse=lambda: reset(app), drop=lambda: reset(app), pump=pump)


def datagram_flow(
    endpoint: Endpoint, src: IPv4Address, sport: int, dst: IPv4Address, dport: int, proto: int, first: list[bytes]
) -> Intercepted:
    """A UDP session or ICMP echo flow the interception opened; `first` holds the datagrams that opened it."""

    def refuse() -> None:
        endpoint.refuse()
        endpoint.close()

    def pump(rt: Runtime, stream: ssl.SSLSocket) -> Pump:
        return DatagramPump(
            endpoint, stream, proto=proto, idle=rt.config.timeouts.datagram_idle, park_after=rt.config.timeouts.park,
            expect_reply=True, first=first,
        )

    return Intercepted(src, sport, dst, dport, proto, refuse=refuse, drop=endpoint.close, pump=pump)


def _recv_exact(sock: ssl.SSLSocket, size: int, deadline: float) -> bytes:
    try:
        return deadlines.recv_exact(sock, size, deadline)
    except ConnectionError:
        raise HeaderError("stream closed inside the header") from None


def read_header(sock: ssl.SSLSocket, deadline: float, first: bytes = b"") -> tuple[StreamHeader, bytes]:
    """Read and validate one stream header, all of it by `deadline` (monotonic); returns it and its raw bytes.

    `first`: the header's first bytes, already read (`_first_bytes`).
    """
    fixed = first + (_recv_exact(sock, HEADER_FIXED_LEN - len(first), deadline) if len(first) < HEADER_FIXED_LEN else b"")
    ident_len = parse_fixed(fixed)
    raw = fixed + _recv_exact(sock, ident_len, deadline)
    return decode(raw), raw


def _first_bytes(tls: ssl.SSLSocket) -> bytes | None:
    """What the peer sent so far (at most a header's fixed part) without blocking: None if nothing yet, b"" if it closed.

    A read, not a poll: with read-ahead OpenSSL may already hold the header's
    record (it came with the handshake's last flight), which neither `pending()`
    nor the socket's readiness shows.
    """
    timeout = tls.gettimeout()
    tls.setblocking(False)
    try:
        return tls.recv(HEADER_FIXED_LEN)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return None
    except (OSError, ssl.SSLError):
        return b""
    finally:
        tls.settimeout(timeout)


def _unwrap(tls: ssl.SSLSocket) -> socket.socket:
    """End TLS on a connection (close_notify both ways) and keep the TCP connection as a plain socket.

    Safe with read-ahead: neither side sends anything after its close_notify
    until it has received the other's, so no plain byte can be read into TLS.
    """
    tls.unwrap()
    timeout = tls.gettimeout()
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM, fileno=socket.socket.detach(tls))
    plain.settimeout(timeout)
    return plain


def _path_of(peer: PeerConfig, address: str) -> str:
    """Which of a peer's paths a connection from `address` came over."""
    if peer.public_addr is not None and address == str(peer.public_addr) and address != str(peer.private_addr):
        return "public"
    return "private"


class Forwarder:
    """Runs streams for one agent and keeps the registry of those in flight."""

    def __init__(
        self,
        *,
        runtime: Callable[[], Runtime],
        pool: TunnelPool,
        parking: Parking,
        workers: Workers,
        on_flow: Callable[[FlowRecord], None],
        admission: Admission | None = None,
        icmp_delivery: Callable[[IPv4Address, IPv4Address, int], Endpoint | None] | None = None,
    ) -> None:
        self._runtime = runtime
        self.admission = admission or Admission(lambda: runtime().config.limits, self.active)
        self._icmp_delivery = icmp_delivery  # echoes from the client's own address, when the agent's ICMP TUN can
        self._pool = pool
        self._parking = parking
        self._workers = workers
        self._on_flow = on_flow
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._streams: dict[int, tuple[Pump, str, str]] = {}
        self._claims: dict[int, Claim] = {}
        self._per_peer: dict[str, int] = {}  # streams in flight per peer
        self._idle_tunnels: dict[str, int] = {}  # accepted tunnels parked until their first header, per peer

    # ---- registry -------------------------------------------------------

    def active(self) -> int:
        """Streams in flight."""
        with self._lock:
            return len(self._streams)

    def peer_full(self, rt: Runtime, peer: str) -> bool:
        """Has `peer` as many streams in flight as `limits.streams_per_peer` allows?"""
        with self._lock:
            return self._per_peer.get(peer, 0) >= rt.config.limits.streams_per_peer

    def by_path(self) -> dict[str, dict[str, int]]:
        """Streams in flight per peer and path."""
        counts: dict[str, dict[str, int]] = {}
        with self._lock:
            for _pump, peer, path in self._streams.values():
                counts.setdefault(peer, {}).setdefault(path, 0)
                counts[peer][path] += 1
        return counts

    def abort_path(self, peer: str, path: str) -> int:
        """Reset every stream to or from `peer` over `path`; returns how many."""
        with self._lock:
            doomed = [pump for pump, p, pa in self._streams.values() if p == peer and pa == path]
        for pump in doomed:
            pump.abort()
        return len(doomed)

    def abort_datagrams(self) -> int:
        """Reset every datagram flow this agent ends (drain: they have no graceful end to wait for)."""
        with self._lock:
            doomed = [pump for pump, _, _ in self._streams.values() if isinstance(pump, DatagramPump)]
        for pump in doomed:
            pump.abort()
        return len(doomed)

    def abort_all(self) -> int:
        """Reset every stream (end of drain)."""
        with self._lock:
            doomed = [pump for pump, _, _ in self._streams.values()]
        for pump in doomed:
            pump.abort()
        return len(doomed)

    def rejudge(self, rt: Runtime) -> list[tuple[Claim, str]]:
        """Reset every stream in flight that `rt` (a reloaded config) would refuse now; returns them with the reason."""
        with self._lock:
            open_streams = [(self._streams[key][0], claim) for key, claim in self._claims.items() if key in self._streams]
        doomed = []
        for pump, claim in open_streams:
            reason = refusal_now(rt, claim)
            if reason is not None:
                pump.abort()
                doomed.append((claim, reason))
        return doomed

    def _run(
        self, pump: Pump, peer: str, path: str, done: Callable[[PumpResult], None], claim: Claim | None = None
    ) -> None:
        """Relay a stream to its end, parking it while quiet; `done` gets the result in whatever thread ends it.

        `claim` (what the stream was admitted on) lets a reload judge it again.
        """
        key = next(self._ids)
        with self._lock:
            self._streams[key] = (pump, peer, path)
            if claim is not None:
                self._claims[key] = claim
            self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        self._continue(key, pump, peer, path, done)

    def _forget(self, key: int, peer: str) -> None:
        with self._lock:
            self._claims.pop(key, None)
            if self._streams.pop(key, None) is not None:
                left = self._per_peer.get(peer, 1) - 1
                if left > 0:
                    self._per_peer[peer] = left
                else:
                    self._per_peer.pop(peer, None)

    def _resume(self, key: int, pump: Pump, peer: str, path: str, done: Callable[[PumpResult], None]) -> None:
        """Wake a parked stream on a worker; if no thread can be started, end it here (abort) rather than lose it."""
        try:
            self._workers.submit(self._continue, key, pump, peer, path, done)
        except Exception as exc:  # RuntimeError: can't start new thread
            self.admission.refused("threads", error=repr(exc))
            pump.abort()
            pump.park_after = 0.0
            self._continue(key, pump, peer, path, done)

    def _continue(self, key: int, pump: Pump, peer: str, path: str, done: Callable[[PumpResult], None]) -> None:
        try:
            while True:
                result = pump.run()
                if result.outcome is not Outcome.PARKED:
                    break
                resume = lambda: self._resume(key, pump, peer, path, done)  # noqa: E731
                if self._parking.park(pump.watched(), pump.idle_deadline(), resume):
                    return
                pump.park_after = 0.0  # parking is closed (shutdown): finish in this thread
        except BaseException:
            self._forget(key, peer)
            raise
        self._forget(key, peer)
        if result.error:
            event(log, "stream.error", peer=peer, path=path, outcome=result.outcome.value, error=result.error, level=logging.DEBUG)
        done(result)

    def _emit(self, rt: Runtime, role: str, header: StreamHeader, started: float, **fields: object) -> None:
        defaults: dict[str, object] = {
            "bytes_up": 0, "bytes_down": 0, "rule": None, "path": None, "peer": None,
            "dst_identity": "", "verdict": "permit", "outcome": Outcome.RESET.value,
        }
        defaults.update(fields)
        record = FlowRecord(
            ts=time.time(), node=rt.config.name, role=role, src=str(header.src), sport=header.sport,
            dst=str(header.dst), dport=header.dport, proto=header.proto_name, src_identity=header.identity,
            duration_s=round(time.monotonic() - started, 6), flow_id=f"{header.flow_id:016x}",
            **defaults,  # type: ignore[arg-type]
        )
        try:
            self._on_flow(record)
        except Exception as exc:  # an observer must never break forwarding
            event(log, "flow.observer_failed", error=repr(exc), level=logging.WARNING)

    # ---- ingress --------------------------------------------------------

    def handle_intercepted(self, app: socket.socket, slot: Slot | None = None) -> None:
        """An application connection captured by TPROXY: its local address is the original destination.

        `slot` (admission) is held while the tunnel is set up and given back once the stream runs.
        """
        try:
            flow = tcp_flow(app)
            if flow is not None:
                self._ingress(flow, slot)
        finally:
            if slot is not None:
                slot.release()

    def handle_datagrams(self, endpoint: Endpoint, src: IPv4Address, sport: int, dst: IPv4Address, dport: int, proto: int, first: list[bytes]) -> None:
        """An intercepted UDP flow or ICMP echo flow (sport = echo identifier, dport = 0): one stream until idle.

        `first` holds the datagrams that opened the flow.
        """
        self._ingress(datagram_flow(endpoint, src, sport, dst, dport, proto, first))

    def _ingress(self, flow: Intercepted, slot: Slot | None = None) -> None:
        """The one ingress path, whatever the flow's kind: every check an intercepted flow passes is here, once.

        The policy on the original 5-tuple, the peer owning the destination, a
        tunnel stream with the header (end to end: a session pinned to the
        member that delivers the destination), the pump, the flow record.
        `slot` (admission) is given back once the stream runs.
        """
        started = time.monotonic()
        rt = self._runtime()
        flags = FLAG_END_TO_END if rt.config.end_to_end else 0
        header = StreamHeader(flow.src, flow.dst, flow.sport, flow.dport, rt.config.identity, secrets.randbits(64), proto=flow.proto, flags=flags)
        where = {"proto": header.proto_name, "src": f"{flow.src}:{flow.sport}", "dst": f"{flow.dst}:{flow.dport}"}
        verdict, rule = verdict_for(rt.policy, header.src, header.dst, header.proto_name, header.policy_port)
        if verdict == "deny":
            flow.refuse()
            event(log, "flow.deny", stage="ingress", **where, rule=rule or "default")
            self._emit(rt, "ingress", header, started, verdict="deny", rule=rule, outcome=Outcome.REFUSED.value)
            return
        peer = rt.router.peer_for(header.dst)
        if peer is None:
            flow.drop()
            event(log, "flow.no_route", dst=str(header.dst), level=logging.WARNING)
            self._emit(rt, "ingress", header, started, verdict="error", rule=rule, outcome=Outcome.REFUSED.value)
            return
        try:
            tunnel, stream, far = self._open_stream(rt, header, peer)
        except (OSError, ssl.SSLError) as exc:
            flow.drop()
            _dial_failed(peer, exc)
            self._emit(rt, "ingress", header, started, verdict="error", rule=rule, peer=peer.name, outcome=Outcome.RESET.value)
            return
        pump = flow.pump(rt, stream)
        if slot is not None:
            slot.release()

        def done(result: PumpResult) -> None:
            verdict_out = "deny" if result.status is Status.DENIED else ("permit" if result.status is Status.OK else "error")
            if result.outcome is Outcome.REFUSED:
                event(log, "flow.refused", **where, status=result.status.name if result.status else "none", rule=result.rule or "default")
            self._emit(
                rt, "ingress", header, started, verdict=verdict_out, rule=result.rule if result.status is Status.DENIED else rule,
                bytes_up=result.up, bytes_down=result.down, path=tunnel.path, peer=peer.name,
                dst_identity=_first(far), outcome=result.outcome.value,
            )

        self._run(pump, peer.name, tunnel.path, done, Claim("ingress", header, far))

    def _open_stream(self, rt: Runtime, header: StreamHeader, peer: PeerConfig) -> tuple[Tunnel, ssl.SSLSocket, PeerCert]:
        """Take a tunnel to `peer`, send the header and, end to end, open the session with the delivering agent.

        Returns the tunnel (for its path), the stream to relay on and the far end's certificate.
        """
        deliverer = rt.trust.deliverer(header.dst) if header.end_to_end else None
        if header.end_to_end and deliverer is None:
            raise PeerIdentityError(f"no member delivers {header.dst}: nobody to pin its end-to-end session to")
        tunnel = self._pool.take(peer.name)
        tunnel.sock.settimeout(rt.config.timeouts.handshake)
        tunnel.sock.sendall(header.encode())
        if deliverer is not None:
            stream, cert = self._open_end_to_end(rt, tunnel.sock, header, peer, deliverer)
            return tunnel, stream, cert
        return tunnel, tunnel.sock, tunnel.cert

    def _open_end_to_end(
        self, rt: Runtime, outer: ssl.SSLSocket, header: StreamHeader, peer: PeerConfig, deliverer: str
    ) -> tuple[ssl.SSLSocket, PeerCert]:
        """Leave the edge's TLS (close_notify both ways) and run TLS with the delivering agent through it.

        The edge has authenticated this agent and read the header; from here it
        splices. The inner session must chain to the fabric CA and carry
        `deliverer`, the identity of the member whose prefixes hold the
        destination: nothing is sent to anyone else.
        """
        plain = _unwrap(outer)
        try:
            route = rt.router.route_for(header.dst)
            key = (peer.name, str(route[0]) if route else str(header.dst))
            inner, cert = self._pool.open_inner(plain, key, identity=deliverer, timeout=rt.config.timeouts.handshake)
        except BaseException:
            plain.close()
            raise
        inner.sendall(header.encode())
        return inner, cert

    # ---- tunnels from peers --------------------------------------------

    def handle_tunnel(self, raw: socket.socket, slot: Slot | None = None) -> None:
        """A TCP connection on the tunnel port: TLS, identity, header, then relay or deliver.

        The handshake and the header each have one deadline for the whole
        exchange (`timeouts.handshake`), not per receive. A configured peer's
        tunnel that is quiet after its handshake (a warm tunnel waiting for a
        stream) waits in the parking thread, not on a thread, until its header
        arrives or `timeouts.idle` passes. `slot` (admission) is held until then.
        """
        try:
            self._tunnel(raw, slot)
        finally:
            if slot is not None:
                slot.release()

    def _tunnel(self, raw: socket.socket, slot: Slot | None) -> None:
        rt = self._runtime()
        deadline = time.monotonic() + rt.config.timeouts.handshake
        try:
            peer_ip = raw.getpeername()[0]
        except OSError:
            raw.close()
            return
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tune_tunnel(raw, rt.config.timeouts)
        raw.settimeout(rt.config.timeouts.handshake)
        tls: ssl.SSLSocket | None = None
        try:
            tls = rt.contexts.server.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            deadlines.handshake(tls, deadline)
        except (OSError, ssl.SSLError, ValueError) as exc:
            reset(tls if tls is not None else raw)
            event(log, "tunnel.reject", peer=peer_ip, reason=type(exc).__name__, level=logging.WARNING)
            return
        cert = peer_cert(tls)
        if self._denylisted(rt, tls, cert, peer_ip):
            return
        identities = cert.identities
        peer = next((rt.router.by_identity[identity] for identity in identities if identity in rt.router.by_identity), None)
        first = _first_bytes(tls) if peer is not None else b""
        if peer is not None and first is None:
            # A warm tunnel from a peer: it waits for its stream's header without a thread (and counts as one of its streams).
            if slot is not None:
                slot.release()
            with self._lock:
                waiting = self._per_peer.get(peer.name, 0) + self._idle_tunnels.get(peer.name, 0)
                if waiting < rt.config.limits.streams_per_peer:
                    self._idle_tunnels[peer.name] = self._idle_tunnels.get(peer.name, 0) + 1
            if waiting >= rt.config.limits.streams_per_peer:
                reset(tls)
                self.admission.refused("peer_streams", peer=peer.name)
                return
            if self._park_tunnel(tls, peer_ip, cert, peer.name, time.monotonic() + rt.config.timeouts.idle):
                return
            self._tunnel_woke(peer.name)
            first = b""
        self._tunnel_header(tls, peer_ip, cert, deadline, first or b"")

    def _park_tunnel(self, tls: ssl.SSLSocket, peer_ip: str, cert: PeerCert, peer: str, until: float) -> bool:
        return self._parking.park((tls,), until, lambda: self._wake_tunnel(tls, peer_ip, cert, peer, until))

    def _tunnel_woke(self, peer: str) -> None:
        with self._lock:
            left = self._idle_tunnels.get(peer, 1) - 1
            if left > 0:
                self._idle_tunnels[peer] = left
            else:
                self._idle_tunnels.pop(peer, None)

    def _wake_tunnel(self, tls: ssl.SSLSocket, peer_ip: str, cert: PeerCert, peer: str, until: float) -> None:
        """A parked warm tunnel spoke (or its idle time ran out): read its header on a worker."""
        first = _first_bytes(tls)
        if first is None and time.monotonic() < until and self._park_tunnel(tls, peer_ip, cert, peer, until):
            return  # only TLS housekeeping arrived: keep waiting
        self._tunnel_woke(peer)
        if first is None:
            reset(tls)  # idle: a warm tunnel nobody used
            return
        try:
            self._workers.submit(self._tunnel_header_safe, tls, peer_ip, cert, first)
        except Exception as exc:  # RuntimeError: can't start new thread
            self.admission.refused("threads", error=repr(exc))
            reset(tls)

    def _tunnel_header_safe(self, tls: ssl.SSLSocket, peer_ip: str, cert: PeerCert, first: bytes) -> None:
        try:
            self._tunnel_header(tls, peer_ip, cert, time.monotonic() + self._runtime().config.timeouts.handshake, first)
        except Exception as exc:  # one broken stream must never take a worker's caller down
            event(log, "stream.crash", listener="tunnel", error=repr(exc), level=logging.ERROR)
            reset(tls)

    def _tunnel_header(self, tls: ssl.SSLSocket, peer_ip: str, cert: PeerCert, deadline: float, first: bytes = b"") -> None:
        rt = self._runtime()
        identities = cert.identities
        known = next((identity for identity in identities if identity in rt.router.by_identity), None)
        try:
            header, _raw = read_header(tls, deadline, first)
        except (OSError, ssl.SSLError, HeaderError) as exc:
            reason = "PeerIdentityError" if known is None else str(exc) if isinstance(exc, HeaderError) else type(exc).__name__
            if isinstance(exc, HeaderError) and known:
                self._reply(tls, Status.BAD_HEADER)
            reset(tls)
            event(log, "tunnel.reject", peer=peer_ip, reason=reason, level=logging.WARNING)
            return
        # A warm tunnel may have waited across a reload: its stream is judged under the config in force now.
        rt = self._runtime()
        if self._denylisted(rt, tls, cert, peer_ip):
            return
        known = next((identity for identity in identities if identity in rt.router.by_identity), None)
        if known is None:
            # Not a peer: only an end-to-end stream of its own, to a destination delivered here.
            if not (header.end_to_end and header.identity in identities and rt.router.is_local(header.dst)):
                reset(tls)
                event(log, "tunnel.reject", peer=peer_ip, reason="PeerIdentityError", identity=",".join(identities) or "none", level=logging.WARNING)
                return
            if self._forbidden(rt, tls, header, header.identity, None, peer_ip):
                return
            relayed_by = rt.router.peer_at(peer_ip)
            self._deliver(rt, tls, header, relayed_by.name if relayed_by else "direct", _path_of(relayed_by, peer_ip) if relayed_by else "private", cert)
            return
        from_peer = rt.router.by_identity[known]
        if self._forbidden(rt, tls, header, known, from_peer, peer_ip):
            return
        if self.peer_full(rt, from_peer.name):
            reset(tls)
            self.admission.refused("peer_streams", peer=from_peer.name)
            return
        in_path = _path_of(from_peer, peer_ip)
        if rt.router.is_local(header.dst) and header.end_to_end:
            # The ingress is our direct peer: its end-to-end session runs on this same connection.
            accepted = self._accept_inner(rt, tls, header, peer_ip)
            if accepted is not None:
                self._deliver(rt, accepted[0], header, from_peer.name, in_path, accepted[1])
        elif rt.router.is_local(header.dst):
            self._deliver(rt, tls, header, from_peer.name, in_path, cert)
        elif header.end_to_end:
            self._splice(rt, tls, header, from_peer, in_path, cert)
        else:
            self._relay(rt, tls, header, from_peer, in_path, cert)

    def _denylisted(self, rt: Runtime, tls: ssl.SSLSocket, cert: PeerCert, peer_ip: str) -> bool:
        """Reset (logged) a connection whose certificate the denylist refuses; True if it did."""
        denied = rt.contexts.denied(cert)
        if denied is None:
            return False
        reset(tls)
        event(log, "tunnel.reject", peer=peer_ip, reason="denylisted", detail=denied, level=logging.WARNING)
        return True

    def _forbidden(self, rt: Runtime, tls: ssl.SSLSocket, header: StreamHeader, authenticated: str, via: PeerConfig | None, peer_ip: str) -> bool:
        """Refuse (FORBIDDEN, logged) a header that claims what `authenticated` may not (dataplane.trust); True if refused."""
        reason = rt.trust.refusal(header, authenticated, via)
        if reason is None:
            return False
        self._refuse(tls, Status.FORBIDDEN)
        event(log, "stream.forbidden", peer=peer_ip, identity=authenticated, claimed=header.identity, proto=header.proto_name,
              src=f"{header.src}:{header.sport}", dst=f"{header.dst}:{header.dport}", reason=reason, level=logging.WARNING)
        return True

    def _accept_inner(self, rt: Runtime, tls: ssl.SSLSocket, header: StreamHeader, peer_ip: str) -> tuple[ssl.SSLSocket, PeerCert] | None:
        """Leave a direct peer's tunnel TLS and accept its end-to-end session on the same connection.

        The inner session must carry the header's identity, not be denylisted
        and repeat the header (the ingress sends it again inside, as it does
        through a splicing relay).
        """
        deadline = time.monotonic() + rt.config.timeouts.handshake
        try:
            plain = _unwrap(tls)
            inner = rt.contexts.server.wrap_socket(plain, server_side=True, do_handshake_on_connect=False)
            deadlines.handshake(inner, deadline)
            cert = rt.contexts.check_denylist(inner)
            again, _raw = read_header(inner, deadline)
        except (OSError, ssl.SSLError, ValueError, HeaderError) as exc:
            reset(tls)
            event(log, "tunnel.reject", peer=peer_ip, reason=f"inner {type(exc).__name__}", detail=str(exc), level=logging.WARNING)
            return None
        if header.identity not in cert.identities or again != header:
            reset(inner)
            event(log, "tunnel.reject", peer=peer_ip, reason="inner session does not match its header", level=logging.WARNING)
            return None
        return inner, cert

    def _reply(self, tls: ssl.SSLSocket, status: Status, rule: str | None = None) -> bool:
        try:
            tls.sendall(encode_reply(status, rule))
            return True
        except (OSError, ssl.SSLError):
            return False

    def _refuse(self, tls: ssl.SSLSocket, status: Status, rule: str | None = None) -> None:
        """Reply and close gracefully so the reply reaches the ingress before the FIN."""
        self._reply(tls, status, rule)
        try:
            tls.close()
        except OSError:
            pass

    def _deliver(self, rt: Runtime, tls: ssl.SSLSocket, header: StreamHeader, from_peer: str, in_path: str, cert: PeerCert) -> None:
        started = time.monotonic()
        verdict, rule = verdict_for(rt.policy, header.src, header.dst, header.proto_name, header.policy_port)
        common = {"path": in_path, "peer": from_peer, "dst_identity": rt.config.identity}
        if verdict == "deny":
            self._refuse(tls, Status.DENIED, rule)
            event(log, "flow.deny", stage="egress", proto=header.proto_name, src=f"{header.src}:{header.sport}", dst=f"{header.dst}:{header.dport}", rule=rule or "default", identity=header.identity)
            self._emit(rt, "egress", header, started, verdict="deny", rule=rule, outcome=Outcome.REFUSED.value, **common)
            return
        try:
            conn = self._connect(rt, header) if header.proto == TCP else self._destination(rt, header)
        except OSError as exc:
            self._refuse(tls, Status.UNREACHABLE)
            event(log, "flow.unreachable", dst=f"{header.dst}:{header.dport}", error=type(exc).__name__, level=logging.WARNING)
            self._emit(rt, "egress", header, started, verdict="error", rule=rule, outcome=Outcome.REFUSED.value, **common)
            return
        if not self._reply(tls, Status.OK):
            conn.close() if isinstance(conn, Endpoint) else reset(conn)
            reset(tls)
            return
        pump: Pump
        if isinstance(conn, Endpoint):
            pump = DatagramPump(conn, tls, proto=header.proto, idle=rt.config.timeouts.datagram_idle, park_after=rt.config.timeouts.park)
        else:
            pump = BytePump(tls, conn, idle=rt.config.timeouts.idle, park_after=rt.config.timeouts.park, framed="a")
        self._run(pump, from_peer, in_path, lambda result: self._emit(
            rt, "egress", header, started, verdict="permit", rule=rule, bytes_up=result.up, bytes_down=result.down,
            outcome=result.outcome.value, **common,
        ), Claim("egress", header, cert))

    def _connect(self, rt: Runtime, header: StreamHeader) -> socket.socket:
        """Connect to the destination, from the original source address when configured for it (`preserve_source_for`)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rt.config.preserve_source_for(header.dst):
                sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
                sock.bind((str(header.src), 0))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(rt.config.timeouts.connect)
            sock.connect((str(header.dst), header.dport))
        except BaseException:
            sock.close()
            raise
        return sock

    def _destination(self, rt: Runtime, header: StreamHeader) -> Endpoint:
        """The delivering side of a datagram flow: a UDP socket (original source kept when configured), or
        echoes from the original source through the agent's ICMP TUN (when configured and the TUN covers
        the flow), else re-originated from this agent's own address."""
        if header.proto == UDP:
            return udp_destination(header.src, header.dst, header.dport, preserve_source=rt.config.preserve_source_for(header.dst))
        assert header.proto == ICMP
        if rt.config.preserve_source_for(header.dst) and self._icmp_delivery is not None:
            endpoint = self._icmp_delivery(header.src, header.dst, header.sport)
            if endpoint is not None:
                return endpoint
        return IcmpOrigin(header.dst).endpoint()

    def _onward_peer(self, rt: Runtime, tls: ssl.SSLSocket, header: StreamHeader, from_peer: PeerConfig, started: float) -> PeerConfig | None:
        """The peer a relayed stream goes on to; None (refused NO_ROUTE, logged) when there is none but where it came from."""
        peer = rt.router.peer_for(header.dst)
        if peer is not None and peer.name != from_peer.name:
            return peer
        self._refuse(tls, Status.NO_ROUTE)
        event(log, "flow.no_route", dst=str(header.dst), via=from_peer.name, level=logging.WARNING)
        self._emit(rt, "relay", header, started, verdict="error", outcome=Outcome.REFUSED.value, peer=from_peer.name)
        return None

    def _splice(self, rt: Runtime, tls: ssl.SSLSocket, header: StreamHeader, from_peer: PeerConfig, in_path: str, cert: PeerCert) -> None:
        """An end-to-end stream: leave the ingress's TLS, connect to the next agent, splice in the kernel."""
        started = time.monotonic()
        peer = self._onward_peer(rt, tls, header, from_peer, started)
        if peer is None:
            return
        path = self._pool.path_for(peer.name)
        try:
            # Unwrap first: the ingress starts its handshake with the far end while we connect to it.
            tls.settimeout(rt.config.timeouts.handshake)
            plain = _unwrap(tls)
        except (OSError, ssl.SSLError) as exc:
            reset(tls)
            event(log, "tunnel.reject", peer=from_peer.name, reason=f"unwrap {type(exc).__name__}", level=logging.WARNING)
            return
        try:
            onward = socket.create_connection((peer_address(peer, path), peer.tunnel_port), timeout=rt.config.timeouts.connect)
        except OSError as exc:
            reset(plain)  # no TLS left to reply in: the ingress sees its handshake reset
            event(log, "tunnel.dial_failed", peer=peer.name, error=type(exc).__name__, level=logging.WARNING)
            self._emit(rt, "relay", header, started, verdict="error", outcome=Outcome.RESET.value, peer=peer.name)
            return
        onward.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tune_tunnel(onward, rt.config.timeouts)
        pump = SplicePump(plain, onward, idle=rt.config.timeouts.idle, park_after=rt.config.timeouts.park)
        self._run(pump, peer.name, path, lambda result: self._emit(
            rt, "relay", header, started, verdict="permit", bytes_up=result.up, bytes_down=result.down,
            outcome=result.outcome.value, path=path, peer=peer.name, dst_identity="",
        ), Claim("relay", header, cert))

    def _relay(self, rt: Runtime, tls: ssl.SSLSocket, header: StreamHeader, from_peer: PeerConfig, in_path: str, cert: PeerCert) -> None:
        started = time.monotonic()
        peer = self._onward_peer(rt, tls, header, from_peer, started)
        if peer is None:
            return
        try:
            onward = header.next_hop()
        except HeaderError:
            self._refuse(tls, Status.HOP_LIMIT)
            self._emit(rt, "relay", header, started, verdict="error", outcome=Outcome.REFUSED.value, peer=from_peer.name)
            return
        try:
            tunnel = self._pool.take(peer.name)
            tunnel.sock.settimeout(rt.config.timeouts.handshake)
            tunnel.sock.sendall(onward.encode())
        except (OSError, ssl.SSLError) as exc:
            self._refuse(tls, Status.UNREACHABLE)
            event(log, "tunnel.dial_failed", peer=peer.name, error=type(exc).__name__, level=logging.WARNING)
            self._emit(rt, "relay", header, started, verdict="error", outcome=Outcome.REFUSED.value, peer=peer.name)
            return
        pump = BytePump(tls, tunnel.sock, idle=rt.config.timeouts.idle, park_after=rt.config.timeouts.park)
        # Registered under the outgoing peer and path: that is the hop a failover replaces.
        self._run(pump, peer.name, tunnel.path, lambda result: self._emit(
            rt, "relay", header, started, verdict="permit", bytes_up=result.up, bytes_down=result.down,
            outcome=result.outcome.value, path=tunnel.path, peer=peer.name, dst_identity=peer.identity,
        ), Claim("relay", header, cert))


def refusal_now(rt: Runtime, claim: Claim) -> str | None:
    """Why the config in `rt` refuses a stream admitted earlier on `claim` (None: it may go on).

    The checks of admission again, minus the mode (a stream already running
    keeps its wire format): the denylist for the other end, the trust rules
    for a sender, and the policy where this agent judged the flow (ingress,
    delivery).
    """
    if denied := rt.contexts.denied(claim.cert):
        return denied
    header = claim.header
    if claim.role != "ingress":
        authenticated = header.identity if header.identity in claim.cert.identities else _first(claim.cert)
        if reason := rt.trust.refusal(header, authenticated, rt.router.by_identity.get(authenticated), check_mode=False):
            return reason
    if claim.role != "relay":
        verdict, rule = verdict_for(rt.policy, header.src, header.dst, header.proto_name, header.policy_port)
        if verdict == "deny":
            return f"policy rule {rule or 'default'} denies it"
    return None


def _first(cert: PeerCert) -> str:
    """The identity a certificate carries (the first URI SAN), or ""."""
    return cert.identities[0] if cert.identities else ""


def _dial_failed(peer: PeerConfig, exc: BaseException) -> None:
    """Log a failed tunnel or end-to-end session; an identity refusal says why (which identity answered)."""
    detail = {"detail": str(exc)} if isinstance(exc, PeerIdentityError) else {}
    event(log, "tunnel.dial_failed", peer=peer.name, error=type(exc).__name__, **detail, level=logging.WARNING)
