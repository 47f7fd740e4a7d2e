"""GENEVE benchmark: one connector behind an emulated Gateway Load Balancer, against the same hops without GENEVE.

Run as root from the repository root: `python -m bench.geneve_bench` (or
`make bench`). It builds `testbed/gwlb.py`'s fabric with one
connector target (app -- gwlb -- conn1 -- edge -- azapp) and measures, in
one run, at the load balancer's 8,500-byte MTU and at 1,500 bytes:

- `ebpf` and `user`: the workload's route points at the load balancer, which
  wraps every packet in GENEVE with AWS's options and sends it to the
  connector; there the kernel fast path (`ebpf`: a tc program strips the
  outer headers on the link and wraps replies at the TUN's egress) or the
  user-space worker (`user`: socket to TUN and back) hands it to
  interception and TLS and returns the replies in GENEVE (the connector's
  agent is restarted with `geneve.datapath` set to each in turn);
- `tproxy`: the same namespaces and agents, but the gwlb namespace routes
  the traffic plainly to the connector, whose TPROXY takes it (the path
  every other connector uses);
- `routed`: agents stopped, plain IP forwarding along the same hops: no
  encapsulation, no interception, no encryption.

For each: TCP Gbit/s with 1 and 8 flows (iperf3, `DURATION` s, median of
`ROUNDS`, the paths interleaved round by round) and UDP packets per second received
with 64- and 1,400-byte IP packets (iperf3 `-u -b 0`). It also records the
busy cores of the whole machine and the CPU seconds of the connector's agent,
of its GENEVE worker and of the load-balancer emulator (this process: it is per-packet Python on
the same two cores, a cost AWS's load balancer does not put on the VM).

It writes bench/results/geneve.json and the GENEVE section of bench/README.md.
The machine is shared: compare the ratios within one run.
"""
from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.dataplane_bench import _cpu_jiffies, _version, _wait_listening, iperf
from testbed.gwlb import AZ_APP, EDGE_SIDE, POLICY, TARGETS, GwlbFabric
from testbed.netns import Netns

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "geneve.json"
README = REPO / "bench" / "README.md"
COMMAND = "sudo .venv/bin/python -m bench.geneve_bench   # or: make bench"
DURATION = 5
ROUNDS = 2
PORT = 8001
MTUS = (8500, 1500)
PATHS = ("ebpf", "user", "tproxy", "routed")
GENEVE_PATHS = ("ebpf", "user")
BENCH_POLICY = {**POLICY, "rules": [*POLICY["rules"], {"name": "bench-udp", "action": "permit", "src": ["10.30.40.0/24"],
                                                        "dst": ["172.18.40.0/24"], "proto": "udp", "ports": [PORT]}]}


