"""Compile an ordered FilterPolicy into disjoint boxes whose single lookup gives the first match.

nftables interval maps (pipapo) find *an* element containing a key, not the
first one in any order we choose, and refuse overlapping elements. So order is
resolved here, at compile time: the header space is cut into disjoint boxes,
each labelled with the first rule (in policy order) that covers it. One lookup
in the resulting map is then the same as the ordered scan, whatever the number
of rules.

The cut is a decision tree over the dimensions (src, dst, proto[, dport]): at
each node the boxes still relevant to the current region are swept into
elementary intervals along a dimension where the first (deciding) box has an
edge; a region whose first relevant box covers it whole becomes a leaf at once,
and boxes after such a box are dropped because they can never decide.
Identical sub-problems are built once. The leaves are then flattened into
boxes and touching boxes of one rule joined again, which gives about one map
element per rule for policies of specific rules; a broad rule after many
specific ones (a final "permit 10/8") costs a few elements per rule it
overlaps, because its remainder really has that many corners.

The same tree answers `lookup()` in user space with one bisection per level,
so the agent's per-stream check costs the same with 10 or 10,000 rules.

Two trees are built per policy: one for tcp/udp keyed with the destination port,
one for every other protocol keyed without it (an ICMP header has no port).
"""
from __future__ import annotations

import gc
import threading
import weakref
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from dataplane.filter_model import PROTO_NUMBERS, FilterPolicy, FilterRule, proto_number

Interval = tuple[int, int]
Box = tuple[Interval, ...]

ADDR_DOMAIN: Interval = (0, 2**32 - 1)
PROTO_DOMAIN: Interval = (0, 255)
PORT_DOMAIN: Interval = (0, 65535)
PORTS_DOMAIN: Box = (ADDR_DOMAIN, ADDR_DOMAIN, PROTO_DOMAIN, PORT_DOMAIN)
NOPORTS_DOMAIN: Box = (ADDR_DOMAIN, ADDR_DOMAIN, PROTO_DOMAIN)
PORT_PROTOS = frozenset({PROTO_NUMBERS["tcp"], PROTO_NUMBERS["udp"]})

# A leaf is the index of the deciding rule, or NO_MATCH for the default verdict.
NO_MATCH = -1

# Beyond this many disjoint boxes a policy is refused instead of compiled.
MAX_ELEMENTS = 500_000


class PolicyTooComplexError(ValueError):
    """The policy's overlaps would need more map elements than MAX_ELEMENTS."""


@dataclass(frozen=True)
class Node:
    """One cut along dimension `dim`: `starts[i]` opens the interval whose subtree is `children[i]`."""

    dim: int
    starts: tuple[int, ...]
    children: tuple[Node | int, ...]


@dataclass(frozen=True)
class CompiledPolicy:
    """The disjoint-box form of a policy: one tree for tcp/udp, one for the rest."""

    policy: FilterPolicy
    ports: Node | int
    noports: Node | int

    def lookup(self, src_ip: str | IPv4Address, dst_ip: str | IPv4Address, proto: str | int, port: int | None) -> int:
        """Index of the first matching rule, or NO_MATCH; one bisection per dimension."""
        number = proto_number(proto)
        src, dst = int(IPv4Address(src_ip)), int(IPv4Address(dst_ip))
        if number in PORT_PROTOS:
            if port is None:
                raise ValueError("tcp and udp lookups need a destination port")
            return _walk(self.ports, (src, dst, number, port))
        return _walk(self.noports, (src, dst, number))

    def port_elements(self) -> list[tuple[Box, int]]:
        """Disjoint (box, rule index) pairs of the tcp/udp map."""
        with gc_paused():
            return _merge(_flatten(self.ports, PORTS_DOMAIN))

    def noport_elements(self) -> list[tuple[Box, int]]:
        """Disjoint (box, rule index) pairs of the other-protocols map."""
        with gc_paused():
            return _merge(_flatten(self.noports, NOPORTS_DOMAIN))


# id(policy) -> (weak reference to it, ports tree, noports tree); no strong reference, so no leak.
_CACHE: dict[int, tuple[weakref.ref[FilterPolicy], Node | int, Node | int]] = {}
_CACHE_LOCK = threading.Lock()


