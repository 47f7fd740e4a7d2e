"""Start, reload and stop: bad configs are refused with the field path, SIGHUP applies good ones, SIGTERM leaves nothing behind."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import AppServer, echo
from testbed.seed000 import AGENT, AZ_APP, Seed000

pytestmark = pytest.mark.integration


@pytest.fixture
def seed() -> Iterator[Seed000]:
    with Seed000(tag="lif") as topology:
        yield topology


def _attempt(seed: Seed000, port: int) -> str:
    sock = seed.ns("awsapp").socket()
    sock.settimeout(5)
    try:
        with sock:
            sock.connect((AZ_APP, port))
            sock.sendall(b"hi")
            return "ok" if sock.recv(2) == b"hi" else "closed"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return type(exc).__name__


def test_bad_config_at_start_exits_with_the_field_path(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"name": "n1", "role": "edge", "identity": "spiffe://acme/n1", "tls": {"ca": "a", "cert": "b", "key": "c"},
                                "peers": [{"name": "p", "identity": "spiffe://acme/p", "private_addr": "300.1.1.1"}]}))
    done = subprocess.run([*AGENT, "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "config.invalid problem=\"peers[0].private_addr:" in done.stderr


def test_check_flag_validates_without_starting(seed: Seed000) -> None:
    done = subprocess.run([*AGENT, "--config", str(seed.agents["conn"].config_path), "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "config.valid node=conn" in done.stderr


def test_reload_refuses_bad_config_and_applies_good_one(seed: Seed000) -> None:
    server = AppServer(seed.ns("azapp"), 8000, echo)
    try:
        assert _attempt(seed, 8000) == "ok"
        conn = seed.agents["conn"]
        good = seed.read_config("conn")

        # A broken document: refused, and the running agent keeps forwarding.
        conn.config_path.write_text(json.dumps({**good, "peers": [{**good["peers"][0], "private_addr": "nope"}]}))
        conn.signal(signal.SIGHUP)
        assert conn.wait_for("agent.reload_refused reason=config")
        assert "peers[0].private_addr" in conn.log()
        assert _attempt(seed, 8000) == "ok"

        # A good document that denies 8000 first: applied at once, in the kernel table too.
        policy = json.loads(json.dumps(good["filter"]))
        policy["rules"].insert(0, {"name": "close-8000", "action": "deny", "proto": "tcp", "ports": [8000]})
        seed.write_config("conn", {**good, "filter": policy})
        conn.signal(signal.SIGHUP)
        assert conn.wait_for("agent.reloaded")
        assert _attempt(seed, 8000) == "refused"
        assert conn.proc is not None and conn.proc.poll() is None
    finally:
        server.close()


def test_sigterm_drains_and_leaves_no_kernel_state(seed: Seed000) -> None:
    conn = seed.ns("conn")
    before_rules = conn.ip_rules()
    assert "transit_intercept" in conn.nft_tables() and "transit_filter" in conn.nft_tables()
    assert "lookup 4643" in before_rules
    assert conn.exec("sysctl", "-n", "net.ipv4.tcp_slow_start_after_idle").stdout.strip() == "0"
    for node in ("conn", "edgea", "edgeb"):
        agent = seed.agents[node]
        agent.signal(signal.SIGTERM)
        assert agent.proc is not None and agent.proc.wait(timeout=15) == 0
        assert "agent.stop" in agent.log()
        space = seed.ns(node)
        assert [t for t in space.nft_tables() if t.startswith("transit_")] == []
        assert "lookup 4643" not in space.ip_rules()
        assert space.exec("ip", "route", "show", "table", "4643", check=False).stdout.strip() == ""
        assert space.exec("sysctl", "-n", "net.ipv4.tcp_slow_start_after_idle").stdout.strip() == "1"
        listening = space.exec("ss", "-Hltnu").stdout
        assert ":7443" not in listening and ":7444" not in listening and ":9464" not in listening


def test_sigterm_waits_for_streams_to_finish(seed: Seed000) -> None:
    """A stream open at SIGTERM keeps working through the drain window, then the agent exits."""
    server = AppServer(seed.ns("azapp"), 5432, echo)
    try:
        sock = seed.ns("awsapp").socket()
        sock.settimeout(5)
        sock.connect((AZ_APP, 5432))
        sock.sendall(b"a")
        assert sock.recv(1) == b"a"
        conn = seed.agents["conn"]
        conn.signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(b"b")
        assert sock.recv(1) == b"b"  # still served while draining
        sock.close()
        assert conn.proc is not None and conn.proc.wait(timeout=10) == 0
        assert "agent.stop node=conn reset_streams=0" in conn.log()
    finally:
        server.close()


def test_sysctls_apply_and_restore_in_a_named_namespace() -> None:
    from dataplane import sysctl
    from testbed.netns import Lab

    with Lab("sys") as lab:
        space = lab.ns("a")
        before = sysctl.read("net.ipv4.tcp_slow_start_after_idle", netns=space.name)
        own = sysctl.read("net.ipv4.tcp_slow_start_after_idle")
        wanted = "0" if before != "0" else "1"
        previous = sysctl.apply({"net.ipv4.tcp_slow_start_after_idle": (wanted, "test")}, netns=space.name)
        assert sysctl.read("net.ipv4.tcp_slow_start_after_idle", netns=space.name) == wanted
        assert sysctl.read("net.ipv4.tcp_slow_start_after_idle") == own  # the test's own namespace is untouched
        sysctl.restore(previous, netns=space.name)
        assert sysctl.read("net.ipv4.tcp_slow_start_after_idle", netns=space.name) == before
