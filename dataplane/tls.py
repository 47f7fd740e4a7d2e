"""Mutual TLS 1.3 between agents: chain to the fabric CA, then the expected URI identity.

Hostnames mean nothing in the fabric (peers are reached by address on two
paths), so the check is on the certificate's URI SAN instead: the dialer knows
exactly which identity it wants; the listener accepts any identity in its peer
list. Anything else (another CA, TLS 1.2, no client certificate) fails.
"""
from __future__ import annotations

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


def _base(purpose: int, paths: TlsPaths) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(paths.ca))
    ctx.load_cert_chain(certfile=str(paths.cert), keyfile=str(paths.key))
    return ctx


def build_contexts(paths: TlsPaths) -> TlsContexts:
    """Load the CA, certificate and key into a server and a client context (TLS 1.3 only, mutual)."""
    server = _base(ssl.PROTOCOL_TLS_SERVER, paths)
    # Peers never resume (warm tunnels replace resumption), so tickets only cost a round of writes.
    server.num_tickets = 0
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
