"""`transit local-check`: prove the running local fabric with real traffic and BGP state.

Reads the local stack's outputs (the LocalFabric hand-off: `flows`, `routers`),
sends each policy test's flow for real from its host namespace, and reads every
FRR instance's `show bgp summary json`. Prints both as tables and exits 1 when a
flow's verdict differs from the policy or a session is not Established.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

EXIT_FAILED = 1
CONNECT_TIMEOUT = 3.0
_PROBE = (
    "import socket, sys\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))\n"
    "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
    "sys.exit(0 if s.recv(64).startswith(b'HTTP/1.0 200') else 3)\n"
)
# UDP: one datagram to the host's UDP echo server; the same bytes back means permit.
UDP_PROBE = (
    "import os, socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.settimeout(float(sys.argv[3]))\n"
    "s.connect((sys.argv[1], int(sys.argv[2])))\n"
    "data = b'transit-udp-' + os.urandom(8).hex().encode()\n"
    "s.send(data)\n"
    "try:\n"
    "    sys.exit(0 if s.recv(65535) == data else 3)\n"
    "except (TimeoutError, ConnectionRefusedError):\n"
    "    sys.exit(1)\n"
)
@dataclass(frozen=True)
class FlowResult:
    """One policy test sent for real: what the policy expects and what the network did."""

    test: str
    src: str
    dst: str
    port: int | None
    proto: str
    expect: str
    observed: str

    @property
    def ok(self) -> bool:
        return self.expect == self.observed


@dataclass(frozen=True)
class Session:
    """One BGP session as FRR reports it."""

    router: str
    neighbor: str
    remote_as: int
    state: str
    prefixes_received: int
    prefixes_sent: int
    description: str

    @property
    def ok(self) -> bool:
        return self.state == "Established"


def find_local_outputs(outputs: Any) -> dict[str, Any] | None:
    """The LocalFabric hand-off inside a stack's outputs: the mapping with `flows` and `routers`."""
    if isinstance(outputs, dict):
        if "flows" in outputs and "routers" in outputs:
            return outputs
        for value in outputs.values():
            found = find_local_outputs(value)
            if found is not None:
                return found
    return None


def probe_argv(flow: dict[str, Any], timeout: float = CONNECT_TIMEOUT) -> list[str]:
    """The command that sends one flow from its host namespace (tcp, udp or icmp)."""
    netns = ["ip", "netns", "exec", flow["src_ns"]]
    proto = flow.get("proto", "tcp")
    if proto == "icmp":  # iputils ping: exit 0 only when the echo is answered
        return [*netns, "ping", "-n", "-c", "1", "-W", str(math.ceil(timeout)), flow["dst"]]
    script = {"tcp": _PROBE, "udp": UDP_PROBE}[proto]
    return [*netns, "python3", "-c", script, flow["dst"], str(flow["port"]), str(timeout)]


def send_flow(flow: dict[str, Any], timeout: float = CONNECT_TIMEOUT) -> FlowResult:
    """Send one flow from its host namespace: permit means the destination answered.

    tcp: an HTTP answer from the app server; udp: the datagram echoed by the
    host's UDP echo server; icmp: an echo reply from the destination itself.
    """
    done = subprocess.run(probe_argv(flow, timeout), capture_output=True, timeout=timeout + 5, check=False)
    observed = "permit" if done.returncode == 0 else "deny"
    return FlowResult(flow["test"], flow["src"], flow["dst"], flow.get("port"), flow.get("proto", "tcp"), flow["expect"], observed)


