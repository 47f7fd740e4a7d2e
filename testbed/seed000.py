"""Seed 000's example topology in namespaces, with real `transit-agent` processes.

    aws-app 10.30.40.10 -- connector -- edge A --(private 100.64.37.0/30)-- edge B -- az-app 172.18.40.10
             10.30.40.0/24   10.250.37.0/24      \\(public 198.51.100.0/30)/  10.254.37.1, 172.18.40.0/24

The application hosts route the remote CIDR to the connector (aws-app) and to
edge B (az-app), exactly as the cloud route tables would. Edges and connector
get certificates from one fabric CA; every agent gets the same filter policy.
The integration tests and bench/dataplane_bench.py both build it with
`Seed000(...)` inside a `with` block.
"""
from __future__ import annotations

import json
import shutil
import ssl
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplane import pki
from dataplane.config import TlsPaths
from dataplane.header import StreamHeader
from dataplane.tls import build_contexts
from testbed.netns import Lab, Netns

FABRIC = "acme"
AGENT = [str(Path(sys.executable).parent / "transit-agent")]
REPO = Path(__file__).resolve().parents[1]

AWS_APP = "10.30.40.10"
AZ_APP = "172.18.40.10"
CONNECTOR = {"app": "10.30.40.1", "edge": "10.250.37.10"}
EDGE_A = {"conn": "10.250.37.1", "private": "100.64.37.1", "public": "198.51.100.1"}
EDGE_B = {"private": "100.64.37.2", "public": "198.51.100.2", "app": "172.18.40.1", "edge": "10.254.37.1"}

# Interfaces on the links between the connector and the far edge (where no plaintext may appear).
TUNNEL_LINKS = (("conn", "c-edge"), ("edgea", "a-priv"), ("edgea", "a-pub"))

DEFAULT_POLICY: dict[str, Any] = {
    "default": "deny",
    "rules": [
        {"name": "no-ssh", "action": "deny", "proto": "tcp", "ports": [22]},
        {"name": "app-to-db", "action": "permit", "src": ["10.30.40.0/24"], "dst": ["172.18.40.0/24"], "proto": "tcp", "ports": [5432, [8000, 8100]]},
        {"name": "az-to-aws", "action": "permit", "src": ["172.18.40.0/24"], "dst": ["10.30.40.0/24"], "proto": "tcp", "ports": [9000]},
    ],
}


def identity(node: str) -> str:
    """The fabric identity of a node."""
    return f"spiffe://{FABRIC}/{node}"


@dataclass
class AgentProcess:
    """A running agent: its namespace, config file and log."""

    node: str
    ns: Netns
    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: int = 0  # log offset where the current process began

    def log(self) -> str:
        """Everything the agent logged so far (every run of it)."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    def current_log(self) -> str:
        """What the current process logged."""
        return self.log()[self.started_at:]

    def wait_for(self, text: str, timeout: float = 3.0) -> bool:
        """Wait until the log holds `text` (log lines land a moment after the event)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def signal(self, sig: int) -> None:
        """Send a signal to the agent."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def start(self) -> AgentProcess:
        """Start (or restart) the agent inside its namespace, logging to `log_path`."""
        self.started_at = len(self.log())
        handle = self.log_path.open("ab")
        self.proc = self.ns.spawn(*AGENT, "--config", str(self.config_path), stdout=handle, stderr=handle, cwd=REPO)
        handle.close()
        return self

    def wait_ready(self, timeout: float = 15) -> None:
        """Wait for the agent's start line; raise with its log if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "agent.start " in self.current_log():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"agent {self.node} exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise TimeoutError(f"agent {self.node} not ready:\n{self.log()}")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the agent and wait for it (killed if it does not stop in time)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def stop_agents(agents: Iterable[AgentProcess]) -> None:
    """SIGTERM every agent first, so they wind down together, then wait for each (killed if late)."""
    agents = list(agents)
    for agent in agents:
        if agent.proc and agent.proc.poll() is None:
            agent.proc.send_signal(signal.SIGTERM)
    for agent in agents:
        agent.stop()


