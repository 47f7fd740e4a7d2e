"""UDP and ICMP echo through seed 000's fabric: connector -> edge A -> edge B, in mutual TLS like TCP.

Permitted UDP exchanges and pings pass and are answered by the real hosts;
denied ones get an admin-prohibited error at once (UDP: the client's
socket sees EHOSTUNREACH); a capture on the
links between the connector and the far edge never shows a UDP payload in
clear; the flow logs hold the flows with proto udp/icmp; malformed datagram
frames from a trusted peer do not stop the agent; with the connector's agent
stopped the same ping and datagram get no answer (the fabric carries them,
not plain routing).
"""
from __future__ import annotations

import errno
import json
import os
import select
import socket
import ssl
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from dataplane.icmp_routing import IcmpPlan, install_rules, installed_rules, remove_rules, update_rules
from dataplane.header import FLAG_END_TO_END, ICMP, UDP, Status, StreamHeader, decode_reply
from testbed.netns import Lab, Netns, UdpEcho, in_netns
from testbed.seed000 import AWS_APP, AZ_APP, DEFAULT_POLICY, EDGE_B, TUNNEL_LINKS, Seed000, identity

pytestmark = pytest.mark.integration

DATAGRAM_RULES = [
    {"name": "app-udp", "action": "permit", "src": ["10.30.40.0/24"], "dst": ["172.18.40.0/24"], "proto": "udp", "ports": [[5001, 5003]]},
    {"name": "app-ping", "action": "permit", "src": ["10.30.40.0/24"], "dst": ["172.18.40.0/24"], "proto": "icmp"},
]
POLICY = {"default": "deny", "rules": [*DEFAULT_POLICY["rules"], *DATAGRAM_RULES]}
# Edge B alone denies UDP 5003: only the egress check can stop it.
EDGE_B_POLICY = {"default": "deny", "rules": [{"name": "egress-udp-deny", "action": "deny", "proto": "udp", "ports": [5003]}, *POLICY["rules"]]}


@pytest.fixture(scope="module")
def seed() -> Iterator[Seed000]:
    # A short datagram idle so finished flows reach the flow logs within the test.
    timeouts = {"idle": 30, "connect": 2, "handshake": 2, "drain": 2, "datagram_idle": 2}
    overrides: dict[str, dict[str, object]] = {node: {"timeouts": timeouts} for node in ("conn", "edgea", "edgeb")}
    overrides["edgeb"]["filter"] = EDGE_B_POLICY
    with Seed000(policy=json.loads(json.dumps(POLICY)), overrides=overrides, tag="dgm") as topology:
        yield topology


@pytest.fixture(scope="module")
def echoes(seed: Seed000) -> Iterator[dict[int, UdpEcho]]:
    made = {port: UdpEcho(seed.ns("azapp"), port) for port in (5001, 5003, 5004)}
    yield made
    for server in made.values():
        server.close()


