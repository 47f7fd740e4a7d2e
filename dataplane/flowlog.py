"""The JSON-lines flow log: one line per closed flow, written by the agent, read by `transit flows`.

One line is one `FlowEntry` (the schema below). The writer appends and flushes
each line so a reader following the file sees flows as they close; `reopen()`
lets log rotation move the file away. The reader skips lines that are not
valid entries (a torn last line while the agent writes, a foreign line) and
counts them instead of failing, because a flow log is evidence, not config.
No secret ever goes in a line: only addresses, identities and counters.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class FlowEntry(BaseModel):
    """One closed flow as one agent saw it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ts: float = Field(description="Unix time the flow closed.")
    node: str = Field(default="", description="Agent that wrote the line.")
    role: str = Field(default="", description="What the agent did with the flow: ingress, relay or egress.")
    src: str
    sport: int = Field(ge=0, le=65535)
    dst: str
    dport: int = Field(ge=0, le=65535)
    proto: str = "tcp"
    src_identity: str = Field(default="", description="Identity of the node the flow entered the fabric at.")
    dst_identity: str = Field(default="", description="Identity of the node that delivers it.")
    bytes_up: int = Field(default=0, ge=0, description="Bytes from source to destination.")
    bytes_down: int = Field(default=0, ge=0, description="Bytes from destination to source.")
    duration_s: float = Field(default=0.0, ge=0)
    verdict: Literal["permit", "deny", "error"]
    rule: str | None = Field(default=None, description="Deciding filter rule; None for the default verdict.")
    path: str | None = Field(default=None, description="private or public; None when delivered locally.")
    peer: str | None = None
    rtt_ms: float | None = Field(default=None, description="Path RTT when the flow closed.")
    outcome: str = ""
    flow_id: str = ""
    count: int = Field(default=1, ge=1, description="Flows this line stands for: denials of one 5-tuple are aggregated over a short window (see dataplane.observe).")


class FlowLogWriter:
    """Appends one JSON line per closed flow; thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file = self._open()

    def _open(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return open(self.path, "a", encoding="utf-8", buffering=1)

    def write(self, flow: FlowEntry | Mapping[str, Any]) -> None:
        """Validate and append one flow (a FlowEntry or a mapping with its fields)."""
        entry = flow if isinstance(flow, FlowEntry) else FlowEntry.model_validate(dict(flow))
        line = entry.model_dump_json() + "\n"
        with self._lock:
            self._file.write(line)

    def reopen(self) -> None:
        """Start a new file at the same path (after rotation moved the old one)."""
        with self._lock:
            self._file.close()
            self._file = self._open()

    def close(self) -> None:
        """Flush and close."""
        with self._lock:
            self._file.close()


class FlowLogReader:
    """Reads entries from a flow log, skipping and counting lines that are not entries."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.skipped = 0
        self.offset = 0  # where read() stopped: follow(from_offset=reader.offset) misses nothing in between

    def read(self) -> Iterator[FlowEntry]:
        """Every complete entry currently in the file, oldest first."""
        with open(self.path, "rb") as handle:
            while True:
                line = handle.readline()
                if not line.endswith(b"\n"):
                    break  # end of file, or a line still being written: follow() picks it up
                self.offset = handle.tell()
                entry = self._parse(line.decode("utf-8", errors="replace"))
                if entry is not None:
                    yield entry

    def follow(
        self,
        *,
        poll: float = 0.2,
        from_start: bool = True,
        from_offset: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[FlowEntry]:
        """Entries as they are appended; survives truncation and rotation (new inode).

        Starts at the beginning, at the end (`from_start=False`) or at a byte offset.
        """
        handle = open(self.path, encoding="utf-8", errors="replace")
        try:
            if from_offset is not None:
                handle.seek(from_offset)
            elif not from_start:
                handle.seek(0, os.SEEK_END)
            inode = os.fstat(handle.fileno()).st_ino
            partial = ""
            while stop is None or not stop.is_set():
                line = handle.readline()
                if line:
                    partial += line
                    if partial.endswith("\n"):
                        entry = self._parse(partial)
                        partial = ""
                        if entry is not None:
                            yield entry
                    continue
                try:
                    current = os.stat(self.path)
                except FileNotFoundError:
                    time.sleep(poll)
                    continue
                if current.st_ino != inode or current.st_size < handle.tell():
                    handle.close()
                    handle = open(self.path, encoding="utf-8", errors="replace")
                    inode = os.fstat(handle.fileno()).st_ino
                    partial = ""
                    continue
                time.sleep(poll)
        finally:
            handle.close()

    def _parse(self, line: str) -> FlowEntry | None:
        line = line.strip()
        if not line:
            return None
        try:
            return FlowEntry.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError, TypeError):
            self.skipped += 1
            return None
