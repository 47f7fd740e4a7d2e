"""Layer-3 TUN devices the agent owns: ICMP interception's and the GENEVE gateway's.

The device lives as long as the descriptor: when the agent closes it (or
dies), the kernel removes the device and every route through it.
"""
from __future__ import annotations

import fcntl
import os
import struct

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    """A non-blocking descriptor of a new layer-3 TUN device `name` (no packet info); the device goes when it closes."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        os.set_blocking(fd, False)
    except BaseException:
        os.close(fd)
        raise
    return fd
