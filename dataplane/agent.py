"""`transit-agent --config FILE`: reconcile an AgentConfig into kernel and process state.

Start: validate the config, load TLS, set sysctls, bind the listeners, install
interception and the filter table, start path probing and metrics, then wait.
Signal handlers only set flags (ExaBGP style); the loop acts on them:

- SIGHUP: reload. A config (or TLS file) that fails is logged and refused; the
  running state keeps working. A good one is diffed against the running one:
  listeners rebound if their address changed, interception and filter tables
  replaced atomically, path probing restarted if peers changed, streams to
  removed peers reset, and new streams use the new config at once.
- SIGTERM/SIGINT: drain. Stop accepting, wait up to `timeouts.drain` for open
  streams, reset the rest, remove every kernel object the agent made, restore
  sysctls, exit 0.

Logs are `subsystem.event key=value` lines on stderr.
"""
from __future__ import annotations

import argparse
import ctypes
import enum
import errno
import importlib.metadata
import logging
import resource
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

from dataplane import filter_table, intercept, sysctl
from dataplane.datagram import RejectCounts
from dataplane.datagram_intercept import IcmpInterceptor, IcmpPlan, UdpInterceptor
from dataplane.config import AgentConfig, ConfigError, Endpoint, load_config
from dataplane.denylog import DeniedPacket
from dataplane.filter_compile import CompiledPolicy, PolicyTooComplexError, compile_policy
from dataplane.forward import IP_TRANSPARENT, FlowRecord, Forwarder, Router, Runtime
from dataplane.intercept import InterceptPlan
from dataplane.logfmt import event
from dataplane.metrics import Sources
from dataplane.observe import Observer
from dataplane.parking import Parking
from dataplane.paths import PathMonitor
from dataplane.tls import build_contexts
from dataplane.tunnel import TunnelPool
from dataplane.workers import Workers

log = logging.getLogger("dataplane.agent")

# accept() errors that say "not now" rather than "this socket is gone".
_TRANSIENT_ACCEPT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EPROTO, errno.EPERM}
THREAD_STACK = 256 * 1024  # many stream threads; each needs little stack
MALLOC_ARENAS = 2  # glibc gives each busy thread its own arena; with a thread per stream that multiplies idle memory
_M_ARENA_MAX = -8  # malloc.h
_LIBC = ctypes.CDLL(None)


class ExitCode(enum.IntEnum):
    """Process exit codes (documented in docs/dataplane.md)."""

    OK = 0
    ERROR = 1
    CONFIG_INVALID = 2
    STARTUP_FAILED = 3


class Listener:
    """A listening TCP socket with an accept thread that hands each connection to a handler thread."""

    def __init__(
        self, name: str, endpoint: Endpoint, handler: Callable[[socket.socket], None], workers: Workers, *, transparent: bool = False
    ) -> None:
        self.name = name
        self._workers = workers
        self.endpoint = endpoint
        self.transparent = transparent
        self._handler = handler
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if transparent:
                self._sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            self._sock.bind((str(endpoint.host), endpoint.port))
            self._sock.listen(4096)
        except OSError:
            self._sock.close()
            raise
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, name=f"accept-{name}", daemon=True)

    def start(self) -> None:
        """Begin accepting."""
        self._thread.start()
        event(log, "listener.start", listener=self.name, addr=f"{self.endpoint.host}:{self.endpoint.port}")

    def stop(self) -> None:
        """Stop accepting; connections already handed over keep running."""
        self._stopped = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _addr = self._sock.accept()
            except OSError as exc:
                if self._stopped or exc.errno not in _TRANSIENT_ACCEPT:
                    return
                # Out of descriptors or memory: keep the listener, shed load for a moment.
                event(log, "listener.accept_failed", listener=self.name, error=exc.strerror, level=logging.WARNING)
                time.sleep(0.05)
                continue
            self._workers.submit(self._safe, conn)

    def _safe(self, conn: socket.socket) -> None:
        try:
            self._handler(conn)
        except Exception as exc:  # one broken stream must never take the listener down
            event(log, "stream.crash", listener=self.name, error=repr(exc), level=logging.ERROR)
            try:
                conn.close()
            except OSError:
                pass


