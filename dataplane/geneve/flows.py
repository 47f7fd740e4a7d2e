"""The GENEVE flow table: for each inner flow, where the load balancer sent it from and with which options.

A target must return every packet of a flow to the load balancer node that
delivered it, wrapped in the same GENEVE header and options (endpoint id,
attachment id, flow cookie). The table maps the direction-free flow key
(`packet.flow_key`) to that node's address and the header bytes, refreshed
by every packet the load balancer delivers and aged by both directions.

Bounded: at most `limit` flows. When full, expired flows are swept first;
if none has expired the new flow is refused (counted by the caller), so a
flood of new flows can never evict the flows already carried. Entries idle
longer than `idle` seconds go (the GWLB forgets a TCP flow after 350 s).
"""
from __future__ import annotations

Key = tuple[int, int, int, int, int]


class FlowEntry:
    """One flow: the load balancer node's address, the header to return with, when it was last seen."""

    __slots__ = ("gwlb", "header", "seen")

    def __init__(self, gwlb: str, header: bytes, seen: float) -> None:
        self.gwlb = gwlb
        self.header = header
        self.seen = seen


class FlowTable:
    """Key -> FlowEntry, bounded in size and aged; used by the worker's one thread."""

    def __init__(self, *, limit: int, idle: float) -> None:
        self.limit = limit
        self.idle = idle
        self._flows: dict[Key, FlowEntry] = {}

    def __len__(self) -> int:
        return len(self._flows)

    def learn(self, key: Key, gwlb: str, header: bytes | memoryview, now: float) -> bool:
        """Record or refresh a flow the load balancer delivered; False when the table is full (refused)."""
        entry = self._flows.get(key)
        if entry is not None:
            entry.seen = now
            if entry.gwlb != gwlb or entry.header != header:  # the load balancer moved the flow (new node or cookie)
                entry.gwlb, entry.header = gwlb, bytes(header)
            return True
        if len(self._flows) >= self.limit and not self._sweep(now):
            return False
        self._flows[key] = FlowEntry(gwlb, bytes(header), now)
        return True

    def lookup(self, key: Key, now: float) -> FlowEntry | None:
        """The flow a reply belongs to (refreshing it), or None if the load balancer never delivered it."""
        entry = self._flows.get(key)
        if entry is not None:
            entry.seen = now
        return entry

    def expire(self, now: float) -> int:
        """Remove flows idle longer than `idle`; how many went."""
        return self._sweep(now)

    def _sweep(self, now: float) -> int:
        deadline = now - self.idle
        stale = [key for key, entry in self._flows.items() if entry.seen < deadline]
        for key in stale:
            del self._flows[key]
        return len(stale)