def compiled_for(policy: FilterPolicy) -> CompiledPolicy:
    """The compiled form of this policy object, built on first use and kept while the object lives.

    Keyed by identity (a policy is frozen, and pydantic equality would also
    compare cache state, so nothing is stored on the model itself).
    """
    key = id(policy)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None and cached[0]() is policy:
            return CompiledPolicy(policy=policy, ports=cached[1], noports=cached[2])
        compiled = compile_policy(policy)
        _CACHE[key] = (weakref.ref(policy), compiled.ports, compiled.noports)
        weakref.finalize(policy, _CACHE.pop, key, None)
        return compiled


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects that all stay alive.

    Compiling 10,000 rules allocates a few hundred thousand tuples and dicts;
    the collector would rescan them again and again for no garbage, which
    doubles the compile time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def compile_policy(policy: FilterPolicy) -> CompiledPolicy:
    """Build both trees; raise PolicyTooComplexError when the maps would be too large."""
    with gc_paused():
        return _compile(policy)


def _compile(policy: FilterPolicy) -> CompiledPolicy:
    port_entries: list[tuple[int, Box]] = []
    noport_entries: list[tuple[int, Box]] = []
    for index, rule in enumerate(policy.rules):
        for box in _rule_boxes(rule, with_ports=True):
            port_entries.append((index, box))
        for box in _rule_boxes(rule, with_ports=False):
            noport_entries.append((index, box))
    compiled = CompiledPolicy(
        policy=policy,
        ports=_Builder(PORTS_DOMAIN).build(port_entries, 0),
        noports=_Builder(NOPORTS_DOMAIN).build(noport_entries, 0),
    )
    for tree in (compiled.ports, compiled.noports):
        count = _count(tree, {})
        if count > MAX_ELEMENTS:
            raise PolicyTooComplexError(f"policy needs {count} disjoint map elements (limit {MAX_ELEMENTS}); reduce overlapping rules")
    return compiled


def _rule_boxes(rule: FilterRule, *, with_ports: bool) -> list[Box]:
    """The rule as boxes in one tree's space (empty when it cannot match there)."""
    if with_ports:
        if rule.proto not in ("tcp", "udp", "any"):
            return []
        protos = [PROTO_DOMAIN] if rule.proto == "any" else [(PROTO_NUMBERS[rule.proto],) * 2]
        ports = list(rule.ports) or [PORT_DOMAIN]
    else:
        if rule.proto in ("tcp", "udp"):
            return []
        protos = [PROTO_DOMAIN] if rule.proto == "any" else [(PROTO_NUMBERS[rule.proto],) * 2]
        ports = []
    srcs = [_span(net) for net in rule.src] or [ADDR_DOMAIN]
    dsts = [_span(net) for net in rule.dst] or [ADDR_DOMAIN]
    boxes: list[Box] = []
    for src in srcs:
        for dst in dsts:
            for proto in protos:
                if with_ports:
                    boxes.extend((src, dst, proto, port) for port in ports)
                else:
                    boxes.append((src, dst, proto))
    return boxes


def _span(network: IPv4Network) -> Interval:
    low = int(network.network_address)
    return low, low + (1 << (32 - network.prefixlen)) - 1


