"""Boot the data-center image built by `make image` under qemu and use it as a router.

What this proves, on the QCOW2 itself (a throwaway overlay, the image is not
changed): the image boots (GRUB, kernel, systemd) under qemu, KVM when a KVM
guest runs here, plain emulation otherwise; transit-boot finds the config drive by its label, validates the boot
document and installs the AgentConfig and the TLS files from it; transit-agent
starts on them and answers /healthz on the address the config names, reporting
the node name from the drive and the repository's version (the image's agent
is this repository's wheel); the image's sysctls make it forward, so a TCP
connection between two namespaces, each holding one of the VM's NICs on a tap,
goes through the VM and carries data both ways. A second boot with a refused
config shows the reason on the console and the agent never listens.

Not proven here: ExaBGP against a real router (components/local does that in
namespaces), the cloud sources (tests/unit/boot serve their protocols).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from dataplane.pki import create_ca, issue
from testbed.netns import Lab, Netns, run
from transit_cli.status import in_netns

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = ROOT / "build" / "image" / f"transit-{VERSION}.qcow2"
NODE = "connector-dc-test"
VM_A, VM_B = "10.81.1.10", "10.81.2.10"
HOST_A, HOST_B = "10.81.1.1", "10.81.2.1"


def _accelerator() -> str:
    """kvm when a KVM guest really runs this image's boot loader here, else tcg (plain emulation).

    Opening /dev/kvm is not enough: under some nested hypervisors SeaBIOS runs
    but GRUB never prints. So boot the image with KVM for up to 20 s and wait
    for GRUB on the serial console.
    """
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return "tcg"
    with tempfile.TemporaryDirectory() as tmp:
        serial = Path(tmp) / "serial"
        probe = subprocess.Popen(
            ["qemu-system-x86_64", "-machine", "pc,accel=kvm", "-m", "512", "-display", "none", "-monitor", "none",
             "-serial", f"file:{serial}", "-drive", f"file={IMAGE},if=virtio,format=qcow2,snapshot=on"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and probe.poll() is None:
                if serial.exists() and serial.stat().st_size > 0:
                    return "kvm"
                time.sleep(0.5)
            return "tcg"
        finally:
            probe.kill()
            probe.wait()


def _document(agent_changes: dict[str, object] | None = None) -> dict[str, object]:
    agent: dict[str, object] = {
        "name": NODE, "role": "connector", "identity": f"spiffe://acme/{NODE}",
        "listen": {"metrics": {"host": "0.0.0.0", "port": 9464}},
        "local_cidrs": ["10.81.1.0/24"],
        "tls": {"ca": "/etc/transit/tls/ca.pem", "cert": "/etc/transit/tls/node.pem", "key": "/etc/transit/tls/node.key"},
    }
    agent.update(agent_changes or {})
    return {"contract": 1, "agent": agent, "secrets": {"store": "config-drive"}}


def _config_drive(tmp: Path, document: dict[str, object]) -> Path:
    """An ISO 9660 volume labelled TRANSIT with boot.json and the node's TLS files."""
    files = tmp / "drive"
    files.mkdir()
    ca = create_ca("acme")
    node = issue(ca, f"spiffe://acme/{NODE}")
    (files / "boot.json").write_text(json.dumps(document))
    (files / "ca").write_bytes(ca.cert_pem)
    (files / "cert").write_bytes(node.cert_pem)
    (files / "key").write_bytes(node.key_pem)
    iso = tmp / "drive.iso"
    run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "TRANSIT", "-r", "-J", "-o", str(iso), str(files)])
    return iso