class InterceptListeners:
    """The transparent TCP listener and the transparent UDP socket, which share the intercept port."""

    def __init__(self, tcp: Listener, udp: UdpInterceptor) -> None:
        self.tcp = tcp
        self.udp = udp

    def start(self) -> None:
        """Begin accepting connections and datagrams."""
        self.tcp.start()
        self.udp.start()

    def stop(self) -> None:
        """Stop taking new flows; running ones keep going."""
        self.tcp.stop()
        self.udp.stop()


class Agent:
    """The running agent: owns every listener, kernel object and helper it starts."""

    def __init__(self, config_path: Path, config: AgentConfig) -> None:
        self.config_path = config_path
        self._runtime = Runtime(config, build_contexts(config.tls), Router(config), compile_policy(config.filter))
        self._reload = threading.Event()
        self._stop = threading.Event()
        self.workers = Workers("stream")
        self._sysctl_previous: dict[str, str] = {}
        self._intercept: InterceptPlan | None = None
        self._filter_installed: str | None = None
        self._icmp: IcmpInterceptor | None = None
        self.paths = PathMonitor.from_config(config, on_change=self._path_changed)
        self.pool = TunnelPool(
            contexts=lambda: self._runtime.contexts,
            peers=lambda: {peer.name: peer for peer in self._runtime.config.peers},
            paths=self.paths,
            timeouts=lambda: self._runtime.config.timeouts,
            warm=lambda: self._runtime.config.warm_tunnels,
            workers=self.workers,
        )
        self.parking = Parking()
        self.reject_counts = RejectCounts()  # ICMP errors for refused UDP, across every UDP interceptor of this run
        self.forwarder = Forwarder(
            runtime=lambda: self._runtime, pool=self.pool, parking=self.parking, workers=self.workers, on_flow=self._flow_closed,
            icmp_delivery=lambda src, dst, ident: self._icmp.delivery(src, dst, ident) if self._icmp else None,
        )
        self.observer = Observer(
            config,
            sources=Sources(
                paths=lambda: self.paths.stats(),
                active_paths=lambda: {peer.name: self.paths.active(peer.name) for peer in self.config.peers},
                tunnels=self._tunnels,
                streams=self.forwarder.active,
                filter_counters=self._filter_counters,
                icmp_errors=self.reject_counts.snapshot,
            ),
            rtt=self._rtt,
            on_deny=self._kernel_denied,
        )
        self._tunnel_listener: Listener | None = None
        self._intercept_listener: InterceptListeners | None = None

    @property
    def config(self) -> AgentConfig:
        """The config in force."""
        return self._runtime.config

    # ---- lifecycle -----------------------------------------------------

    def start(self) -> None:
        """Bring every part up; on failure, undo what was done and re-raise."""
        try:
            self._sysctl_previous = sysctl.apply()
            self._tunnel_listener = Listener("tunnel", self.config.listen.tunnel, self.forwarder.handle_tunnel, self.workers)
            self._intercept_listener = self._make_intercept_listener(self.config)
            self._install_kernel(self.config, self._runtime.policy)
            self.paths.start()
            self.observer.start(health=self.health)
            self._tunnel_listener.start()
            if self._intercept_listener:
                self._intercept_listener.start()
        except BaseException:
            self.teardown()
            raise
        event(log, "agent.start", node=self.config.name, role=self.config.role, peers=len(self.config.peers))

    def _make_intercept_listener(self, config: AgentConfig) -> InterceptListeners | None:
        if not (config.local_cidrs and config.remote_cidrs()):
            return None
        endpoint = Endpoint(host="127.0.0.1", port=config.listen.intercept_port)  # type: ignore[arg-type]
        tcp = Listener("intercept", endpoint, self.forwarder.handle_intercepted, self.workers, transparent=True)
        try:
            udp = UdpInterceptor(config.listen.intercept_port, self.forwarder.handle_datagrams, self.workers, wanted=self._intercepts,
                                 reject_counts=self.reject_counts)
        except OSError:
            tcp.stop()
            raise
        return InterceptListeners(tcp, udp)

    def _intercepts(self, src: str, dst: str) -> bool:
        """Is (src, dst) a flow interception takes under the config in force: local source, remote destination?"""
        rt = self._runtime
        source, destination = IPv4Address(src), IPv4Address(dst)
        return any(source in cidr for cidr in rt.config.local_cidrs) and rt.router.peer_for(destination) is not None

    def _install_icmp(self, config: AgentConfig) -> None:
        """The ICMP TUN, its route and rules: created, updated or removed to match `config`."""
        settings = config.intercept
        wanted = IcmpPlan(settings.icmp_tun, settings.icmp_route_table, settings.icmp_rule_priority,
                          tuple(config.local_cidrs), tuple(config.remote_cidrs()))
        current = self._icmp
        if current and (current.plan.tun, current.plan.route_table, current.plan.rule_priority) != (
            wanted.tun, wanted.route_table, wanted.rule_priority
        ):
            current.stop()
            self._icmp = current = None
        if not (wanted.local and wanted.remote):
            if current:
                current.stop()
                self._icmp = None
            return
        if current:
            current.update(wanted)
            return
        icmp = IcmpInterceptor(wanted, self.forwarder.handle_datagrams, self.workers)
        try:
            icmp.start()
        except OSError as exc:
            raise intercept.KernelError(f"ICMP interception: {exc}") from exc
        self._icmp = icmp

    def _install_kernel(self, config: AgentConfig, policy: CompiledPolicy) -> None:
        """Interception (TCP, UDP, ICMP) and filter table for `config` (each nft change one transaction)."""
        self._install_icmp(config)
        plan = InterceptPlan.from_config(config)
        if self._intercept and self._intercept != plan and (
            self._intercept.table != plan.table or self._intercept.fwmark != plan.fwmark or self._intercept.route_table != plan.route_table
        ):
            intercept.remove(self._intercept)
            self._intercept = None
        if plan.local and plan.remote:
            intercept.apply(plan, forward_drop=bool(self._icmp and self._icmp.forwarding_enabled))
            self._intercept = plan
        elif self._intercept:
            intercept.remove(self._intercept)
            self._intercept = None
        if self._filter_installed and self._filter_installed != config.filter_table:
            filter_table.remove(self._filter_installed)
            self._filter_installed = None
        if self._intercept:
            # Ingress enforcement in the kernel: judged on the original 5-tuple at input, intercepted packets only.
            filter_table.apply(policy, table=config.filter_table, hook="input", mark=plan.fwmark)
            self._filter_installed = config.filter_table
        elif self._filter_installed:
            filter_table.remove(self._filter_installed)  # nothing is intercepted any more
            self._filter_installed = None

    def teardown(self) -> None:
        """Remove everything this agent made; safe to call more than once."""
        for listener in (self._tunnel_listener, self._intercept_listener):
            if listener:
                listener.stop()
        self._tunnel_listener = self._intercept_listener = None
        self.paths.stop()
        self.pool.flush()
        if self._intercept:
            _quiet(lambda: intercept.remove(self._intercept), "intercept")  # type: ignore[arg-type]
            self._intercept = None
        if self._filter_installed:
            table = self._filter_installed
            _quiet(lambda: filter_table.remove(table), "filter")
            self._filter_installed = None
        if self._icmp:
            icmp = self._icmp
            _quiet(icmp.stop, "icmp")
            self._icmp = None
        self.observer.stop()
        sysctl.restore(self._sysctl_previous)
        self._sysctl_previous = {}

    def run(self) -> ExitCode:
        """The reconcile loop: act on flags, reap idle tunnels, until asked to stop."""
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            self.pool.reap()
            _trim_malloc()
            self._stop.wait(1.0)
        self.drain()
        return ExitCode.OK

    def request_reload(self) -> None:
        """Signal-safe: ask the loop to reload."""
        self._reload.set()

    def request_stop(self) -> None:
        """Signal-safe: ask the loop to drain and stop."""
        self._stop.set()

    def drain(self) -> None:
        """Stop accepting, let streams finish up to the drain timeout, reset the rest, tear down."""
        for listener in (self._tunnel_listener, self._intercept_listener):
            if listener:
                listener.stop()
        self._tunnel_listener = self._intercept_listener = None
        self.forwarder.abort_datagrams()  # a datagram flow only ends when idle: waiting for it would not help
        deadline = time.monotonic() + self.config.timeouts.drain
        while self.forwarder.active() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.forwarder.abort_all()
        self.parking.stop()  # wakes parked streams: they see the abort and end
        end = time.monotonic() + 2
        while self.forwarder.active() and time.monotonic() < end:
            time.sleep(0.02)
        self.teardown()
        event(log, "agent.stop", node=self.config.name, reset_streams=left)

    # ---- reload --------------------------------------------------------

    def reload(self) -> bool:
        """Apply the config file again; a bad one is refused and nothing changes."""
        try:
            new = load_config(self.config_path)
            contexts = build_contexts(new.tls)
            policy = compile_policy(new.filter)
        except ConfigError as exc:
            for problem in exc.problems:
                event(log, "config.invalid", problem=problem, level=logging.ERROR)
            event(log, "agent.reload_refused", reason="config", level=logging.ERROR)
            return False
        except (OSError, ssl.SSLError) as exc:
            event(log, "agent.reload_refused", reason="tls", error=str(exc), level=logging.ERROR)
            return False
        except PolicyTooComplexError as exc:
            event(log, "agent.reload_refused", reason="policy", error=str(exc), level=logging.ERROR)
            return False
        old, old_policy = self.config, self._runtime.policy
        try:
            tunnel_listener = self._tunnel_listener
            if new.listen.tunnel != old.listen.tunnel:
                tunnel_listener = Listener("tunnel", new.listen.tunnel, self.forwarder.handle_tunnel, self.workers)
            intercept_listener = self._intercept_listener
            if (new.listen.intercept_port, bool(new.local_cidrs and new.remote_cidrs())) != (
                old.listen.intercept_port, bool(old.local_cidrs and old.remote_cidrs())
            ):
                intercept_listener = self._make_intercept_listener(new)
        except OSError as exc:
            event(log, "agent.reload_refused", reason="listen", error=str(exc), level=logging.ERROR)
            return False
        try:
            self._install_kernel(new, policy)
        except (intercept.KernelError, filter_table.FilterTableError) as exc:
            event(log, "agent.reload_refused", reason="kernel", error=str(exc), level=logging.ERROR)
            for listener, current in ((tunnel_listener, self._tunnel_listener), (intercept_listener, self._intercept_listener)):
                if listener is not None and listener is not current:
                    listener.stop()
            self._install_kernel(old, old_policy)
            return False
        self._runtime = Runtime(new, contexts, Router(new), policy)
        for listener, current in ((tunnel_listener, self._tunnel_listener), (intercept_listener, self._intercept_listener)):
            if listener is not current:
                if current:
                    current.stop()
                if listener:
                    listener.start()
        self._tunnel_listener, self._intercept_listener = tunnel_listener, intercept_listener
        old_peers = {peer.name: peer for peer in old.peers}
        new_peers = {peer.name: peer for peer in new.peers}
        for name, peer in old_peers.items():
            if new_peers.get(name) != peer:
                self.pool.flush(name)
                if name not in new_peers:
                    for path in ("private", "public"):
                        self.forwarder.abort_path(name, path)
        if old_peers != new_peers or old.paths != new.paths or old.listen.probe != new.listen.probe:
            self.paths.stop()
            self.paths = PathMonitor.from_config(new, on_change=self._path_changed)
            self.pool.set_paths(self.paths)
            self.paths.start()
        self.observer.reconfigure(new)
        event(log, "agent.reloaded", node=new.name, peers=len(new.peers), rules=len(new.filter.rules))
        return True

    # ---- callbacks -----------------------------------------------------

    def _path_changed(self, peer: str, old: str, new: str) -> None:
        """Failover/failback: new streams take the new path; streams stuck on a dead path are reset."""
        flushed = self.pool.flush(peer)
        reset_streams = self.forwarder.abort_path(peer, old) if not self.paths.is_up(peer, old) else 0
        event(log, "path.change", peer=peer, old=old, new=new, warm_closed=flushed, reset_streams=reset_streams)

    def _kernel_denied(self, packet: DeniedPacket) -> None:
        """A datagram the kernel filter table refused: the UDP interceptor answers it with an ICMP error."""
        listener = self._intercept_listener
        if listener is not None and packet.proto == "udp":
            listener.udp.refuse_denied(packet.src, packet.dst, packet.head)

    def _flow_closed(self, record: FlowRecord) -> None:
        self.observer.flow(record)

    def _tunnels(self) -> dict[str, dict[str, int]]:
        """Open tunnels per peer and path: those carrying streams plus the warm ones."""
        counts = self.forwarder.by_path()
        for peer, by_path in self.pool.warm_count().items():
            for path, count in by_path.items():
                counts.setdefault(peer, {}).setdefault(path, 0)
                counts[peer][path] += count
        return counts

    def _filter_counters(self) -> dict[str, tuple[int, int]]:
        if not self._filter_installed:
            return {}
        return filter_table.read_counters(self._filter_installed)

    def _rtt(self, peer: str, path: str) -> float | None:
        value = self.paths.stats().get(peer, {}).get(path, {}).get("rtt_ms")
        return float(value) if value is not None else None

    def health(self) -> dict[str, object]:
        """The /healthz document."""
        return {
            "version": agent_version(),
            "node": self.config.name,
            "role": self.config.role,
            "identity": self.config.identity,
            "streams": self.forwarder.active(),
            "parked_streams": self.parking.count(),
            "warm_tunnels": self.pool.warm_count(),
            "paths": self.paths.stats(),
            "active_paths": {peer.name: self.paths.active(peer.name) for peer in self.config.peers},
        }


