"""What must survive a SIGKILL (but not a reboot): the pre-agent sysctls and the kernel objects the agent owns.

An agent killed with SIGKILL cannot restore anything. Without a record, the
next run would take the dead agent's sysctls for the originals (and, seeing
forwarding already on, build its forward chain without the catch-all drop),
and would not know the names of the objects the dead run installed if the
config has changed since. So the agent keeps one small JSON file per network
namespace and node under `state_dir` (default /run/transit-agent, a tmpfs:
gone at reboot, like the kernel state it describes):

- `sysctl`: each value as it was before any run of the agent changed it
  (written before the change is made, and kept across restarts until a clean
  stop has restored it);
- `intercept`, `filter_table`, `icmp`: the objects currently installed, by
  name, so a restart removes them even when its own config names others.

A clean stop restores and removes the file. The namespace is identified by
its netns cookie (SO_NETNS_COOKIE, Linux 5.14+), which the kernel never
reuses, so a file left by a namespace that was deleted never applies to a
new one; on older kernels by the inode of /proc/self/ns/net, unique only
while the namespace exists.
"""
from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

SO_NETNS_COOKIE = 71  # asm-generic/socket.h


def netns_id() -> str:
    """This process's network namespace: `cookie-<n>` (never reused), or `inode-<n>` on kernels without cookies."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            return f"cookie-{struct.unpack('Q', sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]}"
    except OSError:
        return f"inode-{os.stat('/proc/self/ns/net').st_ino}"


class RunState:
    """The state file of one agent (node) in this network namespace."""

    def __init__(self, directory: Path, node: str) -> None:
        self.path = Path(directory) / f"netns-{netns_id()}" / f"{node}.json"

    def load(self) -> dict[str, Any]:
        """The recorded state ({} when there is none or it is unreadable: nothing to recover)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def update(self, **fields: Any) -> None:
        """Record `fields` (merged into what is there), atomically: a crash leaves the old file or the new one."""
        data = {**self.load(), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def clear(self) -> None:
        """Forget everything (after a clean stop restored it)."""
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass  # another agent's file is still there
