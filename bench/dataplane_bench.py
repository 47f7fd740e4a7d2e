"""Data plane benchmark on seed 000's topology: raw routing vs chained stunnel vs transit-agent.

Run as root from the repository root: `python -m bench.dataplane_bench` (or
`make bench`). One run measures, side by side on the same namespaces, links
and CPUs:

- iperf3 throughput, one flow and 8 flows, `DURATION` seconds each, the
  median of `ROUNDS` runs (transit and stunnel interleaved, since stunnel
  dials the connector's own address and interception leaves it alone), for
  (a) raw routing without encryption (connector, edge A and edge B forward),
  (b) stunnel4 chained over the same hops (connector -> edge A -> edge B,
      TLS 1.3 with mutual certificates from the fabric CA, plaintext only on
      the application links; edge A decrypts and re-encrypts like our edge),
      and once more end to end (stunnel only at the connector and edge B,
      edge A routing the TLS): transit's own design built from a C proxy, the
      baseline that says whether what is left is the design or its code;
  (c) transit-agent (transparent interception, mutual TLS 1.3; by default
      end to end from connector to edge B with edge A splicing, and once
      more in hop-by-hop mode, where edge A re-encrypts like stunnel);
- time to first byte over `TTFB_CONNECTIONS` new connections, one after the
  other: through transit with warm tunnels (the default), through a cold
  tunnel (warm_tunnels=0: every connection dials and handshakes both TLS
  hops), and for raw and stunnel;
- throughput through transit with a 10-rule and a 10,000-rule policy (and on
  the raw path with the filter table on the connector's forward hook), plus
  the time to first byte with each, which is where a per-connection lookup
  would show;
- peak resident memory of each agent (fresh processes) while `FLOWS`
  concurrent flows are open through them, and memory and threads per agent
  with `FLOWS` UDP sessions once they have gone quiet.

It writes bench/results/dataplane.json and the dataplane section of
bench/README.md. Figures drift from run to run on a shared 2-core machine;
the ratios within one run are the comparison that holds.

`--quick [--rounds N]` measures only the single-flow rows (transit end to
end and the stunnel chain, interleaved, with each agent's CPU per GB), in
about a minute, prints them as JSON and writes nothing: the A/B check after
a change to the per-byte path (run it in two checkouts, alternating, and
compare transit to transit and each to its own stunnel figure).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from dataplane import filter_table, pki
from testbed.netns import Netns, UdpEcho, in_netns
from testbed.seed000 import AZ_APP, CONNECTOR, DEFAULT_POLICY, EDGE_A, EDGE_B, Seed000, identity

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "dataplane.json"
README = REPO / "bench" / "README.md"
COMMAND = "sudo .venv/bin/python -m bench.dataplane_bench   # or: make bench"

DURATION = 5  # seconds per iperf3 run
ROUNDS = 3  # single-flow samples per path (median reported)
ROUNDS_8FLOW = 2
ROUNDS_RULES = 3
TTFB_CONNECTIONS = 200
FLOWS = 1000
IPERF_PORT = 8001  # inside app-to-db's permitted 8000-8100
TTFB_PORT = 8002
UDP_PORT = 8004  # the UDP echo the datagram-session figure talks to
STUNNEL = "/usr/bin/stunnel4"
BENCH_TABLE = "bench_filter"

PATHS = ("raw", "stunnel", "stunnel_e2e", "transit", "transit_hop_by_hop")  # what the single-flow CPU figures cover

TARGETS = {
    "transit_vs_stunnel_single": 2.0,   # at least twice stunnel's single flow
    "transit_vs_raw_single": 0.5,       # at least half of raw
    "rules_10000_vs_10": 0.95,          # 10,000 rules within 5% of 10
    "cold_ttfb_p99_ms": 10.0,           # under 10 ms
    "agent_rss_mb_1000_flows": 150.0,   # under 150 MB per agent
}


# ---- policies -------------------------------------------------------------


def policy(rule_count: int) -> dict[str, Any]:
    """Seed 000's policy grown to `rule_count` rules with app pairs that never match the benchmark's traffic.

    The fillers sit before the permitting rule, so a linear scan would walk all
    of them for every benchmark connection: the worst case for rule count.
    """
    base = json.loads(json.dumps(DEFAULT_POLICY))
    base["rules"].append({"name": "app-udp", "action": "permit", "src": ["10.30.40.0/24"], "dst": ["172.18.40.0/24"],
                          "proto": "udp", "ports": [UDP_PORT]})
    head, tail = base["rules"][:1], base["rules"][1:]
    fillers = []
    for index in range(rule_count - len(base["rules"])):
        fillers.append({
            "name": f"app{index}",
            "action": "permit" if index % 2 else "deny",
            "src": [f"10.{100 + index // 256 % 100}.{index % 256}.0/24"],
            "dst": [f"172.{20 + index // 65536}.{index // 256 % 256}.{index % 256}/32"],
            "proto": "tcp",
            "ports": [1000 + index % 1000],
        })
    base["rules"] = head + fillers + tail
    return base


# ---- traffic --------------------------------------------------------------


class ByteServer:
    """In the far application namespace: send one byte on accept, read and drop whatever comes, hold until closed."""

    def __init__(self, ns: Netns, port: int) -> None:
        self._sock = ns.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("0.0.0.0", port))
        self._sock.listen(4096)
        self._sock.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._sock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self.open = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.2):
                if key.fileobj is self._sock:
                    try:
                        conn, _ = self._sock.accept()
                    except BlockingIOError:
                        continue
                    conn.setblocking(False)
                    try:
                        conn.send(b"x")
                    except OSError:
                        conn.close()
                        continue
                    self._selector.register(conn, selectors.EVENT_READ)
                    self.open += 1
                    continue
                conn = key.fileobj  # type: ignore[assignment]
                try:
                    data = conn.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._selector.unregister(conn)
                    conn.close()
                    self.open -= 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()


def ttfb(client: Netns, address: str, port: int, count: int = TTFB_CONNECTIONS) -> dict[str, Any]:
    """p50/p99/max milliseconds from connect() to the server's first byte, over `count` new connections."""
    sockets = in_netns(client.name, lambda: [socket.socket() for _ in range(count)])
    samples: list[float] = []
    failures = 0
    for sock in sockets:
        with sock:
            sock.settimeout(5)
            start = time.perf_counter()
            try:
                sock.connect((address, port))
                if sock.recv(1) != b"x":
                    raise OSError("no first byte")
            except OSError:
                failures += 1
                continue
            samples.append((time.perf_counter() - start) * 1000)
    return latency_summary(samples, failures)


