"""Mutual TLS 1.3: fabric members connect; another CA, a wrong identity or TLS 1.2 are refused."""
from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from dataplane import pki
from dataplane.config import Denylist, TlsPaths
from dataplane.tls import (
    PeerDeniedError, PeerIdentityError, TlsContexts, build_contexts, enable_read_ahead, own_credential_problems, prefer_aes128,
)


def _contexts(tmp_path: Path, ca: pki.KeyPair, identity: str, stem: str) -> TlsContexts:
    ca_path, cert, key = pki.write_node_files(tmp_path / stem, ca.cert_pem, pki.issue(ca, identity))
    return build_contexts(TlsPaths(ca=ca_path, cert=cert, key=key))


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[ssl.SSLSocket | Exception, ssl.SSLSocket | Exception]:
    left, right = socket.socketpair()
    left.settimeout(5)
    right.settimeout(5)
    result: dict[str, ssl.SSLSocket | Exception] = {}

    def serve() -> None:
        try:
            tls = server_ctx.wrap_socket(left, server_side=True)
            tls.recv(1)
            tls.sendall(b"y")
            result["server"] = tls
        except Exception as exc:
            result["server"] = exc
            left.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client: ssl.SSLSocket | Exception = client_ctx.wrap_socket(right, server_side=False)
        # TLS 1.3: the server's verdict on the client certificate arrives after the client finishes.
        client.sendall(b"x")  # type: ignore[union-attr]
        client.recv(1)  # type: ignore[union-attr]
    except Exception as exc:
        client = exc
        right.close()
    thread.join()
    return result["server"], client


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsContexts]:
    tmp = tmp_path_factory.mktemp("tls")
    ca = pki.create_ca("acme")
    other = pki.create_ca("acme")  # same name, different key: must not be trusted
    return {
        "a": _contexts(tmp, ca, "spiffe://acme/edge-a", "a"),
        "b": _contexts(tmp, ca, "spiffe://acme/edge-b", "b"),
        "rogue": _contexts(tmp, other, "spiffe://acme/edge-b", "rogue"),
    }


def test_members_connect_and_see_each_others_identity(fabric: dict[str, TlsContexts]) -> None:
    left, right = socket.socketpair()
    box: dict[str, object] = {}

    def serve() -> None:
        tls = fabric["a"].server.wrap_socket(left, server_side=True)
        box["id"] = fabric["a"].require(tls, "spiffe://acme/edge-b").identities[0]
        box["version"] = tls.version()
        box["cipher"] = tls.cipher()[0]
        tls.sendall(b"ok")
        tls.close()

    thread = threading.Thread(target=serve)
    thread.start()
    client = fabric["b"].client.wrap_socket(right, server_side=False)
    assert fabric["b"].require(client, "spiffe://acme/edge-a").identities == ("spiffe://acme/edge-a",)
    assert client.recv(2) == b"ok"
    thread.join()
    client.close()
    assert box == {"id": "spiffe://acme/edge-b", "version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256"}


def test_contexts_are_tuned_through_the_verified_pointer() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert enable_read_ahead(ctx) and prefer_aes128(ctx)


def test_client_from_another_ca_is_refused(fabric: dict[str, TlsContexts]) -> None:
    server, client = _handshake(fabric["a"].server, fabric["rogue"].client)
    assert isinstance(server, ssl.SSLError)
    assert isinstance(client, (ssl.SSLError, OSError))


def test_server_from_another_ca_is_refused(fabric: dict[str, TlsContexts]) -> None:
    server, client = _handshake(fabric["rogue"].server, fabric["a"].client)
    assert isinstance(client, ssl.SSLCertVerificationError)


def test_unexpected_identity_is_refused(fabric: dict[str, TlsContexts]) -> None:
    server, client = _handshake(fabric["a"].server, fabric["b"].client)
    assert isinstance(client, ssl.SSLSocket)
    with pytest.raises(PeerIdentityError):
        fabric["b"].require(client, "spiffe://acme/edge-c")
    client.close()
    if isinstance(server, ssl.SSLSocket):
        server.close()


def test_tls12_client_is_refused(fabric: dict[str, TlsContexts]) -> None:
    legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    legacy.check_hostname = False
    legacy.verify_mode = ssl.CERT_NONE
    legacy.maximum_version = ssl.TLSVersion.TLSv1_2
    server, client = _handshake(fabric["a"].server, legacy)
    assert isinstance(server, ssl.SSLError)
    assert isinstance(client, (ssl.SSLError, OSError))


