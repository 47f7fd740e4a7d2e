"""A pool of reusable threads: a new stream starts on a thread that already exists.

Starting a Python thread blocks the starter until the new thread runs, which
puts a context switch and a thread creation on every new stream's critical
path (time to first byte). Workers that finish go back to waiting, up to
`keep_idle` of them; when none is idle a new one is made, so the pool never
limits concurrency (a stream holds its worker while it is active; quiet
streams park and give theirs back).
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from dataplane.logfmt import event

log = logging.getLogger("dataplane.workers")

Task = tuple[Callable[..., None], tuple[Any, ...]]


class Workers:
    """Run callables on pooled threads; exceptions are logged, never raised to the submitter."""

    def __init__(self, name: str, *, keep_idle: int = 16) -> None:
        self.name = name
        self.keep_idle = keep_idle
        self._queue: queue.SimpleQueue[Task] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._count = 0

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run fn(*args) on an idle worker, or on a new one if none is idle.

        Raises RuntimeError when the system refuses a new thread (nothing was submitted).
        """
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                self._queue.put((fn, args))
                return
            self._count += 1
        try:
            threading.Thread(target=self._work, args=((fn, args),), name=f"{self.name}-worker", daemon=True).start()
        except BaseException:  # RuntimeError: can't start new thread; the caller decides what to refuse
            with self._lock:
                self._count -= 1
            raise

    def idle(self) -> int:
        """Workers waiting for a task."""
        with self._lock:
            return self._idle

    def _work(self, task: Task) -> None:
        while True:
            fn, args = task
            try:
                fn(*args)
            except Exception as exc:
                event(log, "worker.task_failed", pool=self.name, error=repr(exc), level=logging.ERROR)
            with self._lock:
                if self._idle >= self.keep_idle:
                    self._count -= 1
                    return
                self._idle += 1
            task = self._queue.get()
