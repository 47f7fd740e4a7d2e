"""The kernel settings the agent needs, in one place, applied at start and restored at stop.

Each entry says why. All of them are per network namespace, so an agent in a
namespace changes only its namespace.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

# name -> (value, why)
REQUIRED: dict[str, tuple[str, str]] = {
    "net.ipv4.conf.all.rp_filter": ("2", "loose reverse-path check: TPROXY'd packets and transparently delivered replies are not on the strict reverse path during failover"),
    "net.ipv4.conf.default.rp_filter": ("2", "same for interfaces created later"),
    "net.ipv4.tcp_rmem": ("4096 131072 16777216", "large receive windows for multi-gigabit single flows"),
    "net.ipv4.tcp_wmem": ("4096 65536 16777216", "large send buffers for multi-gigabit single flows"),
    "net.ipv4.tcp_slow_start_after_idle": ("0", "warm tunnels keep their congestion window, so the first bytes of a new stream are not throttled"),
    "net.core.somaxconn": ("4096", "bursts of new streams on the interception and tunnel listeners"),
}


def _file(name: str, root: Path) -> Path:
    return root / name.replace(".", "/")


def _in_netns(netns: str, *args: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", netns, "sysctl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"sysctl {' '.join(args)} in {netns}: {done.stderr.strip()}")
    return done.stdout


def read(name: str, *, root: Path = Path("/proc/sys"), netns: str | None = None) -> str:
    """The current value, whitespace normalised (in namespace `netns`, or this process's)."""
    if netns:
        return " ".join(_in_netns(netns, "-n", name).split())
    return " ".join(_file(name, root).read_text().split())


def write(name: str, value: str, *, root: Path = Path("/proc/sys"), netns: str | None = None) -> None:
    """Set one value."""
    if netns:
        _in_netns(netns, "-qw", f"{name}={value}")
        return
    _file(name, root).write_text(value + "\n")


def changes(settings: dict[str, tuple[str, str]] = REQUIRED, *, root: Path = Path("/proc/sys"), netns: str | None = None) -> dict[str, str]:
    """The current value of every setting apply() would change (read only: record these before applying)."""
    changed: dict[str, str] = {}
    for name, (value, _why) in settings.items():
        old = read(name, root=root, netns=netns)
        if old != value:
            changed[name] = old
    return changed


def apply(settings: dict[str, tuple[str, str]] = REQUIRED, *, root: Path = Path("/proc/sys"), netns: str | None = None) -> dict[str, str]:
    """Set every required value; returns the previous values for restore()."""
    previous: dict[str, str] = {}
    for name, (value, _why) in settings.items():
        old = read(name, root=root, netns=netns)
        if old != value:
            write(name, value, root=root, netns=netns)
            previous[name] = old
    return previous


def restore(previous: dict[str, str], *, root: Path = Path("/proc/sys"), netns: str | None = None) -> None:
    """Put back what apply() changed."""
    for name, value in previous.items():
        write(name, value, root=root, netns=netns)