def agent_version() -> str:
    """The installed distribution's version (the repository's, in an image: docs/images.md)."""
    try:
        return importlib.metadata.version("multicloud-transit")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _quiet(action: Callable[[], None], what: str) -> None:
    try:
        action()
    except Exception as exc:
        event(log, "teardown.failed", what=what, error=str(exc), level=logging.ERROR)


def _trim_malloc() -> None:
    """Give freed heap pages back to the system.

    TLS handshakes allocate and free a lot of short-lived memory between the
    long-lived per-stream TLS state; the holes stay resident until trimmed.
    """
    try:
        _LIBC.malloc_trim(0)
    except AttributeError:
        pass


def _raise_file_limit() -> None:
    """Each stream holds two sockets (three at a relay counting warm tunnels): use the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _limit_malloc_arenas() -> None:
    """Cap glibc malloc arenas before the stream threads exist (a no-op on other C libraries)."""
    try:
        _LIBC.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except AttributeError:
        pass


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pyroute2").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Console script entry point."""
    parser = argparse.ArgumentParser(prog="transit-agent", description="multicloud-transit data plane agent")
    parser.add_argument("--config", required=True, type=Path, help="AgentConfig JSON file")
    parser.add_argument("--check", action="store_true", help="validate the config and exit (0 valid, 2 invalid)")
    parser.add_argument("--version", action="version", version=f"transit-agent {agent_version()}")
    args = parser.parse_args(argv)
    _setup_logging("info")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            event(log, "config.invalid", problem=problem, level=logging.ERROR)
        return ExitCode.CONFIG_INVALID
    logging.getLogger().setLevel(getattr(logging, config.log_level.upper()))
    if args.check:
        event(log, "config.valid", node=config.name)
        return ExitCode.OK
    threading.stack_size(THREAD_STACK)
    _limit_malloc_arenas()
    _raise_file_limit()
    try:
        agent = Agent(args.config, config)
    except (OSError, ssl.SSLError) as exc:
        event(log, "config.invalid", problem=f"tls: {exc}", level=logging.ERROR)
        return ExitCode.CONFIG_INVALID
    except PolicyTooComplexError as exc:
        event(log, "config.invalid", problem=f"filter: {exc}", level=logging.ERROR)
        return ExitCode.CONFIG_INVALID
    signal.signal(signal.SIGHUP, lambda *_: agent.request_reload())
    signal.signal(signal.SIGTERM, lambda *_: agent.request_stop())
    signal.signal(signal.SIGINT, lambda *_: agent.request_stop())
    try:
        agent.start()
    except (OSError, intercept.KernelError, filter_table.FilterTableError) as exc:
        event(log, "agent.start_failed", error=str(exc), level=logging.ERROR)
        return ExitCode.STARTUP_FAILED
    try:
        return agent.run()
    except Exception as exc:
        event(log, "agent.crash", error=repr(exc), level=logging.ERROR)
        agent.teardown()
        return ExitCode.ERROR


if __name__ == "__main__":
    sys.exit(main())
