"""Whole-exchange deadlines for connection setup: a TLS handshake or a header must finish by a point in time.

A socket timeout bounds each receive, so a peer that trickles one byte per
receive can hold a thread for as long as it likes. These helpers run the
exchange on a non-blocking socket and wait with `poll` only for what is left
of one deadline (monotonic seconds), then put the socket back in blocking
mode with its old timeout. Used at setup only; the byte path never calls them.
"""
from __future__ import annotations

import select
import socket
import ssl
import time

_READ = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_WRITE = select.POLLOUT | select.POLLHUP | select.POLLERR


def _wait(sock: socket.socket, events: int, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    poller = select.poll()
    poller.register(sock, events)
    if not poller.poll(left * 1000):
        raise TimeoutError("deadline passed")


def handshake(tls: ssl.SSLSocket, deadline: float) -> None:
    """Complete the TLS handshake of a socket wrapped with do_handshake_on_connect=False, by `deadline`."""
    timeout = tls.gettimeout()
    tls.setblocking(False)
    try:
        while True:
            try:
                tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                _wait(tls, _READ, deadline)
            except ssl.SSLWantWriteError:
                _wait(tls, _WRITE, deadline)
    finally:
        tls.settimeout(timeout)


def recv_exact(sock: socket.socket, size: int, deadline: float) -> bytes:
    """Exactly `size` bytes by `deadline`; b"" short of that means the peer closed (ConnectionError)."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    data = bytearray()
    try:
        while len(data) < size:
            try:
                chunk = sock.recv(size - len(data))
            except (ssl.SSLWantReadError, BlockingIOError):
                _wait(sock, _READ, deadline)
                continue
            except ssl.SSLWantWriteError:
                _wait(sock, _WRITE, deadline)
                continue
            if not chunk:
                raise ConnectionError("closed inside the exchange")
            data += chunk
    finally:
        sock.settimeout(timeout)
    return bytes(data)
