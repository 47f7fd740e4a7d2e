"""Run the iproute2, tc and FRR commands that the dynamic providers need.

One place for subprocess calls, so every failure carries the command line and
its stderr (a failed `pulumi up` then says exactly which command broke).
"""
from __future__ import annotations

import subprocess
from collections.abc import Sequence


class CommandError(RuntimeError):
    """A command exited non-zero; the message holds argv and stderr."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run argv without a shell and return the completed process."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise CommandError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def ns_run(ns: str, argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run argv inside network namespace `ns`."""
    return run(["ip", "netns", "exec", ns, *argv], check=check, timeout=timeout)


def ip(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip -n ns ...`."""
    return run(["ip", "-n", ns, *args], check=check)


def netns_exists(ns: str) -> bool:
    """True when /run/netns/<ns> is a live namespace."""
    return run(["ip", "netns", "exec", ns, "true"], check=False).returncode == 0


def link_exists(ns: str, ifname: str) -> bool:
    """True when interface `ifname` exists in namespace `ns`."""
    return ip(ns, "link", "show", "dev", ifname, check=False).returncode == 0
