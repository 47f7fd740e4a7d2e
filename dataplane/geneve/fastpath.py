"""The GENEVE fast path: `bpf/geneve.bpf.c` loaded with libbpf and attached with tc, beside the user-space worker.

The kernel program decapsulates what the load balancer sends on ingress of
the interface it arrives on and wraps a known flow's replies on egress of
the GENEVE TUN; whatever it leaves alone reaches the worker as before (the
C file says what and why). This module loads the object, sizes and fills
its maps, attaches both programs, reads their counters and flow table, and
removes them.

Why libbpf through ctypes and tc through pyroute2: libbpf is the kernel's
own loader (Debian's `libbpf1`, which iproute2 already depends on, so the
image needs no new runtime package), and the agent holding the object's
descriptors keeps each agent's maps its own without a bpffs pin (agents in
several namespaces of one host would share a pinned name). The agent already
speaks rtnetlink through pyroute2; the two cls_bpf filters carry names
(`filter_name`), by which a start or a stop finds and removes them, also
those a killed agent left.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError

from dataplane.intercept import iproute

OBJECT = Path(__file__).resolve().parent / "bpf" / "geneve.bpf.o"
LIBBPF = "libbpf.so.1"
# The C program's `enum counter`, in order (tests/unit/test_geneve_fastpath.py reads the C file to check).
COUNTERS = (
    "decapsulated", "encapsulated", "learned", "up_foreign_source", "up_malformed", "up_oversize", "up_outer",
    "up_decap_failed", "up_no_flow", "up_expired", "up_not_carried", "up_encap_failed", "drop_encap",
)
MAX_CIDRS = 8  # the C program's MAX_CIDRS
TC_PRIORITY = 0x6081  # the filters' preference on both hooks
INGRESS, EGRESS = 0xFFFFFFF2, 0xFFFFFFF3  # clsact's two hooks (TC_H_MIN_INGRESS / TC_H_MIN_EGRESS under ffff:)
ETH_P_ALL = 0x0003
# struct config: local_addr, mtu, fwmark, out_ifindex, idle_ns, cidr_count, cidr_addr[8], cidr_mask[8] (+4 padding)
_CONFIG = struct.Struct("=4sIIIQI32s32s4x")
_KEY = struct.Struct("=IIHHB3x")  # struct flow_key, host order
_FLOW = struct.Struct("=4s4sQ40s")  # struct flow


class FastPathError(Exception):
    """The fast path could not be loaded or attached; `reason` is a bounded metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


REASONS = ("no_object", "no_libbpf", "no_privilege", "refused", "attach_failed")  # FastPathError.reason values


@dataclass(frozen=True)
class FastPathPlan:
    """Where and how: the interface the load balancer arrives on, the TUN replies are routed into, the settings."""

    ifindex: int  # ingress program here; wrapped replies leave here
    tun: str
    local_addr: IPv4Address | None  # the address the load balancer sends to (None: any)
    gwlb_cidrs: tuple[IPv4Network, ...]
    mtu: int
    fwmark: int
    flow_limit: int
    flow_idle: float

    def config_bytes(self) -> bytes:
        """The `geneve_config` map's one value."""
        cidrs = self.gwlb_cidrs[:MAX_CIDRS]
        return _CONFIG.pack(
            (self.local_addr or IPv4Address(0)).packed, self.mtu, self.fwmark, self.ifindex, int(self.flow_idle * 1e9), len(cidrs),
            b"".join(net.network_address.packed for net in cidrs).ljust(32, b"\0"),
            b"".join(net.netmask.packed for net in cidrs).ljust(32, b"\0"),
        )


def filter_name(tun: str, direction: str) -> str:
    """The cls_bpf filter's name: the agent's TUN (unique on a node) and the direction (`transit-gnv-in`)."""
    return f"{tun}-{direction}"


def _libbpf() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBBPF, use_errno=True)
    except OSError as exc:
        raise FastPathError("no_libbpf", f"{LIBBPF}: {exc}") from exc
    p, i, u32, u64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64
    for name, restype, argtypes in (
        ("bpf_object__open_file", p, [ctypes.c_char_p, p]),
        ("bpf_object__load", i, [p]),
        ("bpf_object__close", None, [p]),
        ("bpf_object__find_program_by_name", p, [p, ctypes.c_char_p]),
        ("bpf_object__find_map_by_name", p, [p, ctypes.c_char_p]),
        ("bpf_program__fd", i, [p]),
        ("bpf_map__fd", i, [p]),
        ("bpf_map__set_max_entries", i, [p, u32]),
        ("bpf_map_update_elem", i, [i, p, p, u64]),
        ("bpf_map_lookup_elem", i, [i, p, p]),
        ("bpf_map_get_next_key", i, [i, p, p]),
        ("libbpf_num_possible_cpus", i, []),
    ):
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