def _udp_exchange(seed: Seed000, payloads: list[bytes], port: int = 5001, timeout: float = 3.0) -> list[bytes]:
    """Send each payload from aws-app to az-app:port on one socket; return the answers that came back."""
    sock = seed.ns("awsapp").socket(socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    answers = []
    with sock:
        sock.connect((AZ_APP, port))
        for payload in payloads:
            sock.send(payload)
            try:
                answers.append(sock.recv(65535))
            except (TimeoutError, ConnectionRefusedError):
                pass
    return answers


def _ping(seed: Seed000, ns: str, dst: str, count: int = 1) -> subprocess.CompletedProcess[str]:
    """iputils ping from `ns` (exit 0: every echo answered; 1 otherwise, with "Packet filtered" when refused)."""
    return seed.ns(ns).exec("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", dst, check=False, timeout=30)


def _flows(seed: Seed000, node: str) -> list[dict[str, object]]:
    path = seed.workdir / node / "flows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_flow(seed: Seed000, node: str, timeout: float = 5.0, **match: object) -> dict[str, object] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for flow in _flows(seed, node):
            if all(flow.get(k) == v for k, v in match.items()):
                return flow
        time.sleep(0.1)
    return None


def _reload(seed: Seed000, node: str, config: dict[str, object]) -> None:
    agent = seed.agents[node]
    before = agent.log().count("agent.reloaded")
    seed.write_config(node, config)
    agent.signal(1)
    deadline = time.monotonic() + 10
    while agent.log().count("agent.reloaded") == before:
        assert time.monotonic() < deadline, agent.log()[-2000:]
        assert "agent.reload_refused" not in agent.current_log(), agent.log()[-2000:]
        time.sleep(0.05)


def test_udp_exchange_passes_with_the_client_address(seed: Seed000, echoes: dict[int, UdpEcho]) -> None:
    payloads = [os.urandom(n) for n in (1, 100, 1400, 9000, 60000)]
    assert _udp_exchange(seed, payloads) == payloads
    assert echoes[5001].peers and echoes[5001].peers[-1][0] == AWS_APP  # the source address is kept


class EchoWatch:
    """A raw ICMP socket in a namespace: the sources of the echo requests that reached it."""

    def __init__(self, ns: Netns) -> None:
        self._sock = in_netns(ns.name, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
        self._sock.setblocking(False)

    def sources(self) -> list[str]:
        found = []
        for _ in range(1000):
            try:
                packet = self._sock.recv(65535)
            except BlockingIOError:
                break
            if packet[(packet[0] & 15) * 4] == 8:
                found.append(socket.inet_ntoa(packet[12:16]))
        self._sock.close()
        return found


def test_ping_passes_and_is_answered_by_the_real_host_seeing_the_client(seed: Seed000) -> None:
    watch = EchoWatch(seed.ns("azapp"))
    done = _ping(seed, "awsapp", AZ_APP, count=3)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 received" in done.stdout  # each reply came from the destination address, with our id and data
    assert watch.sources() == [AWS_APP] * 3  # edge B wrote the echoes into its TUN from the client's address


def test_ping_from_the_agents_own_address_without_preserve_source(seed: Seed000) -> None:
    original = seed.read_config("edgeb")
    _reload(seed, "edgeb", {**original, "preserve_source": False})
    try:
        watch = EchoWatch(seed.ns("azapp"))
        done = _ping(seed, "awsapp", AZ_APP, count=2)
        assert done.returncode == 0, done.stdout
        assert watch.sources() == [EDGE_B["app"]] * 2  # re-originated by edge B from its own address
    finally:
        _reload(seed, "edgeb", original)


def _udp_refusal(seed: Seed000, port: int, payload: bytes, timeout: float = 3.0) -> int | None:
    """Send one datagram on a connected socket from aws-app; the errno its next recv gets (None: an answer)."""
    sock = seed.ns("awsapp").socket(socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    with sock:
        sock.connect((AZ_APP, port))
        sock.send(payload)
        try:
            sock.recv(65535)
        except TimeoutError:
            return errno.ETIMEDOUT
        except OSError as exc:
            return exc.errno
    return None


def test_denied_udp_is_refused_at_once(seed: Seed000, echoes: dict[int, UdpEcho]) -> None:
    """The connector answers a datagram its kernel filter table refused with ICMP admin-prohibited (3/13)
    from the original destination: the client's connected socket gets EHOSTUNREACH, not a timeout."""
    before = list(echoes[5004].peers)
    watch = in_netns(seed.ns("awsapp").name, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    with watch:
        assert _udp_refusal(seed, 5004, b"denied at ingress") == errno.EHOSTUNREACH  # no rule: default deny
        watch.settimeout(2)
        error = watch.recv(65535)
    assert echoes[5004].peers == before
    # From the address the client sent to, quoting the datagram's IP header and UDP header (RFC 792).
    assert socket.inet_ntoa(error[12:16]) == AZ_APP and (error[20], error[21]) == (3, 13)
    quoted = error[28:]
    assert (socket.inet_ntoa(quoted[12:16]), socket.inet_ntoa(quoted[16:20]), quoted[9]) == (AWS_APP, AZ_APP, UDP)
    assert struct.unpack_from("!H", quoted, 22)[0] == 5004 and len(quoted) == 28
    # Refused by the connector's kernel filter table, which logs it (NFLOG) into the flow log with the rule.
    assert _wait_flow(seed, "conn", proto="udp", dport=5004, verdict="deny") is not None, _flows(seed, "conn")


def test_a_flood_of_denied_datagrams_gets_rate_limited_errors(seed: Seed000) -> None:
    """The connector is no amplifier: a source's refused datagrams get at most a burst and then a trickle of errors."""
    from dataplane.icmp_reject import REJECT_BURST, REJECT_RATE

    flood = 200
    before = _icmp_error_counts(seed, "conn")
    watch = in_netns(seed.ns("awsapp").name, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    sender = seed.ns("awsapp").socket(socket.SOCK_DGRAM)
    with watch, sender:
        started = time.monotonic()
        for index in range(flood):
            sender.sendto(b"flood", (AZ_APP, 6000 + index % 50))
        time.sleep(0.5)  # let the last reports and errors arrive
        watch.setblocking(False)
        errors = 0
        for _ in range(flood + 1):
            try:
                packet = watch.recv(65535)
            except BlockingIOError:
                break
            errors += packet[20] == 3 and packet[21] == 13
        elapsed = time.monotonic() - started
    print(f"\n{errors} ICMP errors for {flood} refused datagrams in {elapsed:.2f} s")
    assert 1 <= errors <= REJECT_BURST + REJECT_RATE * elapsed + 1, errors
    # The connector's /metrics counts what its rejecter sent and what the rate limit held back.
    after = _icmp_error_counts(seed, "conn")
    assert after["sent"] - before["sent"] >= errors
    assert after["limited"] > before["limited"]


def _icmp_error_counts(seed: Seed000, node: str) -> dict[str, float]:
    """transit_icmp_errors_total by result, scraped from the agent's /metrics inside its namespace."""
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> str:
        with urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=5) as response:
            return response.read().decode()

    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(in_netns(seed.ns(node).name, scrape)):
        for sample in family.samples:
            if sample.name == "transit_icmp_errors_total":
                counts[sample.labels["result"]] = sample.value
    assert set(counts) == {"sent", "limited"}, counts
    return counts


def test_udp_denied_at_egress_never_reaches_the_host(seed: Seed000, echoes: dict[int, UdpEcho]) -> None:
    """Edge B's DENIED reaches the connector, which refuses the client's flow the same way."""
    assert _udp_refusal(seed, 5003, b"denied at egress") == errno.EHOSTUNREACH
    assert echoes[5003].peers == []
    assert seed.agents["edgeb"].wait_for("rule=egress-udp-deny")
    assert _wait_flow(seed, "conn", proto="udp", dport=5003, verdict="deny", rule="egress-udp-deny")


def test_denied_ping_is_refused_as_admin_prohibited(seed: Seed000) -> None:
    done = _ping(seed, "azapp", AWS_APP)  # no rule lets az-app ping aws-app: edge B's ingress refuses it
    assert done.returncode == 1 and "Packet filtered" in done.stdout, done.stdout  # admin-prohibited: refused at once
    assert _wait_flow(seed, "edgeb", proto="icmp", role="ingress", verdict="deny", rule=None)


def test_flows_are_logged_with_their_protocol(seed: Seed000, echoes: dict[int, UdpEcho]) -> None:
    assert _udp_exchange(seed, [b"logged"]) == [b"logged"]
    assert _ping(seed, "awsapp", AZ_APP).returncode == 0
    # A datagram flow is logged when it ends: after timeouts.datagram_idle (2 s here).
    for node, role in (("conn", "ingress"), ("edgeb", "egress")):
        for proto, rule in (("udp", "app-udp"), ("icmp", "app-ping")):
            flow = _wait_flow(seed, node, timeout=10, proto=proto, role=role, verdict="permit", rule=rule)
            assert flow is not None, f"{node} logged no {proto} flow: {_flows(seed, node)}"
            assert flow["src"] == AWS_APP and flow["dst"] == AZ_APP
            assert flow["bytes_up"] > 0 and flow["bytes_down"] > 0


def _capture_all(ns: Netns, ifname: str, path: Path) -> subprocess.Popen[bytes]:
    """tcpdump of every packet on a link (UDP included), written as it arrives."""
    proc = ns.spawn("tcpdump", "--immediate-mode", "-i", ifname, "-U", "-s", "0", "-w", str(path),
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], 10)
    assert ready and b"listening on" in proc.stderr.readline()
    return proc


def test_no_udp_plaintext_between_connector_and_far_edge(seed: Seed000, echoes: dict[int, UdpEcho], tmp_path: Path) -> None:
    marker = b"UDP-PLAINTEXT-" + os.urandom(4).hex().encode()
    links = [*TUNNEL_LINKS, ("awsapp", "eth0")]
    captures = {link: tmp_path / f"{link[0]}-{link[1]}.pcap" for link in links}
    procs = [_capture_all(seed.ns(ns), ifname, path) for (ns, ifname), path in captures.items()]
    try:
        payloads = [marker * 20 for _ in range(3)]
        assert _udp_exchange(seed, payloads) == payloads
        time.sleep(0.5)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=5)
    assert marker in captures[("awsapp", "eth0")].read_bytes(), "control capture must see the plaintext"
    for link in TUNNEL_LINKS:
        assert marker not in captures[link].read_bytes(), f"UDP plaintext on {link}"
    assert captures[("edgea", "a-priv")].stat().st_size > len(marker) * 20


def _malformed(seed: Seed000, proto: int, blob: bytes) -> None:
    """Open the connector's own end-to-end datagram stream to edge B (from edge A's namespace, as a spliced one
    arrives), then send `blob` where frames belong."""
    header = StreamHeader(IPv4Address(AWS_APP), IPv4Address(AZ_APP), 41000, 5001 if proto == UDP else 0, identity("conn"), 9,
                          proto=proto, flags=FLAG_END_TO_END)
    with seed.open_stream("conn", EDGE_B["private"], header, ns="edgea") as tls:
        assert decode_reply(tls.recv(2))[0] is Status.OK
        tls.sendall(blob)
        try:
            while tls.recv(65536):
                pass
        except (OSError, ssl.SSLError):
            pass


def test_malformed_datagram_frames_do_not_stop_the_agent(seed: Seed000, echoes: dict[int, UdpEcho]) -> None:
    blobs = [
        (UDP, struct.pack("!H", 65535) + os.urandom(100)),   # longer than any UDP datagram
        (UDP, struct.pack("!H", 500) + b"cut short"),        # a frame cut short by the close
        (UDP, os.urandom(3000)),                             # random bytes
        (ICMP, struct.pack("!H", 1) + b"x"),                 # an echo frame without its sequence number
        (ICMP, os.urandom(2000)),
    ]
    for proto, blob in blobs:
        _malformed(seed, proto, blob)
    for node in ("conn", "edgea", "edgeb"):
        proc = seed.agents[node].proc
        assert proc is not None and proc.poll() is None, seed.agents[node].log()[-3000:]
    assert _udp_exchange(seed, [b"still works"]) == [b"still works"]
    assert _ping(seed, "awsapp", AZ_APP).returncode == 0


def test_udp_flow_continues_over_the_public_path_after_a_cut(seed: Seed000, echoes: dict[int, UdpEcho]) -> None:
    """A path failover resets the datagram streams on the dead path, like TCP streams; the flow's next
    datagram opens a new stream on the public path, so the application only loses what was in flight."""
    from tests.integration.test_dataplane_failover import _cut, _repair

    sock = seed.ns("awsapp").socket(socket.SOCK_DGRAM)
    sock.settimeout(3)
    changes = seed.agents["edgea"].log().count("path.change")
    with sock:
        sock.connect((AZ_APP, 5001))
        sport = sock.getsockname()[1]
        sock.send(b"before the cut")
        assert sock.recv(100) == b"before the cut"
        _cut(seed)
        try:
            deadline = time.monotonic() + 5
            while seed.agents["edgea"].log().count("path.change") == changes:
                assert time.monotonic() < deadline, "no failover"
                time.sleep(0.05)
            answer = b""
            for _ in range(5):  # the reset may race the first datagram after the change: UDP retries
                sock.send(b"after the cut")
                try:
                    answer = sock.recv(100)
                    break
                except TimeoutError:
                    continue
            assert answer == b"after the cut"
        finally:
            _repair(seed)
    # Edge A reset the stream it spliced over the private path; the next one went over the public path.
    assert _wait_flow(seed, "edgea", proto="udp", role="relay", path="private", outcome="aborted", sport=sport) is not None
    assert _wait_flow(seed, "edgea", timeout=10, proto="udp", role="relay", path="public", sport=sport) is not None


def test_reload_replaces_and_removes_the_icmp_objects(seed: Seed000, echoes: dict[int, UdpEcho]) -> None:
    conn = seed.ns("conn")
    original = seed.read_config("conn")
    wider = json.loads(json.dumps(original))
    wider["peers"][0]["cidrs"].append("192.0.2.0/24")
    _reload(seed, "conn", wider)
    assert "from 10.30.40.0/24 to 192.0.2.0/24 ipproto icmp lookup 4644" in conn.ip_rules()
    assert _ping(seed, "awsapp", AZ_APP).returncode == 0
    # No remote CIDRs left: the connector intercepts nothing, and every object it made for that is gone.
    alone = json.loads(json.dumps(original))
    alone["peers"][0]["cidrs"] = []
    _reload(seed, "conn", alone)
    assert "ipproto icmp" not in conn.ip_rules()
    assert "transit-icmp" not in conn.exec("ip", "link").stdout
    assert conn.exec("ip", "route", "show", "table", "4644", check=False).stdout.strip() == ""
    assert conn.nft_tables() == []
    _reload(seed, "conn", original)
    assert "from 10.30.40.0/24 to 172.18.40.0/24 ipproto icmp lookup 4644" in conn.ip_rules()
    assert "192.0.2.0/24" not in conn.ip_rules()
    assert _ping(seed, "awsapp", AZ_APP).returncode == 0
    assert _udp_exchange(seed, [b"after reloads"]) == [b"after reloads"]


def _icmp_rule_lines(space: Netns) -> list[str]:
    return sorted(line.split(":", 1)[1].strip() for line in space.ip_rules().splitlines() if "ipproto icmp" in line)


def test_icmp_rules_are_exactly_the_plans_after_a_cidr_change() -> None:
    """The netlink rule helpers in a namespace of their own (a veth stands in for the TUN): add, move, remove."""
    def plan(local: list[str], remote: list[str]) -> IcmpPlan:
        return IcmpPlan("tx-icmp", 4644, 4644, tuple(map(IPv4Network, local)), tuple(map(IPv4Network, remote)))

    with Lab(tag="icr") as lab:
        space = lab.ns("r")
        space.exec("ip", "link", "add", "tx-icmp", "type", "veth", "peer", "name", "tx-peer")
        space.exec("ip", "rule", "add", "from", "10.9.9.0/24", "lookup", "4644", "priority", "4644")  # not ours: stays
        first = plan(["10.30.40.0/24"], ["172.18.40.0/24", "192.0.2.0/24"])
        install_rules(first, netns=space.name)
        install_rules(first, netns=space.name)  # idempotent: nothing doubled
        assert _icmp_rule_lines(space) == [
            "from 10.30.40.0/24 to 172.18.40.0/24 ipproto icmp lookup 4644",
            "from 10.30.40.0/24 to 192.0.2.0/24 ipproto icmp lookup 4644",
        ]
        assert "default dev tx-icmp" in space.exec("ip", "route", "show", "table", "4644").stdout
        # A reload that drops a remote CIDR, keeps one and adds a local CIDR.
        second = plan(["10.30.40.0/24", "10.30.41.0/24"], ["172.18.40.0/24"])
        assert update_rules(first, second, netns=space.name) == []
        assert installed_rules(second, netns=space.name) == set(second.pairs())
        assert _icmp_rule_lines(space) == [
            "from 10.30.40.0/24 to 172.18.40.0/24 ipproto icmp lookup 4644",
            "from 10.30.41.0/24 to 172.18.40.0/24 ipproto icmp lookup 4644",
        ]
        remove_rules(second, netns=space.name)
        remove_rules(second, netns=space.name)  # what is gone stays gone, without an error
        assert _icmp_rule_lines(space) == []
        assert "from 10.9.9.0/24 lookup 4644" in space.ip_rules()
        assert space.exec("ip", "route", "show", "table", "4644").stdout.strip() == ""


def test_without_the_agent_nothing_passes(seed: Seed000, echoes: dict[int, UdpEcho]) -> None:
    """The permits above come from the agents, not from plain routing: stop the connector's and they stop."""
    conn = seed.agents["conn"]
    conn.signal(15)
    assert conn.proc is not None
    conn.proc.wait(timeout=15)
    try:
        assert "transit-icmp" not in seed.ns("conn").exec("ip", "link").stdout
        assert seed.ns("conn").nft_tables() == []
        assert "ipproto icmp" not in seed.ns("conn").ip_rules()
        assert _ping(seed, "awsapp", AZ_APP).returncode != 0
        assert _udp_exchange(seed, [b"nobody carries this"], timeout=1.0) == []
    finally:
        seed.start_agent("conn")
        seed.wait_ready("conn")
    assert _udp_exchange(seed, [b"back"]) == [b"back"]
    assert _ping(seed, "awsapp", AZ_APP).returncode == 0


def test_hop_by_hop_mode_carries_udp_and_ping_too() -> None:
    """With `end_to_end: false` edge A decrypts and re-encrypts the datagram stream (a plain relay Pump)."""
    overrides = {node: {"end_to_end": False} for node in ("conn", "edgea", "edgeb")}
    with Seed000(policy=json.loads(json.dumps(POLICY)), overrides=overrides, tag="dgh") as seed:
        server = UdpEcho(seed.ns("azapp"), 5001)
        try:
            payloads = [b"hop", bytes(range(256)) * 100]
            assert _udp_exchange(seed, payloads) == payloads
            assert server.peers[-1][0] == AWS_APP
            assert _ping(seed, "awsapp", AZ_APP, count=2).returncode == 0
        finally:
            server.close()