def iperf_pps(server_ns: Netns, client_ns: Netns, address: str, packet_size: int) -> float:
    """UDP packets per second the server received, `packet_size`-byte IP packets sent as fast as iperf3 can."""
    server = server_ns.spawn("iperf3", "-s", "-1", "-p", str(PORT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(server_ns, PORT)
        out = client_ns.exec(
            "iperf3", "-c", address, "-p", str(PORT), "-u", "-b", "0", "-l", str(packet_size - 28), "-t", str(DURATION),
            "-J", "--connect-timeout", "5000", check=False, timeout=DURATION + 30,
        ).stdout
        document = json.loads(out) if out.strip() else {}
        if "error" in document or "end" not in document:
            raise RuntimeError(f"iperf3 failed: {document.get('error', out[-300:])}")
        total = document["end"]["sum"]
        received = total["packets"] - total["lost_packets"]
        return round(received / total["seconds"])
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def _cpu_of(pid: int) -> float:
    """CPU seconds process `pid` used so far (user + system); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _agent_cpu(fabric: GwlbFabric, node: str) -> float:
    """CPU seconds the agent process used so far (user + system)."""
    proc = fabric.agents[node].proc
    return _cpu_of(proc.pid) if proc is not None and proc.poll() is None else 0.0


def _worker_cpu(fabric: GwlbFabric, node: str) -> float:
    """CPU seconds the agent's GENEVE worker used so far (its pid is in the agent's start line)."""
    found = re.findall(r"listener=geneve .* worker=(\d+)", fabric.agents[node].current_log())
    return _cpu_of(int(found[-1])) if found else 0.0


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sample(fabric: GwlbFabric, figures: dict[str, Any], key: str, action: Callable[[], float]) -> None:
    """One sample of `key` (the figure is the median), with busy cores and per-process CPU while it ran."""
    busy0, total0 = _cpu_jiffies()
    agent0, worker0, self0, started = _agent_cpu(fabric, "conn1"), _worker_cpu(fabric, "conn1"), _self_cpu(), time.monotonic()
    try:
        value = action()
    except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
        figures.setdefault("errors", {})[key] = str(exc)[:300]
        return
    seconds = time.monotonic() - started
    busy1, total1 = _cpu_jiffies()
    samples = figures.setdefault("samples", {}).setdefault(key, [])
    samples.append(value)
    figures[key] = round(statistics.median(samples), 3)
    figures.setdefault("busy_cores", {})[key] = round((busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1), 2)
    figures.setdefault("connector_agent_cores", {})[key] = round((_agent_cpu(fabric, "conn1") - agent0) / seconds, 2)
    figures.setdefault("geneve_worker_cores", {})[key] = round((_worker_cpu(fabric, "conn1") - worker0) / seconds, 2)
    figures.setdefault("gwlb_emulator_cores", {})[key] = round((_self_cpu() - self0) / seconds, 2)


@contextmanager
def plain_to_connector(fabric: GwlbFabric) -> Iterator[None]:
    """The gwlb namespace routes the remote CIDR straight to the connector (TPROXY takes it) instead of into GENEVE."""
    gwlb = fabric.ns("gwlb")
    gwlb.exec("ip", "route", "replace", "172.18.40.0/24", "via", TARGETS["conn1"])
    try:
        yield
    finally:
        assert fabric.gwlb is not None
        gwlb.exec("ip", "route", "replace", "172.18.40.0/24", "dev", fabric.gwlb.tun)


@contextmanager
def routed(fabric: GwlbFabric) -> Iterator[None]:
    """Agents stopped; the connector and the edge forward plainly."""
    for node in ("conn1", "edge"):
        fabric.agents[node].stop()
    edge_addr, conn_addr = EDGE_SIDE["conn1"]
    for node, prefix, via in (("conn1", "172.18.40.0/24", edge_addr), ("edge", "10.30.40.0/24", conn_addr)):
        fabric.ns(node).exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
        fabric.ns(node).exec("ip", "route", "replace", prefix, "via", via)
    with plain_to_connector(fabric):
        yield


def use_datapath(fabric: GwlbFabric, path: str) -> None:
    """Restart the connector's agent with `geneve.datapath` = `path` (strict: `ebpf` fails rather than fall back)."""
    agent = fabric.agents["conn1"]
    config = json.loads(agent.config_path.read_text())
    if config["geneve"].get("datapath") == path and agent.proc is not None and agent.proc.poll() is None:
        return
    config["geneve"]["datapath"] = path
    agent.config_path.write_text(json.dumps(config, indent=2))
    agent.stop()
    agent.start()
    agent.wait_ready()
    time.sleep(1)  # its tunnel to the edge warms up


def measure(mtu: int) -> dict[str, Any]:
    """Every path at one MTU."""
    overrides = {node: {"filter": BENCH_POLICY} for node in ("conn1", "edge")}
    results: dict[str, dict[str, Any]] = {path: {} for path in PATHS}
    with GwlbFabric(connectors=("conn1",), mtu=mtu, overrides=overrides, geneve={"datapath": "ebpf"}, tag="gnb") as fabric:
        app, az = fabric.ns("app"), fabric.ns("azapp")
        runs: list[tuple[str, Callable[[], float]]] = [
            ("gbps_single", lambda: iperf(az, app, AZ_APP, server_port=PORT)),
            ("gbps_8flow", lambda: iperf(az, app, AZ_APP, parallel=8, server_port=PORT)),
            ("pps_64b", lambda: iperf_pps(az, app, AZ_APP, 64)),
            ("pps_1400b", lambda: iperf_pps(az, app, AZ_APP, 1400)),
        ]
        for round_index in range(ROUNDS):
            # Only the single-flow figure, the target's, gets more than one sample.
            keyed = [(key, action) for key, action in runs if not round_index or key == "gbps_single"]
            for path in GENEVE_PATHS:
                use_datapath(fabric, path)
                for key, action in keyed:
                    print(f"== geneve bench mtu {mtu} round {round_index}: {path} {key}", flush=True)
                    _sample(fabric, results[path], key, action)
            for key, action in keyed:  # the agent runs the user-space path: no eBPF on the link
                print(f"== geneve bench mtu {mtu} round {round_index}: tproxy {key}", flush=True)
                with plain_to_connector(fabric):
                    _sample(fabric, results["tproxy"], key, action)
        assert fabric.gwlb is not None
        results["user"]["gwlb_bad_returns"] = fabric.gwlb.bad_returns  # over both GENEVE paths
        with routed(fabric):
            for key, action in runs:
                print(f"== geneve bench mtu {mtu}: routed {key}", flush=True)
                _sample(fabric, results["routed"], key, action)
    return results


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 3) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def run() -> dict[str, Any]:
    """Both MTUs, one document."""
    started = time.monotonic()
    load_before = os.getloadavg()
    by_mtu = {str(mtu): measure(mtu) for mtu in MTUS}
    return document(by_mtu, load_before=load_before, seconds=time.monotonic() - started)