def _failed(what: str, code: int) -> FastPathError:
    code = abs(code) or ctypes.get_errno()
    reason = "no_privilege" if code in (errno.EPERM, errno.EACCES) and what == "load" else "refused"
    return FastPathError(reason, f"{what}: {os.strerror(code)} (libbpf prints the verifier's log on stderr)")


class BpfObject:
    """The loaded object: its two programs and three maps, by descriptor, until `close`."""

    def __init__(self, path: Path = OBJECT, *, flow_limit: int) -> None:
        if not path.is_file():
            raise FastPathError("no_object", f"{path} missing (tools/build-bpf.sh builds it)")
        self.lib = _libbpf()
        ctypes.set_errno(0)
        self._obj = self.lib.bpf_object__open_file(str(path).encode(), None)
        if not self._obj:
            raise _failed("open", ctypes.get_errno())
        try:
            flows = self.lib.bpf_object__find_map_by_name(self._obj, b"geneve_flows")
            if not flows or self.lib.bpf_map__set_max_entries(flows, flow_limit) < 0:
                raise FastPathError("refused", "the object has no geneve_flows map")
            code = self.lib.bpf_object__load(self._obj)
            if code < 0:
                raise _failed("load", code)
            self.prog = {name: self._prog_fd(name) for name in ("geneve_in", "geneve_out")}
            self.maps = {name: self._map_fd(name) for name in ("geneve_config", "geneve_flows", "geneve_counts")}
            self.cpus = self.lib.libbpf_num_possible_cpus()
        except BaseException:
            self.close()
            raise

    def _prog_fd(self, name: str) -> int:
        prog = self.lib.bpf_object__find_program_by_name(self._obj, name.encode())
        if not prog:
            raise FastPathError("refused", f"the object has no program {name}")
        return int(self.lib.bpf_program__fd(prog))

    def _map_fd(self, name: str) -> int:
        found = self.lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not found:
            raise FastPathError("refused", f"the object has no map {name}")
        return int(self.lib.bpf_map__fd(found))

    def update(self, map_name: str, key: bytes, value: bytes) -> None:
        key_buf, value_buf = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
        if self.lib.bpf_map_update_elem(self.maps[map_name], key_buf, value_buf, 0) < 0:
            raise _failed(f"update {map_name}", ctypes.get_errno())

    def lookup(self, map_name: str, key: bytes, size: int) -> bytes | None:
        key_buf, value_buf = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(size)
        if self.lib.bpf_map_lookup_elem(self.maps[map_name], key_buf, value_buf) < 0:
            return None
        return value_buf.raw

    def counts(self) -> dict[str, int]:
        """Every counter, summed over the CPUs."""
        found: dict[str, int] = {}
        for slot, name in enumerate(COUNTERS):
            raw = self.lookup("geneve_counts", struct.pack("=I", slot), 8 * self.cpus) or b""
            found[name] = sum(value for (value,) in struct.iter_unpack("=Q", raw))
        return found

    def flows(self, limit: int) -> dict[tuple[int, int, int, int, int], tuple[str, str, bytes]]:
        """The flow table: `packet.flow_key` order (proto, low addr, low port, high addr, high port) ->
        (load balancer node, local address, GENEVE header); at most `limit` entries."""
        found: dict[tuple[int, int, int, int, int], tuple[str, str, bytes]] = {}
        fd, key, after = self.maps["geneve_flows"], None, ctypes.create_string_buffer(_KEY.size)
        while len(found) < limit and self.lib.bpf_map_get_next_key(fd, key, after) == 0:
            key = ctypes.create_string_buffer(after.raw, _KEY.size)
            lo_addr, hi_addr, lo_port, hi_port, proto = _KEY.unpack(after.raw)
            value = self.lookup("geneve_flows", after.raw, _FLOW.size)
            if value is not None:
                gwlb, local, _seen, header = _FLOW.unpack(value)
                found[(proto, lo_addr, lo_port, hi_addr, hi_port)] = (socket.inet_ntoa(gwlb), socket.inet_ntoa(local), header)
        return found

    def flow_count(self, limit: int) -> int:
        """Entries in the flow table (idle ones included until the LRU reuses them), at most `limit`."""
        fd, key, after, count = self.maps["geneve_flows"], None, ctypes.create_string_buffer(_KEY.size), 0
        while count < limit and self.lib.bpf_map_get_next_key(fd, key, after) == 0:
            key = ctypes.create_string_buffer(after.raw, _KEY.size)
            count += 1
        return count

    def close(self) -> None:
        """Close the object and its descriptors (attached programs stay until their filters go)."""
        if self._obj:
            self.lib.bpf_object__close(self._obj)
            self._obj = None


