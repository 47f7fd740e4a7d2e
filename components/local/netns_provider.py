"""Namespace: one network namespace per fabric node, with forwarding and an optional bridge.

The bridge stands for a subnet (a VPC subnet, a data-center LAN): app hosts and
connectors plug into it with addresses from the network's CIDR.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource

from components.local import sh
from components.local.provider_base import LocalProvider

SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
}
"""Routers forward, routes are asymmetric across circuits, and hosts on a
bridge must keep using their gateway (no ICMP redirects)."""


def kill_namespace_processes(ns: str, grace_seconds: float = 3.0) -> None:
    """TERM then KILL whatever still runs in `ns` (a safety net: daemons are deleted first)."""
    pids = [int(p) for p in sh.run(["ip", "netns", "pids", ns], check=False).stdout.split()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_seconds
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
            time.sleep(0.05)
        if not pids:
            return


def delete_namespace(ns: str) -> None:
    """Remove `ns` and anything running in it; no error when it is already gone."""
    if os.path.exists(f"/run/netns/{ns}"):
        kill_namespace_processes(ns)
        sh.run(["ip", "netns", "del", ns], check=False)


class NamespaceProvider(LocalProvider):
    """Creates `ip netns` namespaces; id is the namespace name."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        ns = props["name"]
        delete_namespace(ns)  # left over by an interrupted run: start clean
        try:
            self._build(ns, props.get("bridge"))
        except Exception:
            delete_namespace(ns)
            raise
        return CreateResult(id_=ns, outs=dict(props))

    @staticmethod
    def _build(ns: str, bridge: dict[str, str] | None) -> None:
        sh.run(["ip", "netns", "add", ns])
        sh.ip(ns, "link", "set", "lo", "up")
        for key, value in SYSCTLS.items():
            sh.ns_run(ns, ["sysctl", "-q", "-w", f"{key}={value}"])
        if bridge:
            sh.ip(ns, "link", "add", bridge["name"], "type", "bridge")
            sh.ip(ns, "addr", "add", bridge["address"], "dev", bridge["name"])
            sh.ip(ns, "link", "set", bridge["name"], "up")

    def alive(self, id_: str, outs: dict[str, Any]) -> bool:
        if not sh.netns_exists(id_):
            return False
        bridge = outs.get("bridge")
        return not bridge or sh.link_exists(id_, bridge["name"])

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not self.alive(id_, props):
            return ReadResult(id_="", outs={})
        return ReadResult(id_=id_, outs=dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        delete_namespace(id_)


class Namespace(Resource, module="local", name="Namespace"):
    """A network namespace named `name`, forwarding on, with an optional bridge {name, address}."""

    name: pulumi.Output[str]

    def __init__(self, resource_name: str, *, name: str, bridge: dict[str, str] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(NamespaceProvider(), resource_name, {"name": name, "bridge": bridge}, opts)