def read_sessions(router: dict[str, Any]) -> list[Session]:
    """The BGP sessions of one FRR instance (`vtysh -N <name> -c 'show bgp summary json'`)."""
    argv = ["ip", "netns", "exec", router["ns"], "vtysh", "-N", router["name"], "-c", "show bgp summary json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    if done.returncode != 0:
        return [Session(router["name"], "-", 0, f"FRR not answering: {done.stderr.strip()[:60]}", 0, 0, "")]
    peers = json.loads(done.stdout or "{}").get("ipv4Unicast", {}).get("peers", {})
    return [
        Session(router["name"], address, int(peer.get("remoteAs", 0)), peer.get("state", "?"),
                int(peer.get("pfxRcd", 0)), int(peer.get("pfxSnt", 0)), peer.get("desc", ""))
        for address, peer in peers.items()
    ]


def learned_routes(router: dict[str, Any]) -> list[str]:
    """Prefixes the instance installed from BGP (`show ip route bgp json`)."""
    argv = ["ip", "netns", "exec", router["ns"], "vtysh", "-N", router["name"], "-c", "show ip route bgp json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    return sorted(json.loads(done.stdout or "{}")) if done.returncode == 0 else []


def wait_sessions(routers: list[dict[str, Any]], timeout: float, settle_polls: int = 3) -> list[Session]:
    """Sessions of every router, polled until all are Established and have routes, or their
    prefix counts held still for `settle_polls` polls (a peer may announce nothing), or
    `timeout` seconds pass; routes arrive a moment after sessions come up."""
    deadline = time.monotonic() + timeout
    history: list[list[Session]] = []
    while True:
        sessions = [s for router in routers for s in read_sessions(router)]
        history = [*history[-(settle_polls - 1):], sessions]
        settled = len(history) == settle_polls and all(h == sessions for h in history)
        if all(s.ok for s in sessions) and (all(s.prefixes_received for s in sessions) or settled):
            return sessions
        if time.monotonic() >= deadline:
            return sessions
        time.sleep(1)


def stack_outputs(stack: str, cwd: Path) -> dict[str, Any]:
    """`pulumi stack output --json` of `stack` (no secrets are needed or shown)."""
    done = subprocess.run(["pulumi", "stack", "output", "--json", "-s", stack], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=os.environ, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pulumi stack output -s {stack} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def local_check(
    stack: str = typer.Option("local", "--stack", "-s", help="Stack whose local fabric to check. Defaults to local."),
    project: Path = typer.Option(Path("."), "--cwd", help="Pulumi project directory. Defaults to the current one."),
    wait: float = typer.Option(30.0, "--wait", help="Seconds to wait for BGP sessions to establish. Defaults to 30."),
) -> None:
    """Send the policy tests' flows for real and show the BGP sessions of the local fabric."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    try:
        local = find_local_outputs(stack_outputs(stack, project))
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_FAILED) from None
    if local is None:
        console.print(f"[red]stack {stack} has no local fabric outputs (flows, routers); run `pulumi up -s {stack}`[/red]")
        raise typer.Exit(EXIT_FAILED)

    flows = [send_flow(f) for f in local["flows"]]
    table = Table(title=f"Flows (policy.tests, sent for real on {local['prefix']})")
    for column in ("test", "from", "to", "expect", "observed", ""):
        table.add_column(column)
    for f in flows:
        mark = "[green]ok[/green]" if f.ok else "[red]MISMATCH[/red]"
        to = f"{f.dst}:{f.port}/{f.proto}" if f.port else f"{f.dst}/{f.proto}"
        table.add_row(f.test.removeprefix("policy."), f.src, to, f.expect, f.observed, mark)
    console.print(table)

    sessions = wait_sessions(local["routers"], wait)
    table = Table(title="BGP sessions")
    for column in ("router", "neighbor", "AS", "session", "state", "rcvd", "sent"):
        table.add_column(column)
    for s in sessions:
        state = f"[green]{s.state}[/green]" if s.ok else f"[red]{s.state}[/red]"
        table.add_row(s.router.removeprefix(f"{local['prefix']}-"), s.neighbor, str(s.remote_as), s.description, state, str(s.prefixes_received),
                      str(s.prefixes_sent))
    console.print(table)

    if not all(f.ok for f in flows) or not all(s.ok for s in sessions):
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add `transit local-check` to the CLI."""
    app.command("local-check")(local_check)
