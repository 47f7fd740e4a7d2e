"""Port ranges as the clouds write them ("22", "8000-8080"), shared by compilers, evaluators and rules."""
from __future__ import annotations

from collections.abc import Iterable

from components.segmentation.intervals import ALL_PORTS, Interval

ANY_PORT = "*"
"""Azure's word for every port; GCP and AWS leave the list empty instead."""


def port_items(ranges: Iterable[Interval]) -> list[str]:
    """Inclusive ranges as items: a single port alone, a range as `lo-hi`."""
    return [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges]


def port_range(item: str | int) -> Interval:
    """One item (`22`, `"8000-8080"`) as an inclusive range; `*` is every port."""
    text = str(item).strip()
    if text == ANY_PORT:
        return ALL_PORTS
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def covers_port(ranges: Iterable[Interval], port: int | None) -> bool:
    """True when `port` is in one of `ranges`; no ranges at all means every port (a portless flow then matches too)."""
    ranges = tuple(ranges)
    if not ranges:
        return True
    return port is not None and any(lo <= port <= hi for lo, hi in ranges)
