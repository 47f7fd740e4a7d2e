"""The local dynamic providers, driven directly (create/read/diff/delete) on real namespaces.

Each test builds a tiny fabric with a unique name prefix and removes it in a
finally block, then checks nothing of it is left on the machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.local import frr_config, sh
from components.local.daemon_provider import RUN_ROOT, DaemonProvider
from components.local.frr_provider import ETC_ROOT, FrrRouterProvider
from components.local.frr_provider import RUN_ROOT as FRR_RUN_ROOT
from components.local.link_provider import VethLinkProvider
from components.local.netns_provider import NamespaceProvider
from components.local.routes_provider import RoutesProvider

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> Iterator[str]:
    """A unique name prefix; afterwards no namespace, FRR dir or daemon dir may carry it."""
    value = f"tlp{uuid.uuid4().hex[:6]}"
    yield value
    leftovers = [p for root in (Path("/run/netns"), ETC_ROOT, FRR_RUN_ROOT, RUN_ROOT) if root.exists()
                 for p in root.iterdir() if p.name.startswith(value)]
    for path in leftovers:  # clean up before failing, so a failure never leaks
        if path.parent == Path("/run/netns"):
            sh.run(["ip", "netns", "del", path.name], check=False)
        else:
            subprocess.run(["rm", "-rf", str(path)], check=False)
    assert not leftovers, f"left behind: {leftovers}"


def _answers(ns: str, address: str) -> bool:
    """True when a TCP SYN to `address` gets an answer (a RST counts: the host is reachable)."""
    probe = (f"import socket\ntry:\n socket.create_connection(('{address}', 9), 1)\n"
             "except ConnectionRefusedError:\n pass")
    return sh.ns_run(ns, ["python3", "-c", probe], check=False).returncode == 0


def _as_engine_sends(outs: dict) -> dict:
    """Outputs as the engine hands them back (protobuf Struct: every number is a float)."""
    return json.loads(json.dumps(outs), parse_int=float)


def _namespace(name: str, bridge: dict[str, str] | None = None) -> dict:
    return NamespaceProvider().create({"name": name, "bridge": bridge}).outs


def test_namespace_lifecycle_and_drift(prefix: str) -> None:
    provider = NamespaceProvider()
    ns = f"{prefix}-a"
    outs = provider.create({"name": ns, "bridge": {"name": "br0", "address": "10.9.0.1/24"}}).outs
    try:
        assert sh.netns_exists(ns) and sh.link_exists(ns, "br0")
        assert sh.ns_run(ns, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
        assert provider.read(ns, outs).id == ns
        assert not provider.diff(ns, outs, dict(outs)).changes
        sh.run(["ip", "netns", "del", ns])  # someone removes it behind Pulumi's back
        assert provider.read(ns, outs).id == ""  # refresh sees it gone
        assert provider.diff(ns, outs, dict(outs)).changes  # and up would recreate it
    finally:
        provider.delete(ns, outs)
        provider.delete(ns, outs)  # idempotent


def test_shaped_link_carries_traffic_and_routes(prefix: str) -> None:
    a, b = f"{prefix}-a", f"{prefix}-b"
    ns_outs = [_namespace(a), _namespace(b)]
    links, routes = VethLinkProvider(), RoutesProvider()
    props = {"ns_a": a, "if_a": "ckt0", "addr_a": "10.0.0.0/31", "master_a": None,
             "ns_b": b, "if_b": "ckt0", "addr_b": "10.0.0.1/31", "master_b": None, "rate_mbps": 50}
    link = links.create(props)
    try:
        assert link.id == f"{a}/ckt0"
        qdisc = sh.run(["tc", "-n", a, "qdisc", "show", "dev", "ckt0"]).stdout
        assert "tbf" in qdisc and "50Mbit" in qdisc
        assert _answers(a, "10.0.0.1")
        route = routes.create({"ns": b, "routes": [{"dst": "10.77.0.0/16", "via": "10.0.0.0"}]})
        assert routes.read(route.id, route.outs).id == route.id
        routes.delete(route.id, route.outs)
        assert routes.read(route.id, route.outs).id == ""
        assert links.read(link.id, link.outs).id == link.id
        links.delete(link.id, link.outs)
        assert links.read(link.id, link.outs).id == ""
        links.delete(link.id, link.outs)  # idempotent
        links.create(props)  # and a re-run after an interrupted one works
    finally:
        for outs in ns_outs:
            NamespaceProvider().delete(outs["name"], outs)


def test_frr_routers_peer_with_md5_and_learn_routes(prefix: str) -> None:
    a, b = f"{prefix}-a", f"{prefix}-b"
    ns_outs = [_namespace(a), _namespace(b)]
    VethLinkProvider().create({"ns_a": a, "if_a": "ckt0", "addr_a": "10.0.0.0/31", "master_a": None,
                               "ns_b": b, "if_b": "ckt0", "addr_b": "10.0.0.1/31", "master_b": None,
                               "rate_mbps": None})
    routers = []
    try:
        for ns, asn, me, peer, peer_asn, prefix_net in (
            (a, 65000, "10.0.0.0", "10.0.0.1", 64512, "10.61.0.0/16"),
            (b, 64512, "10.0.0.1", "10.0.0.0", 65000, "10.62.0.0/16"),
        ):
            cfg = frr_config.RouterConfig(
                name=ns, asn=asn, router_id=me, networks=[prefix_net],
                neighbors=[frr_config.BgpNeighbor(address=peer, remote_asn=peer_asn, description="t",
                                                  md5_secret="testMd5")])
            props = {"name": ns, "ns": ns, "config": frr_config.render(cfg), "secrets": {"testMd5": "s3cr3t-k3y"}}
            routers.append((FrrRouterProvider().create(props)))
        conf = (ETC_ROOT / a / "frr.conf").read_text()
        assert "password s3cr3t-k3y" in conf and oct((ETC_ROOT / a / "frr.conf").stat().st_mode)[-3:] == "640"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            summary = json.loads(sh.ns_run(a, ["vtysh", "-N", a, "-c", "show bgp summary json"]).stdout)
            peer = summary["ipv4Unicast"]["peers"]["10.0.0.1"]
            installed = "10.62.0.0/16" in sh.ip(a, "route", "show").stdout  # zebra installs a received route a moment later
            if peer["state"] == "Established" and peer.get("pfxRcd", 0) >= 1 and installed:
                break
            time.sleep(0.5)
        assert peer["state"] == "Established", peer
        assert installed, sh.ip(a, "route", "show").stdout  # the learnt route reached the kernel
        router = routers[0]
        provider = FrrRouterProvider()
        assert provider.read(router.id, router.outs).id == a
        assert not provider.diff(router.id, _as_engine_sends(router.outs), dict(router.outs)).changes
        os.kill(router.outs["pids"]["bgpd"], 9)
        time.sleep(0.2)
        assert provider.read(router.id, router.outs).id == ""
        assert provider.diff(router.id, router.outs, dict(router.outs)).changes
    finally:
        for router in routers:
            FrrRouterProvider().delete(router.id, router.outs)
        for outs in ns_outs:
            NamespaceProvider().delete(outs["name"], outs)


def test_daemon_lifecycle(prefix: str) -> None:
    ns = f"{prefix}-a"
    ns_out = _namespace(ns)
    provider = DaemonProvider()
    props = {"name": f"{prefix}-web", "ns": ns, "argv": ["python3", "-m", "http.server", "--bind", "127.0.0.1",
                                                          "--directory", "{dir}/www", "8080"],
             "files": {"www/index.html": "hello"}, "secret_files": {"key.pem": "SECRET"}, "env": {},
             "ready_port": 8080, "ready_timeout": 10}
    result = provider.create(props)
    try:
        base = Path(result.outs["dir"])
        assert oct((base / "key.pem").stat().st_mode)[-3:] == "600"
        body = sh.ns_run(ns, ["curl", "-s", "http://127.0.0.1:8080/"]).stdout
        assert body == "hello"
        assert provider.read(result.id, result.outs).id == result.id
        assert not provider.diff(result.id, _as_engine_sends(result.outs), {**props}).changes
        changed = provider.diff(result.id, result.outs, {**props, "argv": props["argv"][:-1] + ["8081"]})
        assert changed.replaces == ["argv"] and changed.delete_before_replace
        sh.run(["ip", "netns", "del", ns])  # the process lives on in a namespace nobody can name
        sh.run(["ip", "netns", "add", ns])
        assert provider.read(result.id, result.outs).id == ""
        os.killpg(result.outs["pid"], 9)
        time.sleep(0.2)
        assert provider.read(result.id, result.outs).id == ""
        provider.delete(result.id, result.outs)
        assert not base.exists()
        provider.delete(result.id, result.outs)  # idempotent
    finally:
        provider.delete(result.id, result.outs)
        NamespaceProvider().delete(ns, ns_out)


def test_daemon_that_fails_reports_its_log(prefix: str) -> None:
    ns = f"{prefix}-a"
    ns_out = _namespace(ns)
    props = {"name": f"{prefix}-bad", "ns": ns, "argv": ["sh", "-c", "echo broken config >&2; exit 3"],
             "files": {}, "secret_files": {}, "env": {}, "ready_port": None, "ready_timeout": 5}
    try:
        with pytest.raises(RuntimeError, match="broken config"):
            DaemonProvider().create(props)
    finally:
        DaemonProvider().delete(props["name"], props)
        NamespaceProvider().delete(ns, ns_out)


def test_shaped_link_limits_throughput_to_the_circuit_bandwidth(prefix: str) -> None:
    """A circuit of 20 Mbit/s carries TCP at about that rate, not at veth speed (~10 Gbit/s)."""
    a, b = f"{prefix}-a", f"{prefix}-b"
    ns_outs = [_namespace(a), _namespace(b)]
    VethLinkProvider().create({"ns_a": a, "if_a": "ckt0", "addr_a": "10.0.0.12/30", "master_a": None,
                               "ns_b": b, "if_b": "ckt0", "addr_b": "10.0.0.13/30", "master_b": None,
                               "rate_mbps": 20})
    sink = subprocess.Popen(["ip", "netns", "exec", b, "python3", "-c",
                             "import socket\ns=socket.create_server(('10.0.0.13',5001))\nc,_=s.accept()\n"
                             "while c.recv(1<<16): pass\n"])
    try:
        send = ("import socket,sys,time\n"
                "for _ in range(50):\n"
                " try: c=socket.create_connection(('10.0.0.13',5001)); break\n"
                " except OSError: time.sleep(0.05)\n"
                "buf=b'x'*65536; n=0; t=time.monotonic()\n"
                "while n < 5_000_000: c.sendall(buf); n+=len(buf)\n"
                "c.shutdown(socket.SHUT_WR); c.recv(1); print(n*8/(time.monotonic()-t)/1e6)\n")
        mbps = float(sh.ns_run(a, ["python3", "-c", send], timeout=30).stdout)
        print(f"circuit 20 Mbit/s carried {mbps:.1f} Mbit/s")
        assert 10 < mbps < 24, f"{mbps:.1f} Mbit/s over a 20 Mbit/s circuit"
    finally:
        sink.kill()
        sink.wait()
        for outs in ns_outs:
            NamespaceProvider().delete(outs["name"], outs)
