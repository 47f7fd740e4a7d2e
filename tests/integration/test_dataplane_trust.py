"""Trust that holds: what each certificate may claim, revocation, and a reload that re-judges open flows.

Each test is an attack an insider of the fabric would try (issue 12, docs/security.md):
a fabric member that is nobody's peer forging a source, a real peer forging
identity and mode, a fabric-CA impostor in the far edge's place, a revoked
certificate, and a flow the policy no longer allows.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509

from dataplane import pki
from dataplane.config import TlsPaths
from dataplane.header import FLAG_END_TO_END, Status, StreamHeader, decode_reply
from dataplane.tls import build_contexts
from tests.integration.conftest import AppServer, echo
from testbed.netns import Lab
from testbed.seed000 import AGENT, AZ_APP, DEFAULT_POLICY, EDGE_B, Seed000, identity

pytestmark = pytest.mark.integration

UDP_TO_DB = {"name": "app-udp", "action": "permit", "src": ["10.30.40.0/24"], "dst": ["172.18.40.0/24"], "proto": "udp", "ports": [5432]}


@pytest.fixture(scope="module", params=[True, False], ids=["end-to-end", "hop-by-hop"])
def seed(request: pytest.FixtureRequest) -> Iterator[tuple[Seed000, AppServer]]:
    overrides = {node: {"end_to_end": request.param} for node in ("conn", "edgea", "edgeb")}
    policy = json.loads(json.dumps(DEFAULT_POLICY))
    policy["rules"].append(UDP_TO_DB)
    with Seed000(tag="trs", overrides=overrides, policy=policy) as topology:
        server = AppServer(topology.ns("azapp"), 5432, echo)
        yield topology, server
        server.close()


def _member(seed: Seed000, folder: str, node_identity: str) -> ssl.SSLContext:
    """A client context holding a genuine fabric-CA certificate for `node_identity`."""
    ca_path, cert, key = pki.write_node_files(seed.workdir / folder, seed.ca.cert_pem, pki.issue(seed.ca, node_identity))
    return build_contexts(TlsPaths(ca=ca_path, cert=cert, key=key)).client


def _answer(ctx: ssl.SSLContext, seed: Seed000, ns: str, header: StreamHeader) -> Status | None:
    """Dial edge B from `ns` with `ctx`, send `header`; the reply status, or None if the stream was cut without one."""
    sock = seed.ns(ns).socket()
    sock.settimeout(5)
    with sock:
        sock.connect((EDGE_B["private"], 7443))
        tls = ctx.wrap_socket(sock, server_side=False)
        tls.sendall(header.encode())
        try:
            first = tls.recv(2)
            if len(first) < 2:
                return None
            return decode_reply(first + tls.recv(first[1]) if first[1] else first)[0]
        except (OSError, ssl.SSLError):
            return None


def _logs(topo: Seed000) -> str:
    """The end of each agent's log, for a failure message."""
    parts = []
    for node in ("conn", "edgea", "edgeb"):
        flows = topo.workdir / node / "flows.jsonl"
        parts.append(f"--- {node}\n{topo.agents[node].log()[-2500:]}\n{flows.read_text()[-1500:] if flows.exists() else ''}")
    return "\n".join(parts)


def _server_saw(server: AppServer, address: str) -> bool:
    time.sleep(0.3)  # a delivery in flight would have connected by now
    return any(peer[0] == address for peer in server.peers)


def _mode_flags(seed: Seed000) -> int:
    return FLAG_END_TO_END if seed.read_config("edgeb")["end_to_end"] else 0


def test_a_stranger_claiming_a_connector_source_is_refused_and_the_server_sees_nothing(seed: tuple[Seed000, AppServer]) -> None:
    topo, server = seed
    stranger = _member(topo, "stranger", identity("stranger"))
    # Every shape of the claim: its own identity in either mode, and end to end whatever the fabric runs.
    for n, flags in enumerate({FLAG_END_TO_END, _mode_flags(topo)}):
        header = StreamHeader(IPv4Address("10.30.40.66"), IPv4Address(AZ_APP), 40000 + n, 5432, identity("stranger"), 66 + n, flags=flags)
        answer = _answer(stranger, topo, "edgea", header)
        assert answer is None or answer.name == "FORBIDDEN", f"flags {flags}: the stranger got {answer}"
    assert not _server_saw(server, "10.30.40.66"), "the database accepted a connection from the forged source"
    assert topo.agents["edgeb"].wait_for("claimed=spiffe://acme/stranger")
    assert topo.round_trip(b"still ok")


