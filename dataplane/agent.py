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

from dataplane import conntrack, filter_table, intercept, sysctl
from dataplane.admission import Admission, Slot
from dataplane.icmp_reject import RejectCounts
from dataplane.icmp_intercept import IcmpInterceptor
from dataplane.icmp_routing import IcmpPlan, remove_rules
from dataplane.udp_intercept import UdpInterceptor
from dataplane.config import AgentConfig, ConfigError, Endpoint, load_config
from dataplane.denylog import DeniedPacket
from dataplane.health import Health
from dataplane.filter_compile import CompiledPolicy, PolicyTooComplexError, compile_policy
from dataplane.forward import IP_TRANSPARENT, FlowRecord, Forwarder, Router, Runtime
from dataplane.geneve import gateway as geneve_gateway
from dataplane.geneve.gateway import GeneveGateway
from dataplane.intercept import InterceptPlan
from dataplane.logfmt import event
from dataplane.metrics import Sources
from dataplane.observe import Observer
from dataplane.parking import Parking
from dataplane.pump import reset
from dataplane.runstate import RunState
from dataplane.paths import PathMonitor
from dataplane.tls import TlsContexts, build_contexts, own_credential_problems
from dataplane.trust import Trust
from dataplane.tunnel import TunnelPool
from dataplane.workers import Workers

log = logging.getLogger("dataplane.agent")

# accept() errors that say "not now" rather than "this socket is gone".
_TRANSIENT_ACCEPT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EPROTO, errno.EPERM}
SIGNAL_POLL = 0.1  # seconds between looks at the reload and stop flags
HOUSEKEEPING = 1.0  # seconds between reaps of idle tunnels and malloc trims
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
    """A listening TCP socket with an accept thread that hands each admitted connection to a handler thread.

    Each connection takes an admission slot (`dataplane.admission`) before it
    gets a thread: past a cap, or when the system refuses a thread, it is reset
    at once and counted. The accept loop survives any exception; it ends only
    when the listener is stopped or its socket is gone.
    """

    def __init__(
        self, name: str, endpoint: Endpoint, handler: Callable[[socket.socket, Slot], None], workers: Workers,
        admission: Admission, *, transparent: bool = False, per_source: Callable[[str], bool] | None = None,
    ) -> None:
        self.name = name
        self._per_source = per_source  # does the per-source cap apply to this address? (None: never)
        self._workers = workers
        self._admission = admission
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

    def alive(self) -> bool:
        """Is the accept thread running (the health check)?"""
        return self._thread.is_alive() and not self._stopped

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
                conn, addr = self._sock.accept()
            except OSError as exc:
                if self._stopped or exc.errno not in _TRANSIENT_ACCEPT:
                    if not self._stopped:
                        event(log, "listener.failed", listener=self.name, error=exc.strerror, level=logging.ERROR)
                    return
                # Out of descriptors or memory: keep the listener, shed load for a moment.
                event(log, "listener.accept_failed", listener=self.name, error=exc.strerror, level=logging.WARNING)
                time.sleep(0.05)
                continue
            try:
                self._admit(conn, addr[0])
            except Exception as exc:  # whatever goes wrong with one connection, the listener keeps accepting
                reset(conn)
                event(log, "listener.accept_failed", listener=self.name, error=repr(exc), level=logging.ERROR)
                time.sleep(0.01)

    def _admit(self, conn: socket.socket, source: str) -> None:
        slot = self._admission.open(source, per_source=self._per_source is not None and self._per_source(source))
        if isinstance(slot, str):
            reset(conn)
            return
        try:
            self._workers.submit(self._safe, conn, slot)
        except Exception as exc:  # RuntimeError: can't start new thread
            slot.release()
            reset(conn)
            self._admission.refused("threads", listener=self.name, error=repr(exc))
            time.sleep(0.01)  # the system is short of threads: give running streams a moment to end

    def _safe(self, conn: socket.socket, slot: Slot) -> None:
        try:
            self._handler(conn, slot)
        except Exception as exc:  # one broken stream must never take the listener down
            event(log, "stream.crash", listener=self.name, error=repr(exc), level=logging.ERROR)
            try:
                conn.close()
            except OSError:
                pass
        finally:
            slot.release()


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

    def alive(self) -> bool:
        """Are both the TCP accept thread and the UDP reader running?"""
        return self.tcp.alive() and self.udp.alive()


