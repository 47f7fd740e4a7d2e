"""A Gateway Load Balancer in a namespace, and an AWS connector fabric behind it, for the tests and the bench.

`GwlbEmulator` plays the GWLB endpoint and the load balancer together: the
workload's route for the remote CIDRs points at a TUN device (`gwlbe`, the
endpoint); every packet read there is hashed on its direction-free 5-tuple
(3-tuple for ICMP) to one target, wrapped as AWS does (GENEVE, class 0x0108:
endpoint id, attachment id and a cookie per flow, `dataplane.geneve.packet.encode`)
and sent to that target's UDP 6081. What the targets return is checked (it
must come from the flow's target with the flow's exact header: anything else
is counted in `bad_returns` and dropped, as the real load balancer would)
and the inner packet is written back into the TUN, where the namespace's
routing delivers it to the workload. `returns_by_target` records who returned
what, so a test can assert symmetry over many flows.

`GwlbFabric` builds:

    app 10.30.40.10, .200 -- gwlb (VPC router + GWLB) --10.30.41.0/30-- conn1 --10.250.37.0/30-- edge -- azapp 172.18.40.10
                                                      \\-10.30.41.4/30-- conn2 --10.250.37.4/30-/

with a real `transit-agent` on conn1, conn2 (each with an AgentConfig
`geneve` section, both with the connector's one identity, as the VMs of an
autoscaling group have) and the edge. The edge reaches 10.30.40.0/25 through conn1
and 10.30.40.128/25 through conn2, so inbound flows are delivered by both
targets. The gwlb namespace routes everything else plainly (it is also the
VPC's router), so a connector's own address is reached directly.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import socket
import struct
import tempfile
import threading
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplane import pki
from dataplane.tun import open_tun
from dataplane.geneve.gateway import SOCKET_BUFFER, TUN_QUEUE, set_buffers
from dataplane.geneve.packet import GENEVE_PORT, Malformed, encode, flow_key, parse
from testbed.netns import Lab, Netns, in_netns
from testbed.seed000 import AGENT, REPO, AgentProcess, identity, stop_agents

APP_HOSTS = ("10.30.40.10", "10.30.40.200")  # one behind each connector's half of the network, for inbound flows
AZ_APP = "172.18.40.10"
GWLB_SIDE = {"conn1": "10.30.41.1", "conn2": "10.30.41.5"}  # the load balancer's address on each target's link
TARGETS = {"conn1": "10.30.41.2", "conn2": "10.30.41.6"}
EDGE_SIDE = {"conn1": ("10.250.37.1", "10.250.37.2"), "conn2": ("10.250.37.5", "10.250.37.6")}  # (edge, connector)
HALVES = {"conn1": "10.30.40.0/25", "conn2": "10.30.40.128/25"}
ENDPOINT_ID = 0x0B1E5EED0000A001
ATTACHMENT_ID = 0x00000000A77AC4ED
CONNECTOR = identity("conn")  # every target's identity: one connector, several VMs
JUMBO = 9001  # the VPC's MTU: room for 8,500 bytes inside GENEVE's 68

POLICY: dict[str, Any] = {
    "default": "deny",
    "rules": [
        {"name": "no-ssh", "action": "deny", "proto": "tcp", "ports": [22]},
        {"name": "app-to-db", "action": "permit", "src": ["10.30.40.0/24"], "dst": ["172.18.40.0/24"], "proto": "tcp", "ports": [5432, [8000, 8100]]},
        {"name": "app-dns", "action": "permit", "src": ["10.30.40.0/24"], "dst": ["172.18.40.0/24"], "proto": "udp", "ports": [53, 5353]},
        {"name": "app-ping", "action": "permit", "src": ["10.30.40.0/24"], "dst": ["172.18.40.0/24"], "proto": "icmp"},
        {"name": "az-to-aws", "action": "permit", "src": ["172.18.40.0/24"], "dst": ["10.30.40.0/24"], "proto": "tcp", "ports": [9000]},
    ],
}


class GwlbEmulator:
    """The GWLB and its endpoint in namespace `ns`: encapsulate to a hashed target, check and decapsulate returns."""

    def __init__(self, ns: Netns, targets: list[str], *, mtu: int = 8500, tun: str = "gwlbe") -> None:
        self.ns = ns
        self.targets = targets
        self.sent: dict[tuple[int, ...], int] = {}  # flow key -> index of its target
        self.headers: dict[tuple[int, ...], bytes] = {}
        self.returns_by_target: defaultdict[str, set[tuple[int, ...]]] = defaultdict(set)
        self.bad_returns = 0
        self.packets_out = 0
        self.packets_back = 0
        self._stop = threading.Event()
        self._fd = in_netns(ns.name, lambda: open_tun(tun))
        ns.exec("ip", "link", "set", tun, "up", "mtu", str(mtu), "txqueuelen", str(TUN_QUEUE))
        self.tun = tun
        self._sock = ns.socket(socket.SOCK_DGRAM)
        set_buffers(self._sock, SOCKET_BUFFER)
        self._sock.bind(("0.0.0.0", GENEVE_PORT))
        self._sock.setblocking(False)
        self._threads = [threading.Thread(target=self._encapsulate, daemon=True), threading.Thread(target=self._decapsulate, daemon=True)]
        for thread in self._threads:
            thread.start()

    def target_for(self, key: tuple[int, ...]) -> int:
        """The GWLB's stickiness: a hash of the direction-free flow key, so both directions pick the same target."""
        return zlib.crc32(struct.pack("!BIHIH", *key)) % len(self.targets)

    def send_raw(self, target: str, payload: bytes) -> None:
        """Send any bytes to a target's 6081 from the load balancer's socket (garbage tests)."""
        self._sock.sendto(payload, (target, GENEVE_PORT))

    def close(self) -> None:
        """Stop both threads and close the TUN and socket."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._sock.close()
        os.close(self._fd)

    def _encapsulate(self) -> None:
        buf = bytearray(65536)
        view = memoryview(buf)
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(200):
                continue
            while True:
                try:
                    length = os.readv(self._fd, [buf])
                except BlockingIOError:
                    break
                try:
                    key = flow_key(view, 0, length)
                except Malformed:
                    continue  # IPv6 solicitations on the TUN and such
                index = self.sent.get(key)
                if index is None:
                    index = self.sent[key] = self.target_for(key)
                    self.headers[key] = encode(b"", endpoint_id=ENDPOINT_ID, attachment_id=ATTACHMENT_ID, flow_cookie=zlib.crc32(repr(key).encode()))
                try:
                    self._sock.sendmsg([self.headers[key], view[:length]], (), 0, (self.targets[index], GENEVE_PORT))
                except BlockingIOError:
                    continue
                self.packets_out += 1

    def _decapsulate(self) -> None:
        buf = bytearray(65536)
        view = memoryview(buf)
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(200):
                continue
            while True:
                try:
                    length, (source, _port) = self._sock.recvfrom_into(buf)
                except BlockingIOError:
                    break
                except OSError:
                    break
                try:
                    packet = parse(view, length)
                except Malformed:
                    self.bad_returns += 1
                    continue
                index = self.sent.get(packet.key)
                if index is None or self.targets[index] != source or bytes(view[:packet.header_len]) != self.headers[packet.key]:
                    self.bad_returns += 1  # the load balancer never saw this flow from that target with that header
                    continue
                self.returns_by_target[source].add(packet.key)
                os.write(self._fd, view[packet.header_len:length])
                self.packets_back += 1


@dataclass
class CappedAgent(AgentProcess):
    """An agent started without some capabilities (dropped from the bounding set before it starts): a VM
    whose agent may not load eBPF, for one."""

    drop: tuple[str, ...] = ()

    def start(self) -> CappedAgent:
        self.started_at = len(self.log())
        handle = self.log_path.open("ab")
        dropped = ",".join(f"-{cap}" for cap in self.drop)
        self.proc = self.ns.spawn("setpriv", f"--bounding-set={dropped}", f"--inh-caps={dropped}", *AGENT, "--config", str(self.config_path),
                                  stdout=handle, stderr=handle, cwd=REPO)
        handle.close()
        return self


@dataclass
class GwlbFabric:
    """The topology above with its agents; everything goes on exit."""

    geneve: dict[str, Any] = field(default_factory=dict)  # overrides of every connector's `geneve` section
    connectors: tuple[str, ...] = ("conn1", "conn2")  # the load balancer's targets (conn1 alone: 10.30.40.0/24 behind it)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    drop_caps: tuple[str, ...] = ()  # capabilities the connectors' agents start without (e.g. bpf, sys_admin: no eBPF)
    mtu: int = 8500
    link_mtu: int = JUMBO
    tag: str = "gwl"
    lab: Lab = field(init=False)
    workdir: Path = field(init=False)
    agents: dict[str, AgentProcess] = field(default_factory=dict)
    gwlb: GwlbEmulator | None = None

    def __enter__(self) -> GwlbFabric:
        self.lab = Lab(self.tag)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.lab.prefix}-"))
        try:
            self._build()
            for agent in self.agents.values():
                agent.start()
            for agent in self.agents.values():
                agent.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.gwlb is not None:
            self.gwlb.close()
            self.gwlb = None
        stop_agents(self.agents.values())
        self.lab.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def ns(self, short: str) -> Netns:
        """A namespace: app, gwlb, conn1, conn2, edge, azapp."""
        return self.lab.namespaces[short]

    def _build(self) -> None:
        lab = self.lab
        app, gwlb, edge, az = (lab.ns(n) for n in ("app", "gwlb", "edge", "azapp"))
        for node in self.connectors:
            lab.ns(node)
        lab.link(app, "eth0", f"{APP_HOSTS[0]}/24", gwlb, "g-app", "10.30.40.1/24")
        app.exec("ip", "addr", "add", f"{APP_HOSTS[1]}/24", "dev", "eth0")
        for node, conn in ((node, self.ns(node)) for node in self.connectors):
            lab.link(gwlb, f"g-{node}", f"{GWLB_SIDE[node]}/30", conn, "c-gwlb", f"{TARGETS[node]}/30")
            edge_addr, conn_addr = EDGE_SIDE[node]
            lab.link(conn, "c-edge", f"{conn_addr}/30", edge, f"e-{node}", f"{edge_addr}/30")
            conn.exec("ip", "route", "add", "10.30.40.0/24", "via", GWLB_SIDE[node])  # the VPC router
            for space, ifname in ((gwlb, f"g-{node}"), (conn, "c-gwlb")):
                space.exec("ip", "link", "set", ifname, "mtu", str(self.link_mtu))
                # As a VM's NIC (AWS's ENA) does: checksums filled in before a packet leaves. A veth would hand a
                # packet over with its checksum still to do, which the emulator's socket and TUN would pass on unfilled.
                space.exec("ethtool", "-K", ifname, "tx", "off")
        lab.link(edge, "e-app", "172.18.40.1/24", az, "eth0", f"{AZ_APP}/24")
        for space, ifname in ((app, "eth0"), (gwlb, "g-app"), (edge, "e-app"), (az, "eth0")):
            space.exec("ip", "link", "set", ifname, "mtu", str(self.mtu))
        app.exec("ip", "route", "add", "default", "via", "10.30.40.1")
        az.exec("ip", "route", "add", "default", "via", "172.18.40.1")
        gwlb.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.gwlb = GwlbEmulator(gwlb, [TARGETS[node] for node in self.connectors], mtu=self.mtu)
        gwlb.exec("ip", "route", "add", "172.18.40.0/24", "dev", self.gwlb.tun)  # the workload route to the endpoint
        ca = pki.create_ca("acme")
        for node, config in self.configs().items():
            folder = self.workdir / node
            ca_path, cert_path, key_path = pki.write_node_files(folder, ca.cert_pem, pki.issue(ca, config["identity"]))
            config["tls"] = {"ca": str(ca_path), "cert": str(cert_path), "key": str(key_path)}
            config["flow_log"] = str(folder / "flows.jsonl")
            config.update(self.overrides.get(node, {}))
            path = folder / "agent.json"
            path.write_text(json.dumps(config, indent=2))
            if self.drop_caps and node in self.connectors:
                self.agents[node] = CappedAgent(node, self.ns(node), path, folder / "agent.log", drop=self.drop_caps)
            else:
                self.agents[node] = AgentProcess(node, self.ns(node), path, folder / "agent.log")

    def configs(self) -> dict[str, dict[str, Any]]:
        """The AgentConfig documents (before TLS paths and flow logs are filled in)."""
        # The connector VMs behind one load balancer share the connector's identity, as an autoscaling group's do.
        members = [{"identity": CONNECTOR, "cidrs": ["10.30.40.0/24"]}, {"identity": identity("edge"), "cidrs": ["172.18.40.0/24"]}]
        common = {"filter": POLICY, "timeouts": {"idle": 30, "connect": 3, "handshake": 5, "drain": 2},  # a loaded shared machine
                  "paths": {"probe_interval": 0.1, "failover_misses": 3, "failback_hold": 2.0}, "members": members}
        configs: dict[str, dict[str, Any]] = {}
        for node in self.connectors:
            edge_addr, _ = EDGE_SIDE[node]
            configs[node] = {
                "name": node, "role": "connector", "identity": CONNECTOR, "local_cidrs": ["10.30.40.0/24"],
                "peers": [{"name": "edge", "identity": identity("edge"), "private_addr": edge_addr, "cidrs": ["172.18.40.0/24"]}],
                "geneve": {"listen": {"host": TARGETS[node], "port": GENEVE_PORT}, "gwlb_cidrs": ["10.30.41.0/24"],
                           "networks": [{"cidrs": ["10.30.40.0/24"]}], "mtu": self.mtu, **self.geneve},
                **common,
            }
        configs["edge"] = {
            "name": "edge", "role": "edge", "identity": identity("edge"), "local_cidrs": ["172.18.40.0/24"],
            "peers": [{"name": node, "identity": CONNECTOR, "private_addr": EDGE_SIDE[node][1],
                       "cidrs": [HALVES[node] if len(self.connectors) > 1 else "10.30.40.0/24"]} for node in self.connectors],
            **common,
        }
        return configs

    def flow_records(self, node: str) -> list[dict[str, Any]]:
        """The flow log of one agent."""
        path = self.workdir / node / "flows.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
