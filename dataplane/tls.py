"""Mutual TLS 1.3 between agents: chain to the fabric CA, then the expected URI identity.

Hostnames mean nothing in the fabric (peers are reached by address on two
paths), so the check is on the certificate's URI SAN instead: the dialer knows
exactly which identity it wants; the listener accepts any identity in its peer
list. Anything else (another CA, TLS 1.2, no client certificate) fails.
"""
from __future__ import annotations

import ctypes
import ssl
from collections.abc import Collection
from dataclasses import dataclass

from dataplane.config import TlsPaths


class PeerIdentityError(ssl.SSLError):
    """The peer's certificate chains to the CA but names an identity we do not expect."""


@dataclass(frozen=True)
class TlsContexts:
    """The two contexts an agent needs, built once per (re)load from the same files."""

    server: ssl.SSLContext
    client: ssl.SSLContext


CIPHERSUITES = b"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
READ_BUFFER = 256 * 1024  # read-ahead pulls up to this much per recv: ~15 records per system call
_SSL_CTRL_SET_READ_AHEAD = 41
_SSL_CTRL_GET_READ_AHEAD = 40


def _libssl() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]  # resolves libssl symbols it links
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_set_ciphersuites.restype = ctypes.c_int
        lib.SSL_CTX_set_ciphersuites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.SSL_CTX_set_default_read_buffer_len.restype = None
        lib.SSL_CTX_set_default_read_buffer_len.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return lib


_LIB = _libssl()


def _ctx_pointer(ctx: ssl.SSLContext) -> int | None:
    """The SSL_CTX behind `ctx`, proven by comparing its options with `ctx.options` (None if unsure)."""
    if _LIB is None:
        return None
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not pointer or _LIB.SSL_CTX_get_options(pointer) != int(ctx.options):
        return None
    return pointer


def prefer_aes128(ctx: ssl.SSLContext) -> bool:
    """Offer TLS_AES_128_GCM_SHA256 first: the cheapest TLS 1.3 suite with AES-NI (the ssl module cannot set TLS 1.3 suites)."""
    pointer = _ctx_pointer(ctx)
    return bool(pointer) and _LIB.SSL_CTX_set_ciphersuites(pointer, CIPHERSUITES) == 1  # type: ignore[union-attr]


def enable_read_ahead(ctx: ssl.SSLContext) -> bool:
    """Let OpenSSL read many records per recv (far fewer system calls on bulk streams).

    The ssl module does not expose SSL_CTX_set_read_ahead, so this reaches the
    SSL_CTX behind the context (the first field after the object header in
    CPython) and proves it is the right pointer by comparing its options with
    `ctx.options` before touching it. Returns False, changing nothing, when the
    check fails. The relay never relies on SSL_pending, so read-ahead is safe.
    """
    pointer = _ctx_pointer(ctx)
    if _LIB is None or pointer is None:
        return False
    _LIB.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_READ_AHEAD, 1, None)
    _LIB.SSL_CTX_set_default_read_buffer_len(pointer, READ_BUFFER)
    return _LIB.SSL_CTX_ctrl(pointer, _SSL_CTRL_GET_READ_AHEAD, 0, None) == 1


def _base(purpose: int, paths: TlsPaths) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    # A TCP FIN ends a tunnel without close_notify (OpenSSL cannot half-close TLS); stream
    # integrity comes from the relay's end frame instead (dataplane/relay.py), so the bare
    # FIN must not be a fatal error that sends an alert and poisons the other direction.
    ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    ctx.load_verify_locations(cafile=str(paths.ca))
    ctx.load_cert_chain(certfile=str(paths.cert), keyfile=str(paths.key))
    enable_read_ahead(ctx)
    prefer_aes128(ctx)
    return ctx


def build_contexts(paths: TlsPaths) -> TlsContexts:
    """Load the CA, certificate and key into a server and a client context (TLS 1.3 only, mutual)."""
    server = _base(ssl.PROTOCOL_TLS_SERVER, paths)
    # One ticket per handshake: dialers resume with it, skipping certificate parsing and
    # verification (the costly part of an OpenSSL 3.0 handshake). Resumption keeps (EC)DHE
    # (psk_dhe_ke), and the ticket carries the peer certificate, so identity checks still apply.
    server.num_tickets = 1
    client = _base(ssl.PROTOCOL_TLS_CLIENT, paths)
    client.check_hostname = False  # identity is checked on the URI SAN below
    return TlsContexts(server=server, client=client)


def peer_identities(sock: ssl.SSLSocket | ssl.SSLObject) -> list[str]:
    """The URI SANs of the (already verified) peer certificate."""
    cert = sock.getpeercert()
    if not cert:
        return []
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "URI"]


def require_identity(sock: ssl.SSLSocket | ssl.SSLObject, allowed: Collection[str]) -> str:
    """Return the peer's identity if it is one of `allowed`, else raise PeerIdentityError."""
    found = peer_identities(sock)
    for identity in found:
        if identity in allowed:
            return identity
    raise PeerIdentityError(f"peer identity {found or 'none'} not in the expected set")
