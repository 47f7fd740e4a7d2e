"""The agents' nftables filter as a segmentation target, evaluated the way the kernel would.

`transit check` must prove what the data plane installs, not the policy it was
compiled from, so this reads the JSON document of `dataplane.filter_table.ruleset`
(the very bytes `nft -j -f` receives): the two verdict maps and the chains their
elements jump to. A lookup finds the map element whose interval key holds the
packet (elements are disjoint), follows its goto and reads that chain's verdict;
no element means the default chain. `Nftables` is one agent's point: it
compiles the rules its scope can see (`segmentation.agent_filters`) into that
document. Never imports Pulumi.
"""
from __future__ import annotations

import socket
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from components.segmentation.agent_filters import scoped_filter
from components.segmentation.intervals import Interval
from components.segmentation.protocol import Context, Decision, Evaluator, Flow
from components.segmentation.resolve import ResolvedRule
from dataplane.filter_model import FilterPolicy, proto_number
from dataplane.filter_table import ruleset

TABLE = "transit_filter"
HOOK = "forward"

_PORT_PROTOS = {6, 17}


Element = tuple[tuple[Interval, ...], str]


class _Index:
    """Map elements cut along the source address into elementary intervals.

    Elements are disjoint boxes but their source ranges overlap, so each
    elementary source interval keeps the elements covering it: a lookup is one
    bisection plus a scan of those few, instead of a scan of the whole map.
    """

    def __init__(self, elements: tuple[Element, ...]) -> None:
        points = sorted({0, *(box[0][0] for box, _ in elements), *(box[0][1] + 1 for box, _ in elements if box[0][1] < 2**32 - 1)})
        self._starts = points
        self._buckets: list[list[Element]] = [[] for _ in points]
        for element in elements:
            low, high = element[0][0]
            for index in range(bisect_right(points, low) - 1, len(points)):
                if points[index] > high:
                    break
                self._buckets[index].append(element)

    def find(self, key: tuple[int, ...]) -> str | None:
        bucket = self._buckets[bisect_right(self._starts, key[0]) - 1]
        return next((target for box, target in bucket if all(lo <= k <= hi for k, (lo, hi) in zip(key, box))), None)


@dataclass(frozen=True)
class NftTable:
    """The decision content of one filter table: map elements and chain verdicts."""

    ports: tuple[Element, ...]
    noports: tuple[Element, ...]
    verdicts: dict[str, str]
    counters: dict[str, str]
    default_chain: str
    _indexes: dict[str, _Index] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._indexes["ports"] = _Index(self.ports)
        self._indexes["noports"] = _Index(self.noports)

    def decide(self, src_ip: str, dst_ip: str, proto: str | int, port: int | None) -> tuple[str, str]:
        """(permit|deny, counter name of the deciding chain) for one new connection."""
        number = proto_number(proto)
        src, dst = int(IPv4Address(src_ip)), int(IPv4Address(dst_ip))
        if number in _PORT_PROTOS:
            if port is None:
                raise ValueError("tcp and udp need a destination port")
            chain = self._indexes["ports"].find((src, dst, number, port))
        else:
            chain = self._indexes["noports"].find((src, dst, number))
        chain = chain or self.default_chain
        return self.verdicts[chain], self.counters[chain]


def _interval(value: Any, kind: str) -> Interval:
    """One concat component: a literal, a prefix or a range."""
    if isinstance(value, dict) and "prefix" in value:
        size = 1 << (32 - int(value["prefix"]["len"]))
        low = _address(value["prefix"]["addr"]) & ~(size - 1)
        return low, low + size - 1
    if isinstance(value, dict) and "range" in value:
        low, high = value["range"]
        return (_scalar(low, kind), _scalar(high, kind))
    scalar = _scalar(value, kind)
    return scalar, scalar


def _address(text: str) -> int:
    """A dotted quad as an integer (inet_aton is strict and an order faster than ipaddress)."""
    return int.from_bytes(socket.inet_aton(text), "big") if text.count(".") == 3 else int(IPv4Address(text))


def _scalar(value: Any, kind: str) -> int:
    if kind == "ipv4_addr":
        return _address(value)
    if kind == "inet_proto" and isinstance(value, str):
        return proto_number(value)
    return int(value)


def load_table(document: dict[str, Any]) -> NftTable:
    """Read the maps and chains of a `ruleset()` document."""
    maps: dict[str, list[str]] = {}
    elements: dict[str, list[Element]] = {}
    verdicts: dict[str, str] = {}
    counters: dict[str, str] = {}
    base_default: str | None = None
    for command in document["nftables"]:
        body = command.get("add", {})
        if "map" in body:
            maps[body["map"]["name"]] = body["map"]["type"]
        elif "element" in body:
            types = maps[body["element"]["name"]]
            for key, verdict in body["element"]["elem"]:
                box = tuple(_interval(part, kind) for part, kind in zip(key["concat"], types))
                elements.setdefault(body["element"]["name"], []).append((box, verdict["goto"]["target"]))
        elif "rule" in body:
            chain = body["rule"]["chain"]
            for expr in body["rule"]["expr"]:
                if "counter" in expr and isinstance(expr["counter"], str):
                    counters[chain] = expr["counter"]
                if "accept" in expr and chain not in verdicts and "match" not in body["rule"]["expr"][0]:
                    verdicts[chain] = "permit"
                if "reject" in expr or "drop" in expr:
                    verdicts.setdefault(chain, "deny")
                if "goto" in expr and len(body["rule"]["expr"]) == 1:
                    base_default = expr["goto"]["target"]
    if base_default is None:
        raise ValueError("the document has no final goto to a default chain")
    port_map, noport_map = (name for name, kind in maps.items() if len(kind) == 4), (name for name, kind in maps.items() if len(kind) == 3)
    return NftTable(
        ports=tuple(elements.get(next(port_map, ""), [])),
        noports=tuple(elements.get(next(noport_map, ""), [])),
        verdicts=verdicts,
        counters=counters,
        default_chain=base_default,
    )


@dataclass(frozen=True)
class Nftables:
    """One agent's filter table: it sees the flows from or to its scope."""

    name: str
    scope: tuple[IPv4Network, ...]

    def compile(self, rules: Sequence[ResolvedRule], context: Context) -> dict[str, Any]:
        """The document of the rules this agent's scope can see."""
        return self.document(scoped_filter(context.spec, list(self.scope), rules))

    @staticmethod
    def document(policy: FilterPolicy) -> dict[str, Any]:
        """The nftables JSON document an agent installs for `policy`."""
        return ruleset(policy, table=TABLE, hook=HOOK)

    def evaluator(self, native: dict[str, Any]) -> Evaluator:
        return self.table_evaluator(load_table(native))

    def table_evaluator(self, table: NftTable) -> Evaluator:
        """Judge flows on an already loaded table."""
        scope = self.scope

        def decide(flow: Flow) -> Decision | None:
            src, dst = IPv4Address(flow.src), IPv4Address(flow.dst)
            if not any(src in net or dst in net for net in scope):
                return None
            return table.decide(flow.src, flow.dst, flow.number, flow.port)

        return decide
