"""Mutual TLS 1.3 between agents: chain to the fabric CA, then the expected URI identity.

Hostnames mean nothing in the fabric (peers are reached by address on two
paths), so the check is on the certificate's URI SAN instead: the dialer knows
exactly which identity it wants (`TlsContexts.require`); the listener accepts
any identity in its peer list. Anything else (another CA, TLS 1.2, no client certificate) fails, and so
does a certificate whose identity or serial is on the config's denylist
(`TlsContexts.check_denylist`, after every handshake, whichever side dialled).
The agent's own files are checked before use (`own_credential_problems`):
its certificate names its configured identity, its key is private.
"""
from __future__ import annotations

import ctypes
import os
import ssl
import stat
from dataclasses import dataclass, field

from dataplane import pki
from dataplane.config import Denylist, TlsPaths


class PeerIdentityError(ssl.SSLError):
    """The peer's certificate chains to the CA but names an identity we do not expect."""


class PeerDeniedError(PeerIdentityError):
    """The peer's certificate is on the denylist (its identity or its serial)."""


@dataclass(frozen=True)
class TlsContexts:
    """The two contexts an agent needs, built once per (re)load from the same files, and the denylist they enforce."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    denied_identities: frozenset[str] = field(default_factory=frozenset)
    denied_serials: frozenset[str] = field(default_factory=frozenset)  # upper-case hex, no leading zeros

    def denied(self, cert: PeerCert) -> str | None:
        """Why a (verified) peer certificate is refused by the denylist, or None; a couple of set lookups."""
        if cert.serial in self.denied_serials:
            return f"certificate serial {cert.serial} is on the denylist"
        for identity in cert.identities:
            if identity in self.denied_identities:
                return f"identity {identity} is on the denylist"
        return None

    def check_denylist(self, sock: ssl.SSLSocket | ssl.SSLObject) -> PeerCert:
        """The peer's certificate, or PeerDeniedError when it is denylisted."""
        cert = peer_cert(sock)
        reason = self.denied(cert)
        if reason:
            raise PeerDeniedError(reason)
        return cert

    def require(self, sock: ssl.SSLSocket | ssl.SSLObject, identity: str) -> PeerCert:
        """What a dialer checks: the peer is exactly `identity` and not denylisted (PeerIdentityError otherwise)."""
        cert = self.check_denylist(sock)
        if identity not in cert.identities:
            raise PeerIdentityError(f"peer presented {', '.join(cert.identities) or 'no identity'}, expected {identity}")
        return cert


@dataclass(frozen=True)
class PeerCert:
    """What the agent judges of a verified peer certificate: its URI identities and its serial."""

    identities: tuple[str, ...]
    serial: str  # upper-case hex, no leading zeros (as the denylist holds it)


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


def build_contexts(paths: TlsPaths, denylist: Denylist | None = None) -> TlsContexts:
    """Load the CA, certificate and key into a server and a client context (TLS 1.3 only, mutual)."""
    server = _base(ssl.PROTOCOL_TLS_SERVER, paths)
    # One ticket per handshake: dialers resume with it, skipping certificate parsing and
    # verification (the costly part of an OpenSSL 3.0 handshake). Resumption keeps (EC)DHE
    # (psk_dhe_ke), and the ticket carries the peer certificate, so identity checks still apply.
    server.num_tickets = 1
    client = _base(ssl.PROTOCOL_TLS_CLIENT, paths)
    client.check_hostname = False  # identity is checked on the URI SAN below
    denied = denylist or Denylist()
    return TlsContexts(server=server, client=client, denied_identities=frozenset(denied.identities), denied_serials=frozenset(denied.serials))


def own_credential_problems(paths: TlsPaths, identity: str, denylist: Denylist | None = None) -> list[str]:
    """Why this node's own certificate and key must not be used (empty when they may).

    The certificate must carry `identity` as its URI SAN (a node that presents
    another identity would be refused by every peer, or worse, speak for it),
    must not be denylisted itself, and the key file must be readable by its
    owner only.
    """
    problems: list[str] = []
    try:
        cert_pem = paths.cert.read_bytes()
        found = pki.identities(cert_pem)
        serial = pki.serial_hex(cert_pem)
    except (OSError, ValueError) as exc:
        return [f"tls.cert: cannot read a certificate from {paths.cert}: {exc}"]
    if identity not in found:
        problems.append(f"tls.cert: the certificate names {found or 'no identity'}, not this node's identity {identity}; issue one for {identity}")
    denied = denylist or Denylist()
    if serial in denied.serials:
        problems.append(f"tls.cert: this node's certificate serial {serial} is on the denylist; issue a new certificate")
    try:
        mode = os.stat(paths.key).st_mode
    except OSError as exc:
        problems.append(f"tls.key: cannot stat {paths.key}: {exc.strerror}")
    else:
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.append(f"tls.key: {paths.key} has mode {stat.S_IMODE(mode):04o}; the private key must be readable by its owner only (chmod 0600)")
    return problems


def peer_cert(sock: ssl.SSLSocket | ssl.SSLObject) -> PeerCert:
    """The identities and serial of the (already verified) peer certificate (also after resumption: the ticket carries it)."""
    cert = sock.getpeercert() or {}
    identities = tuple(value for kind, value in cert.get("subjectAltName", ()) if kind == "URI")
    return PeerCert(identities, str(cert.get("serialNumber", "")).upper().lstrip("0") or "0")