class Agent:
    """The running agent: owns every listener, kernel object and helper it starts."""

    def __init__(self, config_path: Path, config: AgentConfig) -> None:
        self.config_path = config_path
        self._runtime = _runtime(config, build_contexts(config.tls, config.denylist), compile_policy(config.filter))
        self._reload = threading.Event()
        self._stop = threading.Event()
        self.workers = Workers("stream")
        self._sysctl_previous: dict[str, str] = {}
        self._state = RunState(config.state_dir, config.name)
        self._forwarding_was: str | None = None
        self._intercept: InterceptPlan | None = None
        self._filter_installed: str | None = None
        self._icmp: IcmpInterceptor | None = None
        self._geneve: GeneveGateway | None = None
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
        self.admission = self.forwarder.admission
        self.observer = Observer(
            config,
            sources=Sources(
                paths=lambda: self.paths.stats(),
                active_paths=lambda: {peer.name: self.paths.active(peer.name) for peer in self.config.peers},
                tunnels=self._tunnels,
                streams=self.forwarder.active,
                filter_counters=self._filter_counters,
                icmp_errors=self.reject_counts.snapshot,
                refused=self.admission.snapshot,
                geneve=lambda: self._geneve.counts() if self._geneve else None,
                geneve_flows=lambda: self._geneve.flow_count() if self._geneve else None,
                geneve_fastpath=lambda: self._geneve.fast_path() if self._geneve else None,
            ),
            rtt=self._rtt,
            on_deny=self._kernel_denied,
        )
        self._tunnel_listener: Listener | None = None
        self._intercept_listener: InterceptListeners | None = None
        self._reopen = threading.Event()
        self._kernel_problem: str | None = None  # set when a rollback failed: /healthz fails until a reload succeeds
        self.health = Health(self._health_info)
        self.health.add("listeners", self._check_listeners)
        self.health.add("filter_table", self._check_filter_table)
        self.health.add("peers", self._check_peers)
        self.health.add("kernel", lambda: (self._kernel_problem is None, self._kernel_problem or "as configured"))

    @property
    def config(self) -> AgentConfig:
        """The config in force."""
        return self._runtime.config

    # ---- lifecycle -----------------------------------------------------

    def start(self) -> None:
        """Bring every part up; on failure, undo what was done and re-raise."""
        try:
            self._apply_sysctls()
            self._remove_leftovers()
            self._tunnel_listener = Listener("tunnel", self.config.listen.tunnel, self.forwarder.handle_tunnel, self.workers, self.admission,
                                             per_source=self._not_a_peer)
            self._intercept_listener = self._make_intercept_listener(self.config)
            self._install_kernel(self.config, self._runtime.policy)
            self._record_kernel()
            self.paths.start()
            self.observer.start(health=self.health.report, on_refused=lambda: self.admission.refused("metrics_connections"))
            self._tunnel_listener.start()
            if self._intercept_listener:
                self._intercept_listener.start()
        except BaseException:
            self.teardown()
            raise
        event(log, "agent.start", node=self.config.name, role=self.config.role, peers=len(self.config.peers))

    def _apply_sysctls(self) -> None:
        """Set the sysctls, first recording the values from before any run of the agent (they survive a SIGKILL)."""
        recorded = self._state.load()
        original = {**sysctl.changes(), **recorded.get("sysctl", {})}  # a recorded value predates a killed run's changes
        self._forwarding_was = recorded.get("ip_forward") or sysctl.read("net.ipv4.ip_forward")
        self._state.update(sysctl=original, ip_forward=self._forwarding_was)
        sysctl.apply()
        self._sysctl_previous = original

    def _remove_leftovers(self) -> None:
        """Remove the kernel objects an earlier run recorded (by their names then, whatever the config says now)."""
        left = self._state.load()
        if left.get("intercept"):
            plan = left["intercept"]
            _quiet(lambda: intercept.remove(InterceptPlan(plan["table"], (), (), 0, plan["fwmark"], plan["route_table"], plan["rule_priority"])),
                   "leftover intercept")
        if left.get("filter_table"):
            _quiet(lambda: filter_table.remove(left["filter_table"]), "leftover filter")
        if left.get("icmp"):
            icmp = left["icmp"]
            _quiet(lambda: remove_rules(IcmpPlan(icmp["tun"], icmp["route_table"], icmp["rule_priority"], (), ())), "leftover icmp")
        if left.get("geneve"):
            gnv = left["geneve"]
            _quiet(lambda: geneve_gateway.remove(geneve_gateway.GenevePlan(gnv["tun"], 0, gnv["fwmark"], gnv["route_table"], gnv["rule_priority"],
                                                                           gnv["nft_table"], None)), "leftover geneve")
        self._state.update(intercept=None, filter_table=None, icmp=None, geneve=None)

    def _record_kernel(self) -> None:
        """Record the kernel objects installed now, by name (what a restart after SIGKILL removes)."""
        plan, icmp = self._intercept, self._icmp
        gnv = self._geneve.plan if self._geneve else None
        try:
            self._state.update(
                intercept={"table": plan.table, "fwmark": plan.fwmark, "route_table": plan.route_table, "rule_priority": plan.rule_priority}
                if plan else None,
                filter_table=self._filter_installed,
                icmp={"tun": icmp.plan.tun, "route_table": icmp.plan.route_table, "rule_priority": icmp.plan.rule_priority} if icmp else None,
                geneve={"tun": gnv.tun, "fwmark": gnv.fwmark, "route_table": gnv.route_table, "rule_priority": gnv.rule_priority,
                        "nft_table": gnv.nft_table} if gnv else None,
            )
        except OSError as exc:  # the objects work; only a restart after SIGKILL would miss them
            event(log, "runstate.write_failed", path=str(self._state.path), error=str(exc), level=logging.ERROR)

    def _make_intercept_listener(self, config: AgentConfig) -> InterceptListeners | None:
        if not (config.local_cidrs and config.remote_cidrs()):
            return None
        endpoint = Endpoint(host="127.0.0.1", port=config.listen.intercept_port)  # type: ignore[arg-type]
        tcp = Listener("intercept", endpoint, self.forwarder.handle_intercepted, self.workers, self.admission, transparent=True)
        try:
            udp = UdpInterceptor(config.listen.intercept_port, self.forwarder.handle_datagrams, self.workers, wanted=self._intercepts,
                                 reject_counts=self.reject_counts, admission=self.admission, limits=self._datagram_limits)
        except OSError:
            tcp.stop()
            raise
        return InterceptListeners(tcp, udp)

    def _not_a_peer(self, address: str) -> bool:
        """Is `address` none of the configured peers' addresses (so the per-source handshake cap applies)?"""
        return self._runtime.router.peer_at(address) is None

    def _datagram_limits(self) -> tuple[int, int]:
        limits = self.config.limits
        return limits.datagram_sessions, limits.datagram_sessions_per_source

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
        icmp = IcmpInterceptor(wanted, self.forwarder.handle_datagrams, self.workers, admission=self.admission, limits=self._datagram_limits,
                               forwarding_was=self._forwarding_was)
        try:
            icmp.start()
        except OSError as exc:
            raise intercept.KernelError(f"ICMP interception: {exc}") from exc
        self._icmp = icmp

    def _install_kernel(self, config: AgentConfig, policy: CompiledPolicy) -> None:
        """Interception (TCP, UDP, ICMP) and filter table for `config` (each nft change one transaction)."""
        plan = InterceptPlan.from_config(config)
        if plan.local and plan.remote:
            intercept.check(plan)  # before anything changes: a table someone else uses is refused up front
        self._install_icmp(config)
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
        self._install_geneve(config)

    def _install_geneve(self, config: AgentConfig) -> None:
        """The GENEVE gateway: started, restarted on a change, or stopped to match `config` (after interception, which it feeds)."""
        icmp_tun = self._icmp.plan.tun if self._icmp else None
        current = self._geneve
        if current and current.settings == config.geneve and current.plan.icmp_tun == icmp_tun:
            return
        if current:
            current.stop()
            self._geneve = None
        if config.geneve is None:
            self.health.remove("geneve")
            return
        gateway = GeneveGateway(config.geneve, icmp_tun=icmp_tun)
        try:
            gateway.start()
        except OSError as exc:
            raise intercept.KernelError(f"GENEVE listener {config.geneve.listen.host}:{config.geneve.listen.port}: {exc.strerror or exc}") from exc
        self._geneve = gateway
        self.health.add("geneve", self._check_geneve)  # the load balancer's health check: can this target take GENEVE?

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
        if self._geneve:
            _quiet(self._geneve.stop, "geneve")
            self._geneve = None
        if self._icmp:
            icmp = self._icmp
            _quiet(icmp.stop, "icmp")
            self._icmp = None
        self.observer.stop()
        try:
            sysctl.restore(self._sysctl_previous)
            self._sysctl_previous = {}
            if self._kernel_problem is None:
                self._state.clear()  # everything is back as it was before the agent
        except OSError as exc:
            event(log, "teardown.failed", what="sysctl", error=str(exc), level=logging.ERROR)

    def run(self) -> ExitCode:
        """The reconcile loop: act on flags, reap idle tunnels, until asked to stop."""
        housekeeping = 0.0
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                try:
                    self.reload()
                except Exception as exc:  # a reload must never end the agent: what runs keeps running
                    event(log, "agent.reload_failed", error=repr(exc), level=logging.ERROR)
            if self._reopen.is_set():
                self._reopen.clear()
                self.observer.reopen()
            if time.monotonic() >= housekeeping:
                self.pool.reap()
                self.observer.tick()
                if self._geneve:
                    self._geneve.revive()
                _trim_malloc()
                housekeeping = time.monotonic() + HOUSEKEEPING
            # Short waits: a signal handler cannot wake Event.wait, and a reload must act (and re-judge open flows) at once.
            self._stop.wait(SIGNAL_POLL)
        self.drain()
        return ExitCode.OK

    def request_reload(self) -> None:
        """Signal-safe: ask the loop to reload."""
        self._reload.set()

    def request_reopen(self) -> None:
        """Signal-safe: ask the loop to reopen the flow log (SIGUSR1, after log rotation)."""
        self._reopen.set()

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
            if problems := own_credential_problems(new.tls, new.identity, new.denylist):
                raise ConfigError(problems)
            contexts = build_contexts(new.tls, new.denylist)
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
                tunnel_listener = Listener("tunnel", new.listen.tunnel, self.forwarder.handle_tunnel, self.workers, self.admission,
                                           per_source=self._not_a_peer)
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
        except Exception as exc:  # KernelError, FilterTableError, a netlink or OS error: whatever the kernel said
            event(log, "agent.reload_refused", reason="kernel", error=str(exc), level=logging.ERROR)
            for listener, current in ((tunnel_listener, self._tunnel_listener), (intercept_listener, self._intercept_listener)):
                if listener is not None and listener is not current:
                    listener.stop()
            self._roll_back(old, old_policy)
            return False
        self._kernel_problem = None
        self._record_kernel()
        self._runtime = runtime = _runtime(new, contexts, policy)
        self._rejudge(runtime, denylist_changed=new.denylist != old.denylist)
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

    def _roll_back(self, old: AgentConfig, old_policy: CompiledPolicy) -> None:
        """Put the old config's kernel objects back; a failure here is reported (log, /healthz), never fatal."""
        try:
            self._install_kernel(old, old_policy)
            event(log, "agent.rolled_back", node=old.name)
        except Exception as exc:
            self._kernel_problem = f"rollback failed: {exc}"
            event(log, "agent.rollback_failed", error=str(exc), level=logging.ERROR)
        self._record_kernel()

    def _rejudge(self, runtime: Runtime, *, denylist_changed: bool) -> None:
        """Reset the open streams the reloaded config refuses, and forget their conntrack entries.

        Where this agent intercepted the flow (ingress) the conntrack entry is
        the application's own 5-tuple: removing it makes the flow's next packet
        new, so the kernel filter table judges it against the new policy.
        """
        if denylist_changed:
            self.pool.flush()  # warm tunnels and cached sessions may belong to a certificate denied now
        doomed = self.forwarder.rejudge(runtime)
        for claim, reason in doomed:
            header = claim.header
            event(log, "flow.revoked", role=claim.role, proto=header.proto_name, src=f"{header.src}:{header.sport}",
                  dst=f"{header.dst}:{header.dport}", identity=header.identity, reason=reason, level=logging.WARNING)
        flows = [claim.header.five_tuple() for claim, _ in doomed if claim.role == "ingress"]
        if flows:
            try:
                conntrack.forget(flows)
            except OSError as exc:
                event(log, "conntrack.forget_failed", flows=len(flows), error=str(exc), level=logging.WARNING)

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

    def _check_listeners(self) -> tuple[bool, str]:
        """The tunnel listener accepts, and so do the interception listeners when the agent intercepts."""
        dead = [name for name, listener in (("tunnel", self._tunnel_listener), ("intercept", self._intercept_listener))
                if listener is not None and not listener.alive()]
        if self._tunnel_listener is None:
            dead.append("tunnel (not started)")
        return (not dead, f"not accepting: {', '.join(dead)}" if dead else "accepting")

    def _check_filter_table(self) -> tuple[bool, str]:
        """An agent that intercepts has its filter table in the kernel (someone may have flushed nftables)."""
        if self._intercept is None:
            return True, "not intercepting"
        if self._filter_installed is None:
            return False, "filter table not installed"
        try:
            filter_table.read_counters(self._filter_installed)
        except Exception as exc:
            return False, f"table {self._filter_installed} unreadable: {exc}"
        return True, self._filter_installed

    def _check_peers(self) -> tuple[bool, str]:
        """Every peer is reachable on at least one path (probes get through)."""
        cut = [peer.name for peer in self.config.peers if not (self.paths.is_up(peer.name, "private") or self.paths.is_up(peer.name, "public"))]
        return (not cut, f"no path to {', '.join(cut)}" if cut else f"{len(self.config.peers)} peers reachable")

    def _health_info(self) -> dict[str, object]:
        """The informational part of the /healthz document."""
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


    def _check_geneve(self) -> tuple[bool, str]:
        """The GENEVE worker runs and its loop is awake, and the TUN is up (`GeneveGateway.check`)."""
        if self._geneve is None:
            return False, "GENEVE gateway not running"
        result = self._geneve.check()
        return bool(result["ok"]), str(result.get("problem") or f"{result.get('flows', 0)} flows")


def _runtime(config: AgentConfig, contexts: TlsContexts, policy: CompiledPolicy) -> Runtime:
    """Everything a stream reads of a (re)loaded config, built once."""
    return Runtime(config, contexts, Router(config), policy, Trust.from_config(config))


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
    if problems := own_credential_problems(config.tls, config.identity, config.denylist):
        for problem in problems:
            event(log, "config.invalid", problem=problem, level=logging.ERROR)
        return ExitCode.CONFIG_INVALID
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
    signal.signal(signal.SIGUSR1, lambda *_: agent.request_reopen())
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