def test_a_peer_forging_identity_and_mode_is_refused_and_the_server_sees_nothing(seed: tuple[Seed000, AppServer]) -> None:
    """Edge A's genuine certificate, someone else's identity in the header, and the wrong mode for an end-to-end fabric."""
    topo, server = seed
    edgea = topo.member_context("edgea")
    forged = StreamHeader(IPv4Address("10.30.40.77"), IPv4Address(AZ_APP), 41000, 5432, identity("someone-else"), 77, flags=0)
    answer = _answer(edgea, topo, "edgea", forged)
    assert answer is not None and answer.name == "FORBIDDEN", f"the forging peer got {answer}"
    assert not _server_saw(server, "10.30.40.77")
    assert topo.agents["edgeb"].wait_for("claimed=spiffe://acme/someone-else")
    flows = (topo.workdir / "edgeb" / "flows.jsonl")
    assert "someone-else" not in (flows.read_text() if flows.exists() else ""), "the flow log recorded the forged identity"
    assert topo.round_trip(b"still ok")


def test_a_fabric_ca_impostor_far_edge_receives_zero_bytes_and_the_connector_says_why(seed: tuple[Seed000, AppServer]) -> None:
    topo, _server = seed
    if not topo.read_config("conn")["end_to_end"]:
        pytest.skip("hop-by-hop: edge A dials edge B's configured identity (test_dataplane_security covers it)")
    edgeb = topo.agents["edgeb"]
    edgeb.signal(signal.SIGTERM)
    assert edgeb.proc is not None and edgeb.proc.wait(timeout=15) == 0
    folder = topo.workdir / "impostor"
    ca_path, cert, key = pki.write_node_files(folder, topo.ca.cert_pem, pki.issue(topo.ca, identity("stranger2")))
    server_ctx = build_contexts(TlsPaths(ca=ca_path, cert=cert, key=key)).server
    listener = topo.ns("edgeb").socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 7443))
    listener.listen(16)
    received: list[bytes] = []

    def impostor() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.settimeout(3)
            try:
                tls = server_ctx.wrap_socket(conn, server_side=True)
                while chunk := tls.recv(4096):
                    received.append(chunk)
                    tls.sendall(chunk)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    thread = threading.Thread(target=impostor, daemon=True)
    thread.start()
    try:
        app = topo.ns("awsapp").socket()
        app.settimeout(5)
        with app:
            try:
                app.connect((AZ_APP, 5432))
                app.sendall(b"card=4111-1111-1111-1111")
                echoed = app.recv(64)
            except OSError:
                echoed = b""
        # A datagram flow takes the same ingress path, so the same pinned session: the impostor gets nothing of it either.
        udp = topo.ns("awsapp").socket(socket.SOCK_DGRAM)
        udp.settimeout(3)
        with udp:
            udp.sendto(b"card=5500-0000-0000-0004", (AZ_APP, 5432))
            try:
                udp_echoed = udp.recv(64)
            except OSError:
                udp_echoed = b""
        assert echoed == b"" and udp_echoed == b""
        assert received == [], f"the impostor received stream bytes: {received!r}"
        deadline = time.monotonic() + 3
        while len(refusals := [line for line in topo.agents["conn"].log().splitlines() if "error=PeerIdentityError detail=" in line]) < 2:
            assert time.monotonic() < deadline, _logs(topo)  # the TCP stream's refusal and the UDP session's
            time.sleep(0.05)
        assert all("spiffe://acme/stranger2" in line for line in refusals), refusals
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=5)
        topo.start_agent("edgeb")
        topo.wait_ready("edgeb")
    assert topo.round_trip(b"still ok")


