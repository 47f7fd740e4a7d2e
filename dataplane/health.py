"""/healthz as a small set of named checks, so a load balancer stops sending to an agent that cannot forward.

Each check answers (ok, detail) when /healthz is read; any failing (or
raising) check makes the document `status: fail` and the answer 503. The agent
registers its own (listeners alive, filter table present, a usable path to
each peer, kernel state intact); another subsystem adds its own with
`Health.add(name, check)` (a GENEVE listener, for one), and nothing else
changes.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[], tuple[bool, str]]


class Health:
    """Named checks plus an informational document; `report()` is what /healthz serves."""

    def __init__(self, info: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self._info = info
        self._lock = threading.Lock()
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        """Register (or replace) the check called `name`."""
        with self._lock:
            self._checks[name] = check

    def remove(self, name: str) -> None:
        """Forget a check (its subsystem stopped on purpose)."""
        with self._lock:
            self._checks.pop(name, None)

    def report(self) -> dict[str, Any]:
        """{..info, status: ok|fail, checks: {name: {ok, detail}}}; a check that raises fails with its error."""
        with self._lock:
            checks = dict(self._checks)
        results: dict[str, dict[str, Any]] = {}
        for name, check in sorted(checks.items()):
            try:
                ok, detail = check()
            except Exception as exc:
                ok, detail = False, repr(exc)
            results[name] = {"ok": bool(ok), "detail": detail}
        document = dict(self._info()) if self._info else {}
        document["status"] = "ok" if all(result["ok"] for result in results.values()) else "fail"
        document["checks"] = results
        return document
