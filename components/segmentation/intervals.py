"""Exact set algebra over flow space: addresses x addresses x (protocol, port).

Security groups only allow; the segmentation policy is ordered with denies. To
compile one into the other exactly we subtract earlier denies from later
permits, which needs sets that can be intersected and subtracted without ever
enumerating addresses. Addresses and ports are kept as sorted, disjoint,
inclusive integer intervals, so a /8 costs the same as a /32.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, summarize_address_range
from typing import Iterable

Interval = tuple[int, int]

PROTOCOLS: tuple[str, ...] = ("tcp", "udp", "icmp", "other")
"""The protocol dimension: tcp and udp carry ports; icmp and every other IP protocol do not."""

PORTED: tuple[str, ...] = ("tcp", "udp")
ALL_PORTS: Interval = (0, 65535)
_ADDR_MAX = 2**32 - 1


def _normalise(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """Sort and merge touching or overlapping intervals."""
    out: list[list[int]] = []
    for low, high in sorted(intervals):
        if out and low <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], high)
        else:
            out.append([low, high])
    return tuple((low, high) for low, high in out)


def _intersect(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        low = max(a[i][0], b[j][0])
        high = min(a[i][1], b[j][1])
        if low <= high:
            out.append((low, high))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _subtract(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    j = 0
    for low, high in a:
        cursor = low
        while j < len(b) and b[j][1] < cursor:
            j += 1
        k = j
        while k < len(b) and b[k][0] <= high:
            if b[k][0] > cursor:
                out.append((cursor, b[k][0] - 1))
            cursor = max(cursor, b[k][1] + 1)
            k += 1
        if cursor <= high:
            out.append((cursor, high))
    return tuple(out)


def _contains(intervals: tuple[Interval, ...], value: int) -> bool:
    return any(low <= value <= high for low, high in intervals)


@dataclass(frozen=True)
class IntervalSet:
    """A set of integers as sorted disjoint inclusive intervals."""

    intervals: tuple[Interval, ...] = ()

    @classmethod
    def of(cls, intervals: Iterable[Interval]) -> IntervalSet:
        return cls(_normalise(intervals))

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def __and__(self, other: IntervalSet) -> IntervalSet:
        return IntervalSet(_intersect(self.intervals, other.intervals))

    def __sub__(self, other: IntervalSet) -> IntervalSet:
        return IntervalSet(_subtract(self.intervals, other.intervals))

    def __or__(self, other: IntervalSet) -> IntervalSet:
        return IntervalSet.of(self.intervals + other.intervals)

    def __contains__(self, value: int) -> bool:
        return _contains(self.intervals, value)

    def issubset(self, other: IntervalSet) -> bool:
        return not (self - other)


class AddressSet(IntervalSet):
    """IPv4 addresses; converts to and from the fewest CIDRs that cover exactly the set."""

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[IPv4Network | str]) -> AddressSet:
        nets = [IPv4Network(c) for c in cidrs]
        return cls(_normalise((int(n.network_address), int(n.broadcast_address)) for n in nets))

    @classmethod
    def everything(cls) -> AddressSet:
        return cls(((0, _ADDR_MAX),))

    def __and__(self, other: IntervalSet) -> AddressSet:
        return AddressSet(_intersect(self.intervals, other.intervals))

    def __sub__(self, other: IntervalSet) -> AddressSet:
        return AddressSet(_subtract(self.intervals, other.intervals))

    def __or__(self, other: IntervalSet) -> AddressSet:
        return AddressSet(_normalise(self.intervals + other.intervals))

    def cidrs(self) -> tuple[IPv4Network, ...]:
        """The exact set as the smallest list of CIDR blocks."""
        out: list[IPv4Network] = []
        for low, high in self.intervals:
            out.extend(summarize_address_range(IPv4Address(low), IPv4Address(high)))
        return tuple(out)

    def has(self, address: IPv4Address | str) -> bool:
        return int(IPv4Address(address)) in self


@dataclass(frozen=True)
class ServiceSet:
    """Protocols and destination ports: tcp/udp carry port sets, icmp/other are all or nothing."""

    tcp: IntervalSet = IntervalSet()
    udp: IntervalSet = IntervalSet()
    icmp: bool = False
    other: bool = False

    @classmethod
    def everything(cls) -> ServiceSet:
        full = IntervalSet((ALL_PORTS,))
        return cls(tcp=full, udp=full, icmp=True, other=True)

    @classmethod
    def for_rule(cls, proto: str, ports: Iterable[Interval]) -> ServiceSet:
        """The services one rule names; empty `ports` means every port."""
        port_set = IntervalSet.of(ports) if ports else IntervalSet((ALL_PORTS,))
        if proto == "any":
            if ports:
                raise ValueError("ports need proto tcp or udp")
            return cls.everything()
        if proto in PORTED:
            return cls(**{proto: port_set})
        if proto == "icmp":
            if ports:
                raise ValueError("icmp has no ports")
            return cls(icmp=True)
        raise ValueError(f"unknown protocol {proto!r}")

    def __bool__(self) -> bool:
        return bool(self.tcp) or bool(self.udp) or self.icmp or self.other

    def __and__(self, other: ServiceSet) -> ServiceSet:
        return ServiceSet(self.tcp & other.tcp, self.udp & other.udp, self.icmp and other.icmp, self.other and other.other)

    def __sub__(self, other: ServiceSet) -> ServiceSet:
        return ServiceSet(
            self.tcp - other.tcp, self.udp - other.udp, self.icmp and not other.icmp, self.other and not other.other
        )

    def __or__(self, other: ServiceSet) -> ServiceSet:
        return ServiceSet(self.tcp | other.tcp, self.udp | other.udp, self.icmp or other.icmp, self.other or other.other)

    def is_everything(self) -> bool:
        return self == ServiceSet.everything()

    def allows(self, proto: str, port: int | None) -> bool:
        """Does this set hold a flow of `proto` (tcp/udp/icmp/other) to `port`?"""
        if proto in PORTED:
            return port is not None and port in getattr(self, proto)
        return bool(getattr(self, proto))


@dataclass(frozen=True)
class Box:
    """A product set: sources x destinations x services."""

    src: AddressSet
    dst: AddressSet
    svc: ServiceSet

    def __bool__(self) -> bool:
        return bool(self.src) and bool(self.dst) and bool(self.svc)

    def minus(self, other: Box) -> list[Box]:
        """self - other as at most three disjoint boxes (empty pieces dropped)."""
        src_in = self.src & other.src
        dst_in = self.dst & other.dst
        svc_in = self.svc & other.svc
        if not (src_in and dst_in and svc_in):
            return [self]
        pieces = [
            Box(self.src - other.src, self.dst, self.svc),
            Box(src_in, self.dst - other.dst, self.svc),
            Box(src_in, dst_in, self.svc - other.svc),
        ]
        return [piece for piece in pieces if piece]

    def holds(self, src: IPv4Address | str, dst: IPv4Address | str, proto: str, port: int | None) -> bool:
        return self.src.has(src) and self.dst.has(dst) and self.svc.allows(proto, port)