def latency_summary(samples: list[float], failures: int = 0) -> dict[str, Any]:
    """p50, p99 (nearest rank), max in ms and the failure count; None figures when nothing succeeded."""
    if not samples:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "failures": failures}
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[math.ceil(len(ordered) * 0.99) - 1], 3),
        "max_ms": round(ordered[-1], 3),
        "failures": failures,
    }


def iperf(server_ns: Netns, client_ns: Netns, address: str, *, parallel: int = 1, server_port: int = IPERF_PORT, client_port: int | None = None) -> float:
    """Gbit/s received by a one-off iperf3 server, `DURATION` seconds, `parallel` flows."""
    server = server_ns.spawn("iperf3", "-s", "-1", "-p", str(server_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(server_ns, server_port)
        out = client_ns.exec(
            "iperf3", "-c", address, "-p", str(client_port or server_port), "-t", str(DURATION), "-P", str(parallel),
            "-O", "1", "-J", "--connect-timeout", "5000", check=False, timeout=DURATION + 30,
        ).stdout
        document = json.loads(out) if out.strip() else {}
        if "error" in document or "end" not in document:
            raise RuntimeError(f"iperf3 failed: {document.get('error', out[-300:])}")
        return round(document["end"]["sum_received"]["bits_per_second"] / 1e9, 3)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def _wait_listening(ns: Netns, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f":{port} " in ns.exec("ss", "-ltnH").stdout:
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} in {ns.name}")


# ---- the three data paths -------------------------------------------------

_RAW_ROUTES = {
    "conn": [("172.18.40.0/24", EDGE_A["conn"])],
    "edgea": [("172.18.40.0/24", EDGE_B["private"]), ("10.30.40.0/24", CONNECTOR["edge"])],
    "edgeb": [("10.30.40.0/24", EDGE_A["private"])],
}


@contextmanager
def raw_routing(topo: Seed000) -> Iterator[None]:
    """Plain IP forwarding along the same hops, no agent, no encryption."""
    try:
        for node, routes in _RAW_ROUTES.items():
            topo.ns(node).exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
            for prefix, via in routes:
                topo.ns(node).exec("ip", "route", "replace", prefix, "via", via)
        yield
    finally:
        for node, routes in _RAW_ROUTES.items():
            for prefix, _via in routes:
                topo.ns(node).exec("ip", "route", "del", prefix, check=False)
            topo.ns(node).exec("sysctl", "-qw", "net.ipv4.ip_forward=0")


def _stunnel_conf(folder: Path, services: list[dict[str, str]]) -> Path:
    lines = ["foreground = yes", "pid =", "debug = 3", "syslog = no", ""]
    for service in services:
        lines.append(f"[{service['name']}]")
        lines += [f"{key} = {value}" for key, value in service.items() if key != "name"]
        lines.append("")
    path = folder / "stunnel.conf"
    path.write_text("\n".join(lines))
    return path


@contextmanager
def stunnel_chain(topo: Seed000, ports: tuple[int, ...]) -> Iterator[dict[int, tuple[str, int]]]:
    """stunnel4 on connector, edge A (TLS in, TLS out) and edge B; yields {app port: (address, port) to dial}."""
    work = topo.workdir / "stunnel"
    procs: list[subprocess.Popen[bytes]] = []
    tls: dict[str, dict[str, str]] = {}
    for node in ("conn", "edgea", "edgeb"):
        ca, cert, key = pki.write_node_files(work / node, topo.ca.cert_pem, pki.issue(topo.ca, identity(f"stunnel-{node}")))
        tls[node] = {"CAfile": str(ca), "cert": str(cert), "key": str(key), "verifyChain": "yes", "sslVersionMin": "TLSv1.3"}
    services: dict[str, list[dict[str, str]]] = {"conn": [], "edgea": [], "edgeb": []}
    dial: dict[int, tuple[str, int]] = {}
    for port in ports:
        hop_a, hop_b, loop = port + 1000, port + 2000, port + 3000
        services["conn"].append({"name": f"c{port}", "client": "yes", "accept": f"{CONNECTOR['app']}:{port}", "connect": f"{EDGE_A['conn']}:{hop_a}", **tls["conn"]})
        services["edgea"].append({"name": f"ain{port}", "accept": f"{EDGE_A['conn']}:{hop_a}", "connect": f"127.0.0.1:{loop}", **tls["edgea"]})
        services["edgea"].append({"name": f"aout{port}", "client": "yes", "accept": f"127.0.0.1:{loop}", "connect": f"{EDGE_B['private']}:{hop_b}", **tls["edgea"]})
        services["edgeb"].append({"name": f"b{port}", "accept": f"{EDGE_B['private']}:{hop_b}", "connect": f"{AZ_APP}:{port}", **tls["edgeb"]})
        dial[port] = (CONNECTOR["app"], port)
    try:
        for node, node_services in services.items():
            conf = _stunnel_conf(work / node, node_services)
            procs.append(topo.ns(node).spawn(STUNNEL, str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for node, node_services in services.items():
            for service in node_services:
                _wait_listening(topo.ns(node), int(service["accept"].rsplit(":", 1)[1]))
        yield dial
    finally:
        _stop(procs)


@contextmanager
def stunnel_end_to_end(topo: Seed000, port: int) -> Iterator[tuple[str, int]]:
    """Our end-to-end design built from stunnel4: TLS only between connector and edge B, edge A routes the TLS.

    The C baseline for transit's own architecture (one encryption, one
    decryption, two proxy hops); run with the agents stopped, inside
    `raw_routing`. Yields the (address, port) to dial.
    """
    work = topo.workdir / "stunnel-e2e"
    hop = port + 2000
    tls: dict[str, dict[str, str]] = {}
    for node in ("conn", "edgeb"):
        ca, cert, key = pki.write_node_files(work / node, topo.ca.cert_pem, pki.issue(topo.ca, identity(f"stunnel-e2e-{node}")))
        tls[node] = {"CAfile": str(ca), "cert": str(cert), "key": str(key), "verifyChain": "yes", "sslVersionMin": "TLSv1.3"}
    services = {
        "conn": {"name": "c", "client": "yes", "accept": f"{CONNECTOR['app']}:{port}", "connect": f"{EDGE_B['private']}:{hop}", **tls["conn"]},
        "edgeb": {"name": "b", "accept": f"{EDGE_B['private']}:{hop}", "connect": f"{AZ_APP}:{port}", **tls["edgeb"]},
    }
    routes = {"conn": (EDGE_B["private"] + "/32", EDGE_A["conn"]), "edgeb": (CONNECTOR["edge"] + "/32", EDGE_A["private"])}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for node, (prefix, via) in routes.items():
            topo.ns(node).exec("ip", "route", "replace", prefix, "via", via)
        for node, service in services.items():
            conf = _stunnel_conf(work / node, [service])
            procs.append(topo.ns(node).spawn(STUNNEL, str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for node, service in services.items():
            _wait_listening(topo.ns(node), int(service["accept"].rsplit(":", 1)[1]))
        yield CONNECTOR["app"], port
    finally:
        _stop(procs)
        for node, (prefix, _via) in routes.items():
            topo.ns(node).exec("ip", "route", "del", prefix, check=False)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- agents ---------------------------------------------------------------


def stop_agents(topo: Seed000) -> None:
    """SIGTERM every agent and wait: they remove their kernel state on the way out."""
    for agent in topo.agents.values():
        if agent.proc and agent.proc.poll() is None:
            agent.signal(signal.SIGTERM)
    for agent in topo.agents.values():
        if agent.proc:
            agent.proc.wait(timeout=20)


def restart_agents(topo: Seed000) -> None:
    """Fresh agent processes (so peak memory counts only what follows)."""
    stop_agents(topo)
    for node in topo.agents:
        topo.start_agent(node)
    for node in topo.agents:
        topo.wait_ready(node)


def reload_agents(topo: Seed000, change: Callable[[str, dict[str, Any]], None], timeout: float = 60) -> None:
    """Rewrite each agent's config with `change`, SIGHUP it and wait for its reload line."""
    before = {node: agent.log().count("agent.reloaded") for node, agent in topo.agents.items()}
    for node, agent in topo.agents.items():
        config = topo.read_config(node)
        change(node, config)
        topo.write_config(node, config)
        agent.signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout
    for node, agent in topo.agents.items():
        while agent.log().count("agent.reloaded") <= before[node]:
            if time.monotonic() > deadline or "agent.reload_refused" in agent.log()[-2000:]:
                raise RuntimeError(f"agent {node} did not reload:\n{agent.log()[-2000:]}")
            time.sleep(0.05)


def _memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return round(fields["VmRSS"], 1), round(fields["VmHWM"], 1)


def hold_flows(topo: Seed000, server: ByteServer, count: int = FLOWS, deadline_s: float = 90) -> dict[str, Any]:
    """Open `count` concurrent flows through the agents, sample each agent's memory while they are open."""
    client = topo.ns("awsapp")
    sockets = in_netns(client.name, lambda: [socket.socket() for _ in range(count)])
    deadline = time.monotonic() + deadline_s
    payload = b"y" * 1024

    def open_one(sock: socket.socket) -> bool:
        if time.monotonic() > deadline:
            return False
        sock.settimeout(max(0.5, deadline - time.monotonic()))
        try:
            sock.connect((AZ_APP, TTFB_PORT))
            sock.sendall(payload)
            return sock.recv(1) == b"x"
        except OSError:
            return False

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        opened = sum(pool.map(open_one, sockets))
    open_seconds = round(time.monotonic() - start, 2)
    peak_rss: dict[str, float] = {node: 0.0 for node in topo.agents}
    for _ in range(10):
        for node, agent in topo.agents.items():
            assert agent.proc is not None
            rss, _hwm = _memory_mb(agent.proc.pid)
            peak_rss[node] = max(peak_rss[node], rss)
        time.sleep(0.2)
    hwm = {node: _memory_mb(agent.proc.pid)[1] for node, agent in topo.agents.items() if agent.proc}
    held_at_server = server.open
    for sock in sockets:
        sock.close()
    return {"requested": count, "opened": opened, "open_seconds": open_seconds, "open_at_server": held_at_server,
            "rss_mb": peak_rss, "peak_rss_mb": hwm}


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def hold_udp_sessions(topo: Seed000, count: int = FLOWS, deadline_s: float = 60) -> dict[str, Any]:
    """`count` concurrent UDP sessions (one client socket each, one echo each), then quiet, then one more echo each.

    Samples each agent's memory and threads while the sessions are busy and
    again once they have been quiet past the park delay: what a session costs
    an agent while it waits for its next datagram.
    """
    echo = UdpEcho(topo.ns("azapp"), UDP_PORT)
    sockets = in_netns(topo.ns("awsapp").name, lambda: [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)])
    deadline = time.monotonic() + deadline_s

    def exchange(sock: socket.socket) -> bool:
        payload = os.urandom(32)
        for _ in range(3):  # UDP: a datagram may be lost while the session's stream opens
            if time.monotonic() > deadline:
                return False
            sock.settimeout(1.0)
            try:
                sock.sendto(payload, (AZ_APP, UDP_PORT))
                while sock.recv(64) != payload:  # a late echo of an earlier try is not this one's answer
                    pass
                return True
            except OSError:
                continue
        return False

    def sample() -> dict[str, dict[str, float]]:
        return {node: {"rss_mb": _memory_mb(agent.proc.pid)[0], "threads": _threads(agent.proc.pid)}
                for node, agent in topo.agents.items() if agent.proc}

    try:
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=32) as pool:
            answered = sum(pool.map(exchange, sockets))
        open_seconds = round(time.monotonic() - start, 2)
        busy = sample()
        time.sleep(3)  # past the agents' park delay (timeouts.park, 1 s by default)
        quiet = sample()
        with ThreadPoolExecutor(max_workers=32) as pool:
            again = sum(pool.map(exchange, sockets))
    finally:
        for sock in sockets:
            sock.close()
        echo.close()
    return {"requested": count, "answered": answered, "open_seconds": open_seconds, "answered_again": again,
            "busy": busy, "quiet": quiet}


# ---- the run ----------------------------------------------------------------


def _step(name: str) -> None:
    print(f"bench.dataplane step={name} t={time.strftime('%H:%M:%S')}", flush=True)


def _measure(results: dict[str, Any], errors: dict[str, str], key: str, action: Callable[[], Any]) -> Any:
    """Run one measurement; a failure is recorded under `errors` and the run goes on."""
    _step(key)
    try:
        value = action()
    except Exception as exc:
        errors[key] = f"{type(exc).__name__}: {str(exc)[:500]}"
        print(f"bench.dataplane failed key={key} error={errors[key]!r}", flush=True)
        return None
    results[key] = value
    return value


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat (idle and iowait are not busy)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


ROLES = {"conn": "ingress", "edgea": "relay", "edgeb": "egress"}  # seed 000's agents and what each does to a flow


def _agent_pids(topo: Seed000) -> dict[str, int]:
    return {node: agent.proc.pid for node, agent in topo.agents.items() if agent.proc and agent.proc.poll() is None}


def _process_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads) in seconds, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14 and 15 of proc(5)


def _sampled(m: dict[str, Any], errors: dict[str, str], key: str, action: Callable[[], float], agents: dict[str, int] | None = None) -> None:
    """One more sample of a throughput figure; the figure is the median of its samples.

    Each sample also records how many cores the whole machine kept busy while it
    ran: with every hop on the same CPUs, busy cores per Gbit/s is the path's
    cost, and a path at `nproc` busy cores is bound by CPU rather than by itself.
    With `agents` ({node: pid}) it records each agent's own CPU (utime + stime)
    per GB moved, and the single-flow Gbit/s one core would carry in that role
    (8 / core-seconds per GB): what a VM with a core to itself per agent would do.
    """
    cpu0 = {node: _process_cpu_s(pid) for node, pid in (agents or {}).items()}
    busy0, total0 = _cpu_jiffies()
    value = _measure({}, errors, key, action)
    busy1, total1 = _cpu_jiffies()
    if value is None:
        return
    if agents and value:
        gigabytes = value * DURATION / 8
        per_key = m.setdefault("agent_cpu_samples", {}).setdefault(key, {})
        for node, pid in agents.items():
            per_key.setdefault(node, []).append((_process_cpu_s(pid) - cpu0[node]) / gigabytes)
        m.setdefault("agent_cpu_s_per_gb", {})[key] = {
            ROLES.get(node, node): round(statistics.median(values), 3) for node, values in per_key.items()
        }
        m.setdefault("agent_gbps_per_core", {})[key] = {
            ROLES.get(node, node): round(8 / statistics.median(values), 2) for node, values in per_key.items() if statistics.median(values) > 0
        }
    samples = m.setdefault("samples", {}).setdefault(key, [])
    samples.append(value)
    m[key] = round(statistics.median(samples), 3)
    cores = (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1)
    busy = m.setdefault("busy_cores", {}).setdefault(key, [])
    busy.append(cores)
    m.setdefault("core_s_per_gb", {})[key] = round(statistics.median(c / (g / 8) for c, g in zip(busy, samples) if g), 3)


def _reload_policy(topo: Seed000, rule_count: int, warm_tunnels: int = 2) -> None:
    """Reload every agent with a `rule_count`-rule policy, then one warm-up connection (it pays the one-off compile)."""
    reload_agents(topo, lambda _n, c: c.update(filter=policy(rule_count), warm_tunnels=warm_tunnels))
    ttfb(topo.ns("awsapp"), AZ_APP, TTFB_PORT, count=1)


def run() -> dict[str, Any]:
    """Every measurement on one topology; returns the results document."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    m: dict[str, Any] = {}
    errors: dict[str, str] = {}
    started = time.time()
    with Seed000(policy=policy(10), tag="bch") as topo:
        aws, az = topo.ns("awsapp"), topo.ns("azapp")
        server = ByteServer(az, TTFB_PORT)
        try:
            # (b) and (c) side by side, interleaved: stunnel dials the connector's own
            # address, which interception leaves alone, so both run on the same hops at once.
            with stunnel_chain(topo, (IPERF_PORT, TTFB_PORT)) as dial:
                address, port = dial[IPERF_PORT]
                for _ in range(ROUNDS):
                    _sampled(m, errors, "transit_single_gbps", lambda: iperf(az, aws, AZ_APP), _agent_pids(topo))
                    _sampled(m, errors, "stunnel_single_gbps", lambda: iperf(az, aws, address, client_port=port))
                for _ in range(ROUNDS_8FLOW):
                    _sampled(m, errors, "transit_8flow_gbps", lambda: iperf(az, aws, AZ_APP, parallel=8))
                    _sampled(m, errors, "stunnel_8flow_gbps", lambda: iperf(az, aws, address, parallel=8, client_port=port))
                _measure(m, errors, "transit_warm_ttfb", lambda: ttfb(aws, AZ_APP, TTFB_PORT))
                _measure(m, errors, "stunnel_ttfb", lambda: ttfb(aws, *dial[TTFB_PORT]))

            # transit in hop-by-hop mode (end_to_end=false): edge A decrypts and
            # re-encrypts like the stunnel chain, instead of splicing the ingress's session
            _measure(m, errors, "reload_hop_by_hop", lambda: reload_agents(topo, lambda _n, c: c.update(end_to_end=False)))
            if "reload_hop_by_hop" not in errors:
                for _ in range(ROUNDS):
                    _sampled(m, errors, "transit_hop_by_hop_single_gbps", lambda: iperf(az, aws, AZ_APP), _agent_pids(topo))
                _measure(m, errors, "transit_hop_by_hop_ttfb", lambda: ttfb(aws, AZ_APP, TTFB_PORT))
                _measure(m, errors, "reload_end_to_end", lambda: reload_agents(topo, lambda _n, c: c.update(end_to_end=True)))

            # the filter table's cost on the transit path: 10 and 10,000 rules, alternated
            for _ in range(ROUNDS_RULES):
                for count in (10, 10_000):
                    _measure(m, errors, f"reload_{count}_rules", partial(_reload_policy, topo, count))
                    if f"reload_{count}_rules" in errors:
                        continue
                    _sampled(m, errors, f"rules_{count}_gbps", lambda: iperf(az, aws, AZ_APP))
                    if f"rules_{count}_ttfb" not in m:
                        _measure(m, errors, f"rules_{count}_ttfb", lambda: ttfb(aws, AZ_APP, TTFB_PORT))

            # a cold tunnel for every connection: no warm pool, both TLS hops dialled per stream
            _measure(m, errors, "reload_cold", lambda: _reload_policy(topo, 10, warm_tunnels=0))
            if "reload_cold" not in errors:
                _measure(m, errors, "cold_ttfb", lambda: ttfb(aws, AZ_APP, TTFB_PORT))
            _measure(m, errors, "restart_agents", lambda: restart_agents(topo))
            _measure(m, errors, "flows_1000", lambda: hold_flows(topo, server))
            _measure(m, errors, "udp_sessions_1000", lambda: hold_udp_sessions(topo))
            _measure(m, errors, "stop_agents", lambda: stop_agents(topo))

            # (a) raw routing, and the filter table's cost on it
            with raw_routing(topo):
                with stunnel_end_to_end(topo, IPERF_PORT) as (address, port):
                    for _ in range(ROUNDS):
                        _sampled(m, errors, "raw_single_gbps", lambda: iperf(az, aws, AZ_APP))
                        _sampled(m, errors, "stunnel_e2e_single_gbps", lambda: iperf(az, aws, address, client_port=port))
                for _ in range(ROUNDS_8FLOW):
                    _sampled(m, errors, "raw_8flow_gbps", lambda: iperf(az, aws, AZ_APP, parallel=8))
                _measure(m, errors, "raw_ttfb", lambda: ttfb(aws, AZ_APP, TTFB_PORT))
                for _ in range(ROUNDS_RULES):
                    for count in (10, 10_000):
                        _measure(m, errors, f"raw_rules_{count}", partial(_raw_with_table, topo, count, m))
        finally:
            server.close()
    return _document(m, errors, time.time() - started)


def run_quick(rounds: int = ROUNDS) -> dict[str, Any]:
    """The single-flow rows only: transit (end to end) and the stunnel chain, interleaved, `rounds` samples each."""
    m: dict[str, Any] = {}
    errors: dict[str, str] = {}
    load_before = os.getloadavg()
    with Seed000(policy=policy(10), tag="bch") as topo:
        aws, az = topo.ns("awsapp"), topo.ns("azapp")
        with stunnel_chain(topo, (IPERF_PORT,)) as dial:
            address, port = dial[IPERF_PORT]
            for _ in range(rounds):
                _sampled(m, errors, "transit_single_gbps", lambda: iperf(az, aws, AZ_APP), _agent_pids(topo))
                _sampled(m, errors, "stunnel_single_gbps", lambda: iperf(az, aws, address, client_port=port))
    samples = m.get("samples", {})
    return {
        "transit_single_gbps": m.get("transit_single_gbps"),
        "stunnel_single_gbps": m.get("stunnel_single_gbps"),
        "transit_vs_stunnel_single": _ratio(m.get("transit_single_gbps"), m.get("stunnel_single_gbps")),
        "samples_gbps": samples,
        "agent_cpu_s_per_gb": m.get("agent_cpu_s_per_gb", {}).get("transit_single_gbps"),
        "busy_cores": {key: [round(c, 2) for c in values] for key, values in m.get("busy_cores", {}).items()},
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "commit": _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "errors": errors,
    }


def _raw_with_table(topo: Seed000, count: int, m: dict[str, Any]) -> dict[str, Any]:
    """Raw routing with a `count`-rule filter table on the connector's forward hook: one more throughput sample."""
    from dataplane.filter_model import FilterPolicy

    aws, az, conn = topo.ns("awsapp"), topo.ns("azapp"), topo.ns("conn").name
    previous = m.get(f"raw_rules_{count}") or {}
    start = time.monotonic()
    filter_table.apply(FilterPolicy.model_validate(policy(count)), table=BENCH_TABLE, hook="forward", netns=conn)
    apply_s = round(time.monotonic() - start, 2)
    try:
        samples = [*previous.get("samples", []), iperf(az, aws, AZ_APP)]
        latency = previous.get("ttfb") or ttfb(aws, AZ_APP, TTFB_PORT)
    finally:
        filter_table.remove(BENCH_TABLE, netns=conn)
    return {"apply_s": apply_s, "gbps": round(statistics.median(samples), 3), "samples": samples, "ttfb": latency}


def _median(values: list[float] | None) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _document(m: dict[str, Any], errors: dict[str, str], seconds: float) -> dict[str, Any]:
    """The results file: the issue's keys first, then ratios, details, targets and the machine."""
    flows = m.get("flows_1000") or {}
    cold = m.get("cold_ttfb") or {}
    doc: dict[str, Any] = {
        "raw_single_gbps": m.get("raw_single_gbps"),
        "stunnel_single_gbps": m.get("stunnel_single_gbps"),
        "transit_single_gbps": m.get("transit_single_gbps"),
        "transit_8flow_gbps": m.get("transit_8flow_gbps"),
        "cold_ttfb_p50_ms": cold.get("p50_ms"),
        "cold_ttfb_p99_ms": cold.get("p99_ms"),
        "rules_10_gbps": m.get("rules_10_gbps"),
        "rules_10000_gbps": m.get("rules_10000_gbps"),
        "agent_rss_mb_1000_flows": max(flows["peak_rss_mb"].values()) if flows.get("peak_rss_mb") else None,
        "raw_8flow_gbps": m.get("raw_8flow_gbps"),
        "stunnel_8flow_gbps": m.get("stunnel_8flow_gbps"),
        "transit_hop_by_hop_single_gbps": m.get("transit_hop_by_hop_single_gbps"),
        "stunnel_e2e_single_gbps": m.get("stunnel_e2e_single_gbps"),
        # machine-wide CPU per GB moved by one flow: what each path costs when every hop shares the same cores
        "core_s_per_gb": {path: m.get("core_s_per_gb", {}).get(f"{path}_single_gbps") for path in PATHS},
        "busy_cores_single": {path: _median(m.get("busy_cores", {}).get(f"{path}_single_gbps")) for path in PATHS},
        # each agent's own CPU (utime+stime from /proc/<pid>/stat) per GB of one flow, by role, and the Gbit/s per core it implies
        "agent_cpu_s_per_gb": {path: m.get("agent_cpu_s_per_gb", {}).get(f"{path}_single_gbps") for path in ("transit", "transit_hop_by_hop")},
        "agent_single_gbps_per_core": {path: m.get("agent_gbps_per_core", {}).get(f"{path}_single_gbps") for path in ("transit", "transit_hop_by_hop")},
    }
    doc["ratios"] = {
        "transit_vs_stunnel_single": _ratio(doc["transit_single_gbps"], doc["stunnel_single_gbps"]),
        "transit_vs_raw_single": _ratio(doc["transit_single_gbps"], doc["raw_single_gbps"]),
        "transit_hop_by_hop_vs_stunnel_single": _ratio(doc["transit_hop_by_hop_single_gbps"], doc["stunnel_single_gbps"]),
        "transit_8flow_vs_single": _ratio(doc["transit_8flow_gbps"], doc["transit_single_gbps"]),
        "stunnel_vs_raw_single": _ratio(doc["stunnel_single_gbps"], doc["raw_single_gbps"]),
        "transit_vs_stunnel_e2e_single": _ratio(doc["transit_single_gbps"], doc["stunnel_e2e_single_gbps"]),
        "rules_10000_vs_10": _ratio(doc["rules_10000_gbps"], doc["rules_10_gbps"]),
        "raw_rules_10000_vs_10": _ratio((m.get("raw_rules_10000") or {}).get("gbps"), (m.get("raw_rules_10") or {}).get("gbps")),
    }
    ratios = doc["ratios"]
    checks = {
        "transit_vs_stunnel_single": (ratios["transit_vs_stunnel_single"], ">="),
        "transit_vs_raw_single": (ratios["transit_vs_raw_single"], ">="),
        "rules_10000_vs_10": (ratios["rules_10000_vs_10"], ">="),
        "cold_ttfb_p99_ms": (doc["cold_ttfb_p99_ms"], "<"),
        "agent_rss_mb_1000_flows": (doc["agent_rss_mb_1000_flows"], "<"),
    }
    doc["targets"] = {
        name: {"target": f"{op} {TARGETS[name]}", "value": value,
               "met": None if value is None else (value >= TARGETS[name] if op == ">=" else value < TARGETS[name])}
        for name, (value, op) in checks.items()
    }
    doc["details"] = {
        "ttfb_ms": {name: m.get(f"{name}_ttfb") for name in ("cold", "transit_warm", "transit_hop_by_hop", "raw", "stunnel", "rules_10", "rules_10000")},
        "raw_rules": {str(count): m.get(f"raw_rules_{count}") for count in (10, 10_000)},  # str keys: JSON object keys
        "flows_1000": flows,
        "udp_sessions_1000": m.get("udp_sessions_1000") or {},
        "throughput_samples_gbps": m.get("samples", {}),
        "busy_cores_samples": {key: [round(c, 2) for c in values] for key, values in m.get("busy_cores", {}).items()},
        "settings": {"iperf_seconds": DURATION, "rounds": {"single": ROUNDS, "8flow": ROUNDS_8FLOW, "rules": ROUNDS_RULES}, "ttfb_connections": TTFB_CONNECTIONS, "flows": FLOWS,
                     "iperf_port": IPERF_PORT, "policy": "seed 000 rules + non-matching app pairs before the permit",
                     "filter_enforcement": "transit: connector input hook (TPROXY'd packets) + user-space egress check; raw: connector forward hook"},
    }
    doc["errors"] = errors
    doc["machine"] = {"nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
                      "iperf3": _version(["iperf3", "--version"]), "stunnel": _version([STUNNEL, "-version"], stderr=True)}
    doc["run"] = {"finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": round(seconds, 1),
                  "commit": _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]), "command": COMMAND}
    return doc


def _version(cmd: list[str], *, stderr: bool = False) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (done.stderr if stderr else done.stdout) or done.stdout
    lines = [line for line in text.splitlines() if line.strip() and "inetd" not in line]
    return lines[0].strip() if lines else "?"


# ---- the README section -------------------------------------------------------

START, END = "<!-- dataplane-bench:start -->", "<!-- dataplane-bench:end -->"


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "not measured"
    return f"{value}{unit}"


def readme_section(doc: dict[str, Any]) -> str:
    """The markdown table for bench/README.md."""
    t, d = doc["targets"], doc["details"]
    ttfb = d["ttfb_ms"]

    def met(name: str) -> str:
        flag = t[name]["met"]
        return "not measured" if flag is None else ("met" if flag else "**missed**")

    def lat(name: str, sep: str = " / ") -> str:
        row = ttfb.get(name)
        return "not measured" if not row or row["p50_ms"] is None else f"{row['p50_ms']}{sep}{row['p99_ms']}"

    raw_rules = d["raw_rules"]
    rows = [
        "| measure | raw routing | stunnel chain | transit-agent | target | result |",
        "|---|---|---|---|---|---|",
        f"| 1 flow, Gbit/s | {_fmt(doc['raw_single_gbps'])} | {_fmt(doc['stunnel_single_gbps'])} | {_fmt(doc['transit_single_gbps'])} | transit ≥ 2× stunnel and ≥ 0.5× raw | {met('transit_vs_stunnel_single')} ({_fmt(doc['ratios']['transit_vs_stunnel_single'], '×')} stunnel), {met('transit_vs_raw_single')} ({_fmt(doc['ratios']['transit_vs_raw_single'], '×')} raw) |",
        f"| 1 flow, transit hop-by-hop (`end_to_end: false`, edge A re-encrypts like stunnel), Gbit/s | | | {_fmt(doc.get('transit_hop_by_hop_single_gbps'))} ({_fmt(doc['ratios']['transit_hop_by_hop_vs_stunnel_single'], '×')} stunnel) | | |",
        f"| 1 flow, stunnel end to end (TLS only connector to edge B, edge A routes: transit's design in C), Gbit/s | | {_fmt(doc.get('stunnel_e2e_single_gbps'))} | {_fmt(doc['ratios']['transit_vs_stunnel_e2e_single'], '×')} of it | | |",
        f"| 8 flows, Gbit/s | {_fmt(doc['raw_8flow_gbps'])} | {_fmt(doc['stunnel_8flow_gbps'])} | {_fmt(doc['transit_8flow_gbps'])} | | |",
        f"| new connection TTFB p50 / p99, ms | {lat('raw')} | {lat('stunnel')} | warm {lat('transit_warm')}; cold {lat('cold')} | cold p99 < 10 ms | {met('cold_ttfb_p99_ms')} |",
        f"| 1 flow with 10 / 10,000 rules, Gbit/s | {_fmt((raw_rules.get('10') or {}).get('gbps'))} / {_fmt((raw_rules.get('10000') or {}).get('gbps'))} | | {_fmt(doc['rules_10_gbps'])} / {_fmt(doc['rules_10000_gbps'])} | 10,000 within 5% of 10 | {met('rules_10000_vs_10')} ({_fmt(doc['ratios']['rules_10000_vs_10'], '×')}) |",
        f"| TTFB p50/p99 with 10 ; 10,000 rules, ms | {_ttfb_pair(raw_rules)} | | {lat('rules_10', '/')} ; {lat('rules_10000', '/')} | | |",
        f"| 1 flow: busy cores of {doc['machine']['nproc']} ; core-seconds per GB | {_cost(doc, 'raw')} | {_cost(doc, 'stunnel')} (end to end {_cost(doc, 'stunnel_e2e')}) | {_cost(doc, 'transit')} (hop-by-hop {_cost(doc, 'transit_hop_by_hop')}) | | |",
        f"| peak RSS per agent, {FLOWS} open flows, MB | | | {_fmt(doc['agent_rss_mb_1000_flows'])} (max of {', '.join(f'{k} {v}' for k, v in (d['flows_1000'].get('peak_rss_mb') or {}).items()) or '-'}) | < 150 MB | {met('agent_rss_mb_1000_flows')} |",
    ]
    for path, label in (("transit", "end to end"), ("transit_hop_by_hop", "hop-by-hop")):
        cpu, per_core = (doc.get("agent_cpu_s_per_gb") or {}).get(path), (doc.get("agent_single_gbps_per_core") or {}).get(path)
        if cpu:
            roles = ", ".join(f"{role} {cpu[role]} s/GB = {(per_core or {}).get(role, '-')} Gbit/s per core" for role in cpu)
            rows.append(f"| 1 flow {label}: each agent's own CPU per GB and the single-flow Gbit/s per core it implies | | | {roles} | | |")
    udp = d.get("udp_sessions_1000") or {}
    if udp.get("quiet"):
        per_node = ", ".join(f"{node} {v['rss_mb']} MB / {v['threads']} threads" for node, v in udp["quiet"].items())
        rows.append(f"| {FLOWS} UDP sessions, quiet past the park delay: RSS / threads per agent | | | {per_node} "
                    f"({udp['answered']} answered, {udp['answered_again']} again after the quiet) | | |")
    machine = doc["machine"]
    notes = [
        "",
        f"Run {doc['run']['finished_utc']} at commit {doc['run']['commit']} on {machine['nproc']} CPUs, kernel {machine['kernel']}, "
        f"{machine['iperf3']}, {machine['stunnel']}; throughput is the median of {ROUNDS} (8 flows: {ROUNDS_8FLOW}; rules: {ROUNDS_RULES}) runs of {DURATION} s, "
        f"transit and stunnel interleaved, raw after the agents stop; {TTFB_CONNECTIONS} sequential new connections per TTFB figure. "
        f"Flows opened for the memory figure: {d['flows_1000'].get('opened', 'n/a')} of {FLOWS}.",
    ]
    if doc["errors"]:
        notes.append("")
        notes.append("Measurements that failed in this run: " + "; ".join(f"`{k}`: {v}" for k, v in doc["errors"].items()))
    return "\n".join([START, *rows, *notes, END])


def _cost(doc: dict[str, Any], path: str) -> str:
    busy, cost = doc["busy_cores_single"].get(path), doc["core_s_per_gb"].get(path)
    return "not measured" if busy is None or cost is None else f"{busy} ; {cost}"


def _ttfb_pair(raw_rules: dict[str, Any]) -> str:
    parts = []
    for count in ("10", "10000"):
        row = (raw_rules.get(count) or {}).get("ttfb")
        parts.append("not measured" if not row or row["p50_ms"] is None else f"{row['p50_ms']}/{row['p99_ms']}")
    return " ; ".join(parts)


def write_readme(doc: dict[str, Any]) -> None:
    """Replace this benchmark's section of bench/README.md (other sections stay)."""
    section = readme_section(doc)
    text = README.read_text() if README.exists() else "# Benchmarks\n\nOne section per benchmark; each says the command that reproduces it.\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _old, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n## Data plane (`bench/dataplane_bench.py`)\n\n" + f"Reproduce: `{COMMAND}`\n\n" + section + "\n"
    README.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Run everything, write the results file and the README section (`--quick`: the single-flow rows, printed only)."""
    parser = argparse.ArgumentParser(prog="python -m bench.dataplane_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="single-flow transit and stunnel only; print JSON, write nothing")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"samples per path with --quick. Defaults to {ROUNDS}.")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.dataplane needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.quick:
        print(json.dumps(run_quick(args.rounds), indent=2))
        return 0
    doc = run()
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(doc, indent=2) + "\n")
    write_readme(doc)
    print(json.dumps({key: doc[key] for key in list(doc)[:11]}, indent=2))
    print(f"bench.dataplane wrote {RESULT.relative_to(REPO)} and {README.relative_to(REPO)}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