@dataclass
class Seed000:
    """Build the topology and agents on enter, remove everything on exit."""

    policy: dict[str, Any] = field(default_factory=lambda: json.loads(json.dumps(DEFAULT_POLICY)))
    overrides: dict[str, Any] = field(default_factory=dict)
    tag: str = "s00"
    lab: Lab = field(init=False)
    workdir: Path = field(init=False)
    agents: dict[str, AgentProcess] = field(default_factory=dict)
    ca: pki.KeyPair = field(init=False)

    def __enter__(self) -> Seed000:
        self.lab = Lab(self.tag)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.lab.prefix}-"))
        try:
            self._build()
            for node in ("conn", "edgea", "edgeb"):
                self.start_agent(node)
            for node in ("conn", "edgea", "edgeb"):
                self.wait_ready(node)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop_agents(self.agents.values())
        self.lab.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- building ------------------------------------------------------

    def ns(self, short: str) -> Netns:
        """A namespace of the topology: awsapp, conn, edgea, edgeb, azapp."""
        return self.lab.namespaces[short]

    def _build(self) -> None:
        lab = self.lab
        aws, conn, edgea, edgeb, az = (lab.ns(n) for n in ("awsapp", "conn", "edgea", "edgeb", "azapp"))
        lab.link(aws, "eth0", f"{AWS_APP}/24", conn, "c-app", f"{CONNECTOR['app']}/24")
        lab.link(conn, "c-edge", f"{CONNECTOR['edge']}/24", edgea, "a-conn", f"{EDGE_A['conn']}/24")
        lab.link(edgea, "a-priv", f"{EDGE_A['private']}/30", edgeb, "b-priv", f"{EDGE_B['private']}/30")
        lab.link(edgea, "a-pub", f"{EDGE_A['public']}/30", edgeb, "b-pub", f"{EDGE_B['public']}/30")
        lab.link(edgeb, "b-app", f"{EDGE_B['app']}/24", az, "eth0", f"{AZ_APP}/24")
        edgeb.exec("ip", "addr", "add", f"{EDGE_B['edge']}/24", "dev", "b-app")
        aws.exec("ip", "route", "add", "default", "via", CONNECTOR["app"])
        az.exec("ip", "route", "add", "default", "via", EDGE_B["app"])
        self.ca = pki.create_ca(FABRIC)
        for node, config in self.configs().items():
            folder = self.workdir / node
            ca_path, cert_path, key_path = pki.write_node_files(folder, self.ca.cert_pem, pki.issue(self.ca, identity(node)))
            config["tls"] = {"ca": str(ca_path), "cert": str(cert_path), "key": str(key_path)}
            config["flow_log"] = str(folder / "flows.jsonl")
            config.update(self.overrides.get(node, {}))
            path = folder / "agent.json"
            path.write_text(json.dumps(config, indent=2))
            self.agents[node] = AgentProcess(node, self.ns(node), path, folder / "agent.log")

    def configs(self) -> dict[str, dict[str, Any]]:
        """The three AgentConfig documents (before TLS paths are filled in)."""
        timeouts = {"idle": 30, "connect": 2, "handshake": 2, "drain": 2}
        # Who speaks for which prefixes: the connector for the AWS network, edge B for its native Azure network.
        members = [
            {"identity": identity("conn"), "cidrs": ["10.30.40.0/24"]},
            {"identity": identity("edgea"), "cidrs": []},
            {"identity": identity("edgeb"), "cidrs": ["172.18.40.0/24"]},
        ]
        common = {"filter": self.policy, "timeouts": timeouts, "members": members,
                  "paths": {"probe_interval": 0.1, "failover_misses": 3, "failback_hold": 2.0}}
        return {
            "conn": {
                "name": "conn", "role": "connector", "identity": identity("conn"),
                "local_cidrs": ["10.30.40.0/24"],
                "peers": [{"name": "edgea", "identity": identity("edgea"), "private_addr": EDGE_A["conn"], "cidrs": ["172.18.40.0/24"]}],
                **common,
            },
            "edgea": {
                "name": "edgea", "role": "edge", "identity": identity("edgea"),
                "peers": [
                    {"name": "conn", "identity": identity("conn"), "private_addr": CONNECTOR["edge"], "cidrs": ["10.30.40.0/24"]},
                    {"name": "edgeb", "identity": identity("edgeb"), "private_addr": EDGE_B["private"], "public_addr": EDGE_B["public"], "cidrs": ["172.18.40.0/24"]},
                ],
                **common,
            },
            "edgeb": {
                "name": "edgeb", "role": "edge", "identity": identity("edgeb"),
                "local_cidrs": ["172.18.40.0/24"],
                "peers": [{"name": "edgea", "identity": identity("edgea"), "private_addr": EDGE_A["private"], "public_addr": EDGE_A["public"], "cidrs": ["10.30.40.0/24"]}],
                **common,
            },
        }

    # ---- agents --------------------------------------------------------

    def start_agent(self, node: str) -> AgentProcess:
        """Start (or restart) one agent inside its namespace."""
        return self.agents[node].start()

    def wait_ready(self, node: str, timeout: float = 15) -> None:
        """Wait for the agent's start line; raise with its log if it exits or times out."""
        self.agents[node].wait_ready(timeout)

    def write_config(self, node: str, config: dict[str, Any]) -> None:
        """Replace an agent's config file (then signal SIGHUP to reload it)."""
        self.agents[node].config_path.write_text(json.dumps(config, indent=2))

    def reload(self, node: str, config: dict[str, Any], timeout: float = 5) -> None:
        """Write `config` for `node`, SIGHUP it and wait for `agent.reloaded` (raise if it refuses or times out)."""
        agent = self.agents[node]
        start = len(agent.log())
        self.write_config(node, config)
        agent.signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while "agent.reloaded" not in (fresh := agent.log()[start:]):
            if "agent.reload_refused" in fresh or time.monotonic() > deadline:
                raise RuntimeError(f"agent {node} did not reload:\n{fresh}")
            time.sleep(0.02)

    def read_config(self, node: str) -> dict[str, Any]:
        """The agent's current config document."""
        return json.loads(self.agents[node].config_path.read_text())

    def member_context(self, node: str) -> ssl.SSLContext:
        """A client TLS context holding `node`'s real fabric certificate (to speak to agents as that member)."""
        folder = self.workdir / node
        return build_contexts(TlsPaths(ca=folder / "ca.pem", cert=folder / "node.pem", key=folder / "node.key")).client

    def open_stream(self, node: str, address: str, header: StreamHeader, *, ns: str | None = None) -> ssl.SSLSocket:
        """A tunnel stream to the agent at `address`, opened as member `node` from namespace `ns` (default: `node`'s), header sent.

        The caller reads the reply and closes the stream.
        """
        sock = self.ns(ns or node).socket()
        sock.settimeout(3)
        try:
            sock.connect((address, 7443))
            tls = self.member_context(node).wrap_socket(sock, server_side=False)
            tls.sendall(header.encode())
        except BaseException:
            sock.close()
            raise
        return tls

    def round_trip(self, payload: bytes, port: int = 5432) -> bool:
        """Does a fresh connection from the AWS app to the Azure app's echo server carry `payload` both ways?"""
        sock = self.ns("awsapp").socket()
        sock.settimeout(5)
        try:
            with sock:
                sock.connect((AZ_APP, port))
                sock.sendall(payload)
                return sock.recv(len(payload)) == payload
        except OSError:
            return False