def document(by_mtu: dict[str, dict[str, Any]], *, load_before: tuple[float, ...], seconds: float) -> dict[str, Any]:
    """The results document: the issue's keys (GENEVE at 8,500 bytes), the baselines, the ratios, the machine."""
    for figures in by_mtu.values():
        figures["ratios"] = {
            f"{path}_vs_{base}_{key}": _ratio(figures[path].get(key), figures[base].get(key))
            for path in GENEVE_PATHS for base in ("tproxy", "routed") for key in ("gbps_single", "gbps_8flow", "pps_64b", "pps_1400b")
        }
    top = by_mtu["8500"]["ebpf"]  # the default path (`geneve.datapath: auto` where eBPF loads)
    keys = ("pps_64b", "pps_1400b", "gbps_single", "gbps_8flow")
    return {
        "pps_64b": top.get("pps_64b"), "pps_1400b": top.get("pps_1400b"),
        "gbps_single": top.get("gbps_single"), "gbps_8flow": top.get("gbps_8flow"),
        "user": {key: by_mtu["8500"]["user"].get(key) for key in keys},
        "baselines": {path: {key: by_mtu["8500"][path].get(key) for key in keys} for path in ("tproxy", "routed")},
        "target": {"geneve_single_vs_tproxy_at_8500": by_mtu["8500"]["ratios"]["ebpf_vs_tproxy_gbps_single"],
                   "user_single_vs_tproxy_at_8500": by_mtu["8500"]["ratios"]["user_vs_tproxy_gbps_single"], "wanted": 0.5},
        "by_mtu": by_mtu,
        "machine": {"cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()], "shared": "other helpers' tests and benches on the same two cores",
                    "iperf3": _version(["iperf3", "--version"])},
        "run": {"finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": round(seconds, 1),
                "commit": _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]), "command": COMMAND},
    }


START, END = "<!-- geneve-bench:start -->", "<!-- geneve-bench:end -->"


def readme_section(doc: dict[str, Any]) -> str:
    """The markdown table for bench/README.md."""
    rows = ["| MTU | path | 1 flow Gbit/s | 8 flows Gbit/s | pps, 64 B | pps, 1,400 B | busy cores (1 flow) | agent cores (1 flow) | GENEVE worker cores (1 flow) | emulator cores (1 flow) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for mtu, figures in doc["by_mtu"].items():
        for path in PATHS:
            f = figures[path]
            rows.append(f"| {mtu} | {path} | {f.get('gbps_single', '-')} | {f.get('gbps_8flow', '-')} | {f.get('pps_64b', '-')} | "
                        f"{f.get('pps_1400b', '-')} | {f.get('busy_cores', {}).get('gbps_single', '-')} | "
                        f"{f.get('connector_agent_cores', {}).get('gbps_single', '-')} | {f.get('geneve_worker_cores', {}).get('gbps_single', '-')} | "
                        f"{f.get('gwlb_emulator_cores', {}).get('gbps_single', '-')} |")
    machine = doc["machine"]
    return "\n".join([
        START, "",
        f"Run {doc['run']['finished_utc']} at {doc['run']['commit']}, {machine['cpus']} CPUs shared with other work "
        f"(load average {machine['load_average_before']} before, {machine['load_average_after']} after), {machine['iperf3']}. "
        f"GENEVE single flow at 8,500 bytes: {doc['gbps_single']} Gbit/s on the eBPF fast path, "
        f"{doc['target']['geneve_single_vs_tproxy_at_8500']}x the plain TPROXY path (wanted: at least 0.5); "
        f"{doc['user']['gbps_single']} Gbit/s, {doc['target']['user_single_vs_tproxy_at_8500']}x, on the user-space path.", "",
        *rows, "", END,
    ])


def write_readme(doc: dict[str, Any], readme: Path = README) -> None:
    """Replace this benchmark's section of bench/README.md (other sections stay)."""
    section = readme_section(doc)
    text = readme.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _old, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n## GENEVE (`bench/geneve_bench.py`)\n\n" + f"Reproduce: `{COMMAND}`\n\n" + section + "\n"
    readme.write_text(text)


def main() -> int:
    """Run, write the results file and the README section."""
    if os.geteuid() != 0:
        print("bench.geneve_bench needs root (network namespaces)", file=sys.stderr)
        return 2
    doc = run()
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(doc, indent=2) + "\n")
    write_readme(doc)
    print(json.dumps({key: doc[key] for key in ("pps_64b", "pps_1400b", "gbps_single", "gbps_8flow", "user", "baselines", "target")}, indent=2))
    print(f"bench.geneve_bench wrote {RESULT.relative_to(REPO)} and {README.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