def test_client_without_certificate_is_refused(fabric: dict[str, TlsContexts]) -> None:
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.verify_mode = ssl.CERT_NONE
    server, client = _handshake(fabric["a"].server, anonymous)
    assert isinstance(server, ssl.SSLError)
    assert isinstance(client, (ssl.SSLError, OSError))


def test_resumed_sessions_still_carry_both_identities(fabric: dict[str, TlsContexts]) -> None:
    """Resumption skips certificate work, never the identity check: the ticket carries the certificates."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        seen: list[tuple[str, bool]] = []

        def serve(count: int) -> None:
            for _ in range(count):
                conn, _ = listener.accept()
                tls = fabric["a"].server.wrap_socket(conn, server_side=True)
                seen.append((fabric["a"].require(tls, "spiffe://acme/edge-b").identities[0], tls.session_reused))
                tls.sendall(b"k")
                tls.close()

        thread = threading.Thread(target=serve, args=(2,))
        thread.start()
        session = None
        reused = []
        for _ in range(2):
            client = fabric["b"].client.wrap_socket(socket.create_connection(listener.getsockname()), session=session)
            assert client.recv(1) == b"k"  # also processes the ticket
            assert fabric["b"].require(client, "spiffe://acme/edge-a").identities == ("spiffe://acme/edge-a",)
            reused.append(client.session_reused)
            session = client.session
            client.close()
        thread.join(5)
    assert reused == [False, True]
    assert seen == [("spiffe://acme/edge-b", False), ("spiffe://acme/edge-b", True)]


def test_a_denylisted_identity_or_serial_is_refused_after_the_handshake(tmp_path: Path) -> None:
    ca = pki.create_ca("acme")
    pair = pki.issue(ca, "spiffe://acme/edge-b")
    ca_path, cert, key = pki.write_node_files(tmp_path / "b", ca.cert_pem, pair)
    b = build_contexts(TlsPaths(ca=ca_path, cert=cert, key=key))
    serial = pki.serial_hex(pair.cert_pem)
    for n, denylist in enumerate((Denylist(identities=["spiffe://acme/edge-b"]), Denylist(serials=[serial.lower()]))):
        a = _contexts(tmp_path, ca, "spiffe://acme/edge-a", f"a{n}")
        strict = TlsContexts(a.server, a.client, frozenset(denylist.identities), frozenset(denylist.serials))
        server, client = _handshake(b.server, strict.client)
        assert isinstance(client, ssl.SSLSocket)
        with pytest.raises(PeerDeniedError):
            strict.check_denylist(client)
    allowed = _contexts(tmp_path, ca, "spiffe://acme/edge-a", "ok")
    _server, client = _handshake(b.server, allowed.client)
    assert isinstance(client, ssl.SSLSocket)
    assert allowed.check_denylist(client).identities == ("spiffe://acme/edge-b",)


def test_build_contexts_carries_the_normalised_denylist(tmp_path: Path) -> None:
    ca = pki.create_ca("acme")
    ca_path, cert, key = pki.write_node_files(tmp_path, ca.cert_pem, pki.issue(ca, "spiffe://acme/edge-a"))
    denylist = Denylist.model_validate({"identities": ["spiffe://acme/old"], "serials": ["0a:bc"]})
    contexts = build_contexts(TlsPaths(ca=ca_path, cert=cert, key=key), denylist)
    assert contexts.denied_identities == {"spiffe://acme/old"} and contexts.denied_serials == {"ABC"}


def test_own_credentials_must_name_this_identity_and_keep_the_key_private(tmp_path: Path) -> None:
    ca = pki.create_ca("acme")
    pair = pki.issue(ca, "spiffe://acme/edge-a")
    ca_path, cert, key = pki.write_node_files(tmp_path, ca.cert_pem, pair)
    paths = TlsPaths(ca=ca_path, cert=cert, key=key)
    assert own_credential_problems(paths, "spiffe://acme/edge-a") == []
    assert own_credential_problems(paths, "spiffe://acme/edge-b") == [
        "tls.cert: the certificate names ['spiffe://acme/edge-a'], not this node's identity spiffe://acme/edge-b; issue one for spiffe://acme/edge-b"
    ]
    key.chmod(0o640)
    assert own_credential_problems(paths, "spiffe://acme/edge-a") == [
        f"tls.key: {key} has mode 0640; the private key must be readable by its owner only (chmod 0600)"
    ]
    key.chmod(0o600)
    revoked = Denylist(serials=[pki.serial_hex(pair.cert_pem)])
    assert own_credential_problems(paths, "spiffe://acme/edge-a", revoked)[0].startswith("tls.cert: this node's certificate serial")