class FastPath:
    """Both programs attached (ingress of the load balancer's interface, egress of the TUN) over one object."""

    def __init__(self, plan: FastPathPlan, *, path: Path = OBJECT) -> None:
        self.plan = plan
        self.path = path
        self.obj: BpfObject | None = None

    def start(self) -> None:
        """Load, configure, attach; FastPathError (nothing left behind) when any step fails."""
        try:
            self.obj = BpfObject(self.path, flow_limit=self.plan.flow_limit)
            with iproute(None) as ipr:
                tun = ipr.link_lookup(ifname=self.plan.tun)
                if not tun:
                    raise FastPathError("attach_failed", f"no device {self.plan.tun}")
                self.obj.update("geneve_config", struct.pack("=I", 0), self.plan.config_bytes())
                remove_filters(self.plan.tun, self.plan.ifindex)
                self._attach(ipr, self.plan.ifindex, INGRESS, "in", self.obj.prog["geneve_in"])
                self._attach(ipr, tun[0], EGRESS, "out", self.obj.prog["geneve_out"])
        except (NetlinkError, OSError) as exc:
            self.stop()
            raise FastPathError("attach_failed", str(exc)) from exc
        except BaseException:
            self.stop()
            raise

    def _attach(self, ipr: object, index: int, parent: int, direction: str, fd: int) -> None:
        try:
            try:
                ipr.tc("add", "clsact", index)  # type: ignore[attr-defined]
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
            ipr.tc("add-filter", "bpf", index, ":1", fd=fd, name=filter_name(self.plan.tun, direction), parent=parent,  # type: ignore[attr-defined]
                   prio=TC_PRIORITY, protocol=ETH_P_ALL, direct_action=True)
        except NetlinkError as exc:
            raise FastPathError("attach_failed", f"tc {direction} on ifindex {index}: {os.strerror(exc.code)}") from exc

    def stop(self) -> None:
        """Detach both filters by name and close the object; safe to call more than once."""
        remove_filters(self.plan.tun, self.plan.ifindex)
        if self.obj is not None:
            self.obj.close()
            self.obj = None

    def counts(self) -> dict[str, int]:
        return self.obj.counts() if self.obj else {}

    def flow_count(self) -> int:
        return self.obj.flow_count(self.plan.flow_limit) if self.obj else 0

    def attached(self) -> bool:
        """Both filters are in place (the health check's question)."""
        with iproute(None) as ipr:
            found = {name for name, _msg in _filters(ipr, self.plan.ifindex, INGRESS)}
            for index in ipr.link_lookup(ifname=self.plan.tun):
                found |= {name for name, _msg in _filters(ipr, index, EGRESS)}
        return {filter_name(self.plan.tun, "in"), filter_name(self.plan.tun, "out")} <= found


def _filters(ipr: object, index: int, parent: int) -> list[tuple[str, object]]:
    try:
        messages = ipr.get_filters(index=index, parent=parent)  # type: ignore[attr-defined]
    except NetlinkError:
        return []  # no clsact on that device
    found = []
    for msg in messages:
        options = msg.get_attr("TCA_OPTIONS")
        name = options.get_attr("TCA_BPF_NAME") if options is not None and msg.get_attr("TCA_KIND") == "bpf" else None
        if name:
            found.append((name, msg))
    return found


def remove_filters(tun: str, ifindex: int | None, *, netns: str | None = None) -> int:
    """Remove this agent's two filters by name, wherever they are (the ingress one on `ifindex`, or on any
    device when None: a restart after SIGKILL knows only the name); how many went. The clsact qdisc stays
    (other programs may hang there); the TUN's goes with the TUN."""
    wanted = {filter_name(tun, "in"), filter_name(tun, "out")}
    removed = 0
    with iproute(netns) as ipr:
        indexes = [ifindex] if ifindex else [link["index"] for link in ipr.get_links()]
        tun_index = ipr.link_lookup(ifname=tun)
        for index in {*indexes, *tun_index}:
            for parent in (INGRESS, EGRESS):
                for name, msg in _filters(ipr, index, parent):
                    if name not in wanted:
                        continue
                    try:
                        ipr.tc("del-filter", "bpf", index, msg["handle"], parent=parent, info=msg["info"])
                        removed += 1
                    except NetlinkError as exc:
                        if exc.code not in (errno.ENOENT, errno.EINVAL):
                            raise
    return removed
