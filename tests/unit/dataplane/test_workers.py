"""Workers: tasks run, idle threads are reused, a failing task does not kill its worker."""
from __future__ import annotations

import threading
import time

from dataplane.workers import Workers


def test_tasks_run_and_idle_workers_are_reused() -> None:
    workers = Workers("t", keep_idle=2)
    seen: list[int] = []
    done = threading.Event()

    def task(ident: list[int]) -> None:
        ident.append(threading.get_ident())
        done.set()

    workers.submit(task, seen)
    assert done.wait(2)
    deadline = time.monotonic() + 2
    while workers.idle() != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    done.clear()
    workers.submit(task, seen)
    assert done.wait(2)
    assert seen[0] == seen[1]


def test_concurrency_is_not_limited_and_failures_are_contained() -> None:
    workers = Workers("t", keep_idle=1)
    gate = threading.Event()
    started = threading.Semaphore(0)

    def blocker() -> None:
        started.release()
        gate.wait(5)

    for _ in range(5):
        workers.submit(blocker)
    for _ in range(5):
        assert started.acquire(timeout=2)  # all five run at once
    gate.set()
    workers.submit(lambda: 1 / 0)
    ran = threading.Event()
    time.sleep(0.1)
    workers.submit(ran.set)
    assert ran.wait(2)