class _Builder:
    """Builds one decision tree, sharing identical sub-problems.

    Invariant: every entry handed to `build` covers the current region in each
    dimension already cut (`cut` is a bit mask), and the region is the whole
    domain in every dimension not cut yet. So a sub-problem depends only on
    (`cut`, entries), which is the memo key.
    """

    def __init__(self, domain: Box) -> None:
        self._domain = domain
        self._memo: dict[tuple[int, tuple[tuple[int, int], ...]], Node | int] = {}

    def build(self, entries: list[tuple[int, Box]], cut: int) -> Node | int:
        """Tree for `entries` over the dimensions not in `cut`."""
        domain = self._domain
        dims = [k for k in range(len(domain)) if not cut >> k & 1]
        for position, (index, box) in enumerate(entries):
            if all(box[k] == domain[k] for k in dims):
                if position == 0:
                    return index
                entries = entries[: position + 1]
                break
        if not entries:
            return NO_MATCH
        # Cut first where the deciding (first) box has edges: it then becomes a
        # leaf as soon as possible instead of being split by every later rule.
        first = entries[0][1]
        dim = next(k for k in dims if first[k] != domain[k])
        low, high = domain[dim]
        opens: dict[int, list[int]] = {}
        closes: dict[int, list[int]] = {}
        for position, (_, box) in enumerate(entries):
            opens.setdefault(box[dim][0], []).append(position)
            if box[dim][1] < high:
                closes.setdefault(box[dim][1] + 1, []).append(position)
        points = sorted({low, *opens, *closes})
        active: set[int] = set()
        starts: list[int] = []
        children: list[Node | int] = []
        keys: list[tuple[int, ...]] = []
        child_cut = cut | 1 << dim
        for point in points:
            active.difference_update(closes.get(point, ()))
            active.update(opens.get(point, ()))
            key = tuple(sorted(active))
            if keys and keys[-1] == key:
                continue
            keys.append(key)
            starts.append(point)
            children.append(self._child(entries, key, child_cut))
        if len(children) == 1:
            return children[0]
        return Node(dim, tuple(starts), tuple(children))

    def _child(self, entries: list[tuple[int, Box]], positions: tuple[int, ...], cut: int) -> Node | int:
        """Subtree for the entries at `positions`, built once per distinct entry set."""
        if not positions:
            return NO_MATCH
        chosen = [entries[p] for p in positions]
        memo_key = (cut, tuple((index, id(box)) for index, box in chosen))
        if memo_key not in self._memo:
            self._memo[memo_key] = self.build(chosen, cut)
        return self._memo[memo_key]


def _walk(tree: Node | int, key: tuple[int, ...]) -> int:
    """Follow the tree one dimension at a time down to a leaf."""
    while isinstance(tree, Node):
        tree = tree.children[bisect_right(tree.starts, key[tree.dim]) - 1]
    return tree


def _count(tree: Node | int, memo: dict[int, int]) -> int:
    """Number of matching leaf boxes the tree flattens to (shared subtrees counted each time)."""
    if not isinstance(tree, Node):
        return 0 if tree == NO_MATCH else 1
    if id(tree) not in memo:
        memo[id(tree)] = sum(_count(child, memo) for child in tree.children)
    return memo[id(tree)]


def _flatten(tree: Node | int, domain: Box) -> list[tuple[Box, int]]:
    """Disjoint (box, rule index) pairs covering every region a rule decides."""
    out: list[tuple[Box, int]] = []

    def visit(node: Node | int, box: Box) -> None:
        if not isinstance(node, Node):
            if node != NO_MATCH:
                out.append((box, node))
            return
        dim = node.dim
        ends = [*node.starts[1:], domain[dim][1] + 1]
        for start, end, child in zip(node.starts, ends, node.children):
            visit(child, (*box[:dim], (start, end - 1), *box[dim + 1:]))

    visit(tree, domain)
    return out


def _merge(elements: list[tuple[Box, int]]) -> list[tuple[Box, int]]:
    """Join boxes of the same rule that touch along one dimension and agree on the others.

    The tree cuts a broad early rule wherever a later rule needs a cut; joining
    the pieces back keeps the kernel maps near one element per rule for the
    usual policy shapes. Joined boxes stay disjoint because they are unions of
    disjoint boxes that all belong to one rule.
    """
    if not elements:
        return elements
    # One pass over the dimensions, last to first, is all the usual policy
    # shapes need; a missed join costs one more map element, never correctness.
    for dim in reversed(range(len(elements[0][0]))):
        groups: dict[tuple[int, Box, Box], list[Interval]] = {}
        for box, index in elements:
            groups.setdefault((index, box[:dim], box[dim + 1:]), []).append(box[dim])
        merged: list[tuple[Box, int]] = []
        for (index, before, after), intervals in groups.items():
            intervals.sort()
            low, high = intervals[0]
            for next_low, next_high in intervals[1:]:
                if next_low == high + 1:
                    high = next_high
                else:
                    merged.append(((*before, (low, high), *after), index))
                    low, high = next_low, next_high
            merged.append(((*before, (low, high), *after), index))
        elements = merged
    return elements
