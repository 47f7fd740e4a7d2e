"""Namespace harness: uniquely named namespaces, veth links, processes inside them, always cleaned up.

`Lab` is a context manager: every namespace it makes carries the lab's unique
prefix, every process it starts is ended, and every namespace (with its veths)
is deleted on exit, even after a failure. `socket_in()` creates a socket inside
a namespace from this process (the socket stays in that namespace), so tests
can connect, listen and time traffic without helper processes.

Used by the data plane integration tests and by bench/dataplane_bench.py.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transit_cli.status import in_netns  # the one setns-in-a-thread helper; tests use it too


def run(cmd: list[str], *, check: bool = True, timeout: float = 30, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; raise with its stderr when it fails and `check` is set."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def socket_in(name: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new IPv4 socket that lives in namespace `name`."""
    return in_netns(name, lambda: socket.socket(socket.AF_INET, kind))


@dataclass
class Netns:
    """One namespace of a lab."""

    name: str
    lab: Lab

    def exec(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it."""
        return run(["ip", "netns", "exec", self.name, *cmd], check=check, timeout=timeout)

    def spawn(self, *cmd: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start a long-running process inside the namespace; the lab ends it on exit."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kwargs)
        self.lab.processes.append(proc)
        return proc

    def socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket inside this namespace."""
        return socket_in(self.name, kind)

    def nft_tables(self) -> list[str]:
        """Names of the nftables tables in this namespace."""
        out = self.exec("nft", "list", "tables").stdout
        return [line.split()[-1] for line in out.splitlines() if line.startswith("table")]

    def ip_rules(self) -> str:
        """`ip rule` output, for leak checks."""
        return self.exec("ip", "rule").stdout


@dataclass
class Lab:
    """A set of namespaces and processes that exists only inside a `with` block."""

    tag: str = "lab"
    prefix: str = field(init=False)
    namespaces: dict[str, Netns] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prefix = f"t{self.tag[:3]}{uuid.uuid4().hex[:6]}"

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ns(self, short: str) -> Netns:
        """Create namespace `<prefix>-<short>` with loopback up."""
        name = f"{self.prefix}-{short}"
        run(["ip", "netns", "add", name])
        space = Netns(name, self)
        self.namespaces[short] = space
        space.exec("ip", "link", "set", "lo", "up")
        return space

    def link(self, a: Netns, a_if: str, a_addr: str, b: Netns, b_if: str, b_addr: str) -> None:
        """A veth pair between two namespaces with an address (CIDR form) on each end; names fit 15 chars."""
        for ifname in (a_if, b_if):
            if len(ifname) > 15:
                raise ValueError(f"interface name {ifname} is longer than 15 characters")
        tmp_a, tmp_b = f"v{uuid.uuid4().hex[:10]}", f"v{uuid.uuid4().hex[:10]}"
        run(["ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b])
        run(["ip", "link", "set", tmp_a, "netns", a.name, "name", a_if])
        run(["ip", "link", "set", tmp_b, "netns", b.name, "name", b_if])
        for space, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            space.exec("ip", "addr", "add", addr, "dev", ifname)
            space.exec("ip", "link", "set", ifname, "up")

    def close(self) -> None:
        """End every process, then delete every namespace (its veths go with it) and file."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for space in self.namespaces.values():
            leftover = run(["ip", "netns", "pids", space.name], check=False).stdout.split()
            for pid in leftover:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            run(["ip", "netns", "del", space.name], check=False)
        self.namespaces.clear()
        for path in self.files:
            path.unlink(missing_ok=True)


def leftover_namespaces(prefix: str) -> list[str]:
    """Namespaces still carrying `prefix` (a leak check for tests)."""
    root = Path("/run/netns")
    return sorted(p.name for p in root.iterdir() if p.name.startswith(prefix)) if root.exists() else []


class UdpEcho:
    """A UDP echo server inside a namespace that records who sent what."""

    def __init__(self, ns: Netns, port: int) -> None:
        self.peers: list[tuple[str, int]] = []
        self._sock = ns.socket(socket.SOCK_DGRAM)
        self._sock.bind(("0.0.0.0", port))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.peers.append(peer)
            self._sock.sendto(data, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
