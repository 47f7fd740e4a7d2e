"""VethLink and ShapedLink: a veth pair between two namespaces.

Both ends are created in their namespaces directly (`ip -n A link add ... peer
... netns B`), so interface names only need to be unique per namespace and
parallel fabrics never collide in the root namespace. A ShapedLink is a
circuit: both ends carry a tbf qdisc at the circuit's bandwidth.
"""
from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource

from components.local import sh
from components.local.provider_base import LocalProvider

TBF_LATENCY = "50ms"


def tbf_burst_bytes(rate_mbps: int) -> int:
    """A burst of 1 ms at line rate, and never below 2 full frames (tbf needs >= MTU)."""
    return max(rate_mbps * 1_000_000 // 8 // 1000, 2 * 1514)


def _end(props: dict[str, Any], side: str) -> tuple[str, str]:
    return props[f"ns_{side}"], props[f"if_{side}"]


class VethLinkProvider(LocalProvider):
    """Creates, checks and removes one veth pair; id is `ns_a/if_a`."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        ns_a, if_a = _end(props, "a")
        ns_b, if_b = _end(props, "b")
        for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
            if sh.link_exists(ns, ifname):  # left over by an interrupted run
                sh.ip(ns, "link", "del", ifname)
        sh.ip(ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        try:
            self._configure(props)
        except Exception:
            sh.ip(ns_a, "link", "del", if_a, check=False)
            raise
        return CreateResult(id_=f"{ns_a}/{if_a}", outs=dict(props))

    @staticmethod
    def _configure(props: dict[str, Any]) -> None:
        for side in ("a", "b"):
            ns, ifname = _end(props, side)
            if props.get(f"master_{side}"):
                sh.ip(ns, "link", "set", ifname, "master", props[f"master_{side}"])
            if props.get(f"addr_{side}"):
                sh.ip(ns, "addr", "add", props[f"addr_{side}"], "dev", ifname)
            sh.ip(ns, "link", "set", ifname, "up")
            if props.get("rate_mbps"):
                rate = int(props["rate_mbps"])
                sh.run(["tc", "-n", ns, "qdisc", "replace", "dev", ifname, "root", "tbf",
                        "rate", f"{rate}mbit", "burst", str(tbf_burst_bytes(rate)), "latency", TBF_LATENCY])

    def alive(self, id_: str, outs: dict[str, Any]) -> bool:
        if not all(sh.link_exists(*_end(outs, side)) for side in ("a", "b")):
            return False
        if outs.get("rate_mbps"):
            ns, ifname = _end(outs, "a")
            return "tbf" in sh.run(["tc", "-n", ns, "qdisc", "show", "dev", ifname], check=False).stdout
        return True

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not self.alive(id_, props):
            return ReadResult(id_="", outs={})
        return ReadResult(id_=id_, outs=dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        # Deleting one end removes the pair; a namespace already gone took it along.
        for side in ("a", "b"):
            ns, ifname = _end(props, side)
            if sh.netns_exists(ns) and sh.link_exists(ns, ifname):
                sh.ip(ns, "link", "del", ifname, check=False)


def _link_props(ns_a: Any, if_a: str, addr_a: str | None, ns_b: Any, if_b: str, addr_b: str | None,
                master_a: str | None, master_b: str | None, rate_mbps: int | None) -> dict[str, Any]:
    return {"ns_a": ns_a, "if_a": if_a, "addr_a": addr_a, "master_a": master_a,
            "ns_b": ns_b, "if_b": if_b, "addr_b": addr_b, "master_b": master_b, "rate_mbps": rate_mbps}


class VethLink(Resource, module="local", name="VethLink"):
    """A veth pair: end a (`if_a` in `ns_a`, address `addr_a` as CIDR or enslaved to `master_a`) and end b."""

    def __init__(self, resource_name: str, *, ns_a: Any, if_a: str, ns_b: Any, if_b: str,
                 addr_a: str | None = None, addr_b: str | None = None,
                 master_a: str | None = None, master_b: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props = _link_props(ns_a, if_a, addr_a, ns_b, if_b, addr_b, master_a, master_b, None)
        super().__init__(VethLinkProvider(), resource_name, props, opts)


class ShapedLink(Resource, module="local", name="ShapedLink"):
    """A circuit: a veth pair whose two ends are shaped with tbf to `rate_mbps`."""

    def __init__(self, resource_name: str, *, ns_a: Any, if_a: str, addr_a: str, ns_b: Any, if_b: str,
                 addr_b: str, rate_mbps: int, opts: pulumi.ResourceOptions | None = None) -> None:
        props = _link_props(ns_a, if_a, addr_a, ns_b, if_b, addr_b, None, None, rate_mbps)
        super().__init__(VethLinkProvider(), resource_name, props, opts)