class Vm:
    """qemu on an overlay of the image, two NICs on taps moved into the two namespaces, serial to a file."""

    def __init__(self, tmp: Path, lab: Lab, drive: Path, a: Netns, b: Netns, accel: str) -> None:
        self.serial = tmp / "serial.log"
        overlay = tmp / "overlay.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(IMAGE), str(overlay)])
        # (namespace, tap, its address there, the VM's address on that side, the VM NIC's MAC)
        sides = [(a, f"{lab.prefix}a", HOST_A, VM_A, "52:54:00:81:01:10"), (b, f"{lab.prefix}b", HOST_B, VM_B, "52:54:00:81:02:10")]
        nics: list[str] = []
        for index, (_, tap, _, _, mac) in enumerate(sides):
            run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
            nics += ["-netdev", f"tap,id=n{index},ifname={tap},script=no,downscript=no", "-device", f"virtio-net-pci,netdev=n{index},mac={mac}"]
        self.proc = subprocess.Popen(
            ["qemu-system-x86_64", "-machine", f"pc,accel={accel}", "-m", "1024", "-smp", "1", "-display", "none",
             "-monitor", "none", "-serial", f"file:{self.serial}",
             "-drive", f"file={overlay},if=virtio,format=qcow2", "-drive", f"file={drive},media=cdrom,readonly=on", *nics],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        lab.processes.append(self.proc)
        time.sleep(1)  # qemu has attached the taps once it runs; they keep the attachment when moved
        for index, (space, tap, host, vm_addr, mac) in enumerate(sides):
            run(["ip", "link", "set", tap, "netns", space.name])
            space.exec("ip", "addr", "add", f"{host}/24", "dev", tap)
            space.exec("ip", "link", "set", tap, "up")
            # The VM's address on this side, by DHCP (the image asks on every NIC), no default route.
            space.spawn("dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--user=root", "--pid-file=", "--port=0",
                        f"--interface={tap}", "--bind-interfaces",
                        f"--dhcp-range={vm_addr},{vm_addr},255.255.255.0,1h", f"--dhcp-host={mac},{vm_addr}",
                        "--dhcp-option=3", "--dhcp-option=6", f"--dhcp-leasefile={tmp}/leases-{index}",
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        a.exec("ip", "route", "add", "10.81.2.0/24", "via", VM_A)
        b.exec("ip", "route", "add", "10.81.1.0/24", "via", VM_B)

    def console(self) -> str:
        return self.serial.read_text(errors="replace") if self.serial.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None


def _healthz(space: Netns) -> dict[str, object] | None:
    def get() -> dict[str, object] | None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://{VM_A}:9464/healthz", timeout=3) as answer:
                return json.loads(answer.read())
        except OSError:
            return None

    return in_netns(space.name, get)


def _wait_health(vm: Vm, a: Netns, timeout: float) -> dict[str, object] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and vm.alive():
        health = _healthz(a)
        if health is not None:
            return health
        time.sleep(2)
    return None


def _tcp_through(a: Netns, b: Netns) -> bytes:
    server = b.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((HOST_B, 8080))
    server.listen(1)
    server.settimeout(20)
    client = a.socket()
    client.settimeout(20)
    client.connect((HOST_B, 8080))
    conn, peer = server.accept()
    assert peer[0] == HOST_A  # routed, not proxied: the server sees the client's own address
    client.sendall(b"ping through the image")
    conn.sendall(conn.recv(100).upper())
    reply = client.recv(100)
    for s in (client, conn, server):
        s.close()
    return reply


@pytest.fixture(scope="module")
def accel() -> str:
    if not IMAGE.exists():
        pytest.fail(f"{IMAGE.relative_to(ROOT)} is missing: run `make image` first")
    chosen = _accelerator()
    print(f"\nqemu accelerator: {chosen}")
    return chosen


def _boot_timeout(accel: str) -> float:
    return 240 if accel == "kvm" else 900


def test_the_image_boots_from_a_config_drive_answers_health_and_routes_tcp(accel: str, tmp_path: Path) -> None:
    with Lab(tag="img") as lab:
        a, b = lab.ns("a"), lab.ns("b")
        vm = Vm(tmp_path, lab, _config_drive(tmp_path, _document()), a, b, accel)
        health = _wait_health(vm, a, _boot_timeout(accel))
        assert health is not None, f"transit-agent never answered on {VM_A}:9464; console tail:\n{vm.console()[-3000:]}"
        assert health["version"] == VERSION
        assert health["node"] == NODE and health["role"] == "connector"
        assert _tcp_through(a, b) == b"PING THROUGH THE IMAGE"


def test_a_refused_config_fails_the_boot_unit_with_the_reason_and_the_agent_never_starts(accel: str, tmp_path: Path) -> None:
    bad = _document({"local_cidrs": ["10.81.1.0/33"]})
    with Lab(tag="img") as lab:
        a, b = lab.ns("a"), lab.ns("b")
        vm = Vm(tmp_path, lab, _config_drive(tmp_path, bad), a, b, accel)
        deadline = time.monotonic() + _boot_timeout(accel)
        while time.monotonic() < deadline and "agent.local_cidrs[0]" not in vm.console():
            time.sleep(2)
        console = vm.console()
        assert "refused the boot document from drive" in console and "agent.local_cidrs[0]" in console, console[-3000:]
        assert _wait_health(vm, a, 20) is None
