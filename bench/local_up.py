"""Time the local environment: full up, no-change up and destroy of the seed 000 + 004 fabric.

Run as `python -m bench.local_up` (root; needs the Pulumi CLI in .tools/bin).
Uses a scratch stack of its own, so it never touches the `local` stack, and
writes bench/results/local-up.json. Targets: up < 60 s, no-change up < 15 s.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

from components.local.scratch_stack import REPO, ScratchStack, offline_env

FABRIC = REPO / "stacks" / "fabrics" / "architecture_example.yaml"
RESULT = REPO / "bench" / "results" / "local-up.json"
README = REPO / "bench" / "README.md"
START, END = "<!-- local-up:start -->", "<!-- local-up:end -->"
TARGETS = {"up_seconds": 60.0, "noop_up_seconds": 15.0}


def _timed(stack: ScratchStack, *args: str) -> float:
    start = time.monotonic()
    stack.pulumi(*args)
    return round(time.monotonic() - start, 2)


def readme_table(result: dict) -> str:
    """The README section body for one run (between the local-up markers)."""
    rows = [("full `up`", "up_seconds", "< 60 s"), ("no-change `up`", "noop_up_seconds", "< 15 s"),
            ("`destroy`", "destroy_seconds", "")]
    lines = [START, "| step | seconds | target |", "|---|---|---|"]
    lines += [f"| {label} | {result[key]} | {target} |" for label, key, target in rows]
    lines += ["", f"{result['resources']} resources (`{result['fabric']}`), run {result['measured_at']} on "
              f"{result['machine']['cpus']} CPUs, kernel {result['machine']['kernel']}.", END]
    return "\n".join(lines)


def update_readme(result: dict) -> None:
    """Replace this benchmark's section of the shared README, or append it the first time."""
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    body = readme_table(result)
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + body + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + (
            "\n\n## Local environment (`bench/local_up.py`)\n\n"
            "Reproduce: `.venv/bin/python -m bench.local_up   # or: make bench` (root). A scratch stack of its own\n"
            "runs `pulumi up`, a second `up --expect-no-changes` and `destroy` with the real CLI.\n\n" + body + "\n")
    README.write_text(text)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-local-up-") as tmp:
        root = Path(tmp)
        stack = ScratchStack(root / "project", offline_env(root / "state", root / "home"), name="bench")
        stack.create(FABRIC)
        try:
            up = _timed(stack, "up", "--yes", "--skip-preview")
            resources = len(json.loads(stack.pulumi("stack", "export").stdout)["deployment"]["resources"])
            noop = _timed(stack, "up", "--yes", "--skip-preview", "--expect-no-changes")
            destroy = _timed(stack, "destroy", "--yes", "--skip-preview")
        finally:
            stack.remove()
    result = {
        "fabric": str(FABRIC.relative_to(REPO)),
        "resources": resources,
        "up_seconds": up,
        "noop_up_seconds": noop,
        "destroy_seconds": destroy,
        "targets": TARGETS,
        "meets_targets": up < TARGETS["up_seconds"] and noop < TARGETS["noop_up_seconds"],
        "machine": {"cpus": len(os.sched_getaffinity(0)), "kernel": platform.release()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    update_readme(result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