def test_a_denylisted_identity_or_serial_is_refused_at_the_handshake(seed: tuple[Seed000, AppServer]) -> None:
    topo, _server = seed
    edgea = topo.agents["edgea"]
    original = topo.read_config("edgea")
    serial = format(x509.load_pem_x509_certificate((topo.workdir / "conn" / "node.pem").read_bytes()).serial_number, "X")
    colons = ":".join(serial.lower()[i:i + 2] for i in range(0, len(serial), 2))  # as openssl might print it
    try:
        for denylist in ({"identities": [identity("conn")]}, {"serials": [colons]}):
            rejected = edgea.log().count("reason=denylisted")
            topo.reload("edgea", {**original, "denylist": denylist})
            assert not topo.round_trip(b"revoked")
            deadline = time.monotonic() + 3  # log lines land a moment after the refusal
            while edgea.log().count("reason=denylisted") <= rejected and time.monotonic() < deadline:
                time.sleep(0.02)
            assert edgea.log().count("reason=denylisted") > rejected, f"{denylist}: no handshake refusal logged"
    finally:
        topo.reload("edgea", original)
    assert topo.round_trip(b"reinstated"), _logs(topo)


@pytest.mark.parametrize("node", ["conn", "edgeb"], ids=["at-the-ingress", "at-delivery"])
def test_a_tightened_policy_resets_an_open_stream_within_a_second(seed: tuple[Seed000, AppServer], node: str) -> None:
    topo, _server = seed
    original = topo.read_config(node)
    tightened = json.loads(json.dumps(original))
    tightened["filter"]["rules"] = [rule for rule in tightened["filter"]["rules"] if rule["name"] != "app-to-db"]
    reloads = topo.agents[node].log().count("agent.reloaded")
    app = topo.ns("awsapp").socket()
    app.settimeout(5)
    try:
        app.connect((AZ_APP, 5432))
        app.sendall(b"before")
        assert app.recv(6) == b"before"
        sport = app.getsockname()[1]
        topo.write_config(node, tightened)
        sent = time.monotonic()
        topo.agents[node].signal(signal.SIGHUP)
        with pytest.raises((ConnectionResetError, ConnectionAbortedError)):
            if app.recv(16) == b"":
                raise ConnectionAbortedError("closed")
        took = time.monotonic() - sent
        assert took < 1.0, f"the denied stream ran {took:.2f} s after the reload"
        assert topo.agents[node].wait_for("flow.revoked")
        if node == "conn":
            entries = topo.ns("conn").exec("conntrack", "-L", "-p", "tcp", "--sport", str(sport), check=False)
            assert f"sport={sport} " not in entries.stdout, f"conntrack still holds the revoked flow:\n{entries.stdout}"
    finally:
        app.close()
        # The reset can come before the tightening reload logs its end: let it finish before the next one.
        deadline = time.monotonic() + 5
        while topo.agents[node].log().count("agent.reloaded") <= reloads and time.monotonic() < deadline:
            time.sleep(0.02)
        topo.reload(node, original)
    assert topo.round_trip(b"allowed again"), _logs(topo)


def test_the_agent_refuses_to_start_with_a_certificate_for_another_identity_or_a_readable_key(tmp_path: Path) -> None:
    ca = pki.create_ca("acme")
    ca_path, cert, key = pki.write_node_files(tmp_path, ca.cert_pem, pki.issue(ca, "spiffe://acme/someone-else"))
    os.chmod(key, 0o644)
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({
        "name": "conn", "role": "connector", "identity": "spiffe://acme/conn",
        "tls": {"ca": str(ca_path), "cert": str(cert), "key": str(key)},
    }))
    with Lab("trc") as lab:  # a namespace of its own: an agent that did start must not touch this host
        done = lab.ns("solo").exec(*AGENT, "--config", str(config), check=False, timeout=15)
    assert done.returncode == 2, done.stderr
    assert "tls.cert: the certificate names ['spiffe://acme/someone-else'], not this node's identity spiffe://acme/conn" in done.stderr
    assert "tls.key:" in done.stderr and "mode 0644" in done.stderr
    assert "agent.start " not in done.stderr
