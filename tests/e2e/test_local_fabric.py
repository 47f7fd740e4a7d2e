"""`pulumi up` of the local target with the real CLI, on seed 000's and seed 004's fabrics.

One test per fabric walks the whole lifecycle on a fresh stack: up; every
policy test's flow (tcp, udp and icmp) gives the policy's verdict with real
traffic; BGP sessions come up and each side of the cloud router learns the
other's prefixes; a second up changes nothing; with an edge agent stopped
no permitted flow gets an answer (the agents carry them, not plain routing);
refresh notices the dead agent and up brings it back; the MD5
keys and private keys never appear in state or outputs; destroy leaves no
namespace, process, FRR or daemon file behind.
"""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.local.scratch_stack import ScratchStack
from transit_cli.local_check import find_local_outputs, learned_routes, read_sessions, send_flow

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
FABRICS = REPO / "stacks" / "fabrics"

def _leftovers(prefix: str) -> list[str]:
    """Anything on this machine that still carries the stack's name prefix."""
    found = [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(prefix)] if os.path.isdir("/run/netns") else []
    for root in ("/run/transit", "/etc/frr", "/var/run/frr"):
        if os.path.isdir(root):
            found += [f"{root}/{n}" for n in os.listdir(root) if n.startswith(prefix)]
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found += [f"process {line.strip()}" for line in ps.splitlines() if prefix in line and "pytest" not in line]
    for proc in Path("/proc").glob("[0-9]*"):  # app servers name no prefix, but run in their daemon dir
        try:
            if os.readlink(proc / "cwd").startswith(f"/run/transit/{prefix}"):
                found.append(f"process {proc.name} in {os.readlink(proc / 'cwd')}")
        except OSError:
            continue
    return found


@pytest.fixture
def make_stack(tmp_path: Path, pulumi_env: dict[str, str]) -> Iterator:
    """A scratch stack for a fabric file with random MD5 keys; always destroyed and removed."""
    created: list[ScratchStack] = []

    def make(fabric_file: str) -> ScratchStack:
        stack = ScratchStack(tmp_path / "project", pulumi_env)
        created.append(stack)
        stack.create(FABRICS / fabric_file)
        return stack

    yield make
    swept = [path for stack in created for path in stack.remove()]
    assert swept == [], f"destroy left these behind (now removed): {swept}"


def _wait_established(routers: list[dict], timeout: float = 40) -> list:
    deadline = time.monotonic() + timeout
    while True:
        sessions = [s for r in routers for s in read_sessions(r)]
        if all(s.ok and s.prefixes_received > 0 for s in sessions) or time.monotonic() > deadline:
            return sessions
        time.sleep(1)


def _check_flows(local: dict) -> None:
    """Every policy test of the fabric, whatever its protocol, sent for real: the verdict the policy says."""
    results = [send_flow(flow) for flow in local["flows"]]
    assert len(results) == len(local["flows"]) > 0
    assert [(r.test, r.proto, r.observed) for r in results] == [(r.test, r.proto, r.expect) for r in results]


def _check_nothing_passes_without(local: dict) -> None:
    """With an agent on every path stopped, no permitted flow is answered: permits come from the agents."""
    permitted = [flow for flow in local["flows"] if flow["expect"] == "permit"]
    assert permitted
    results = [send_flow(flow, timeout=1.5) for flow in permitted]
    assert [(r.test, r.proto, r.observed) for r in results] == [(r.test, r.proto, "deny") for r in results]


def _check_dc_traffic_reaches_its_connector(local: dict) -> None:
    """A DC host's flow follows the route the DC router learned from ExaBGP to the connector,
    whose agent refuses it (no rule permits dc-fra) and logs it: the BGP route carries traffic."""
    dc_host = next(h for h in local["hosts"] if h["network"] == "dc-fra")
    flow = {"test": "dc", "src_ns": dc_host["ns"], "src": dc_host["address"], "dst": "172.18.40.10",
            "port": 5432, "expect": "deny"}
    assert send_flow(flow).observed == "deny"
    log = Path("/run/transit") / f"{local['prefix']}-agent-connector-dc-fra" / "flows.jsonl"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and dc_host["address"] not in (log.read_text() if log.exists() else ""):
        time.sleep(0.2)
    assert f'"src":"{dc_host["address"]}"' in log.read_text().replace(" ", "")


def _assert_no_secrets(stack: ScratchStack, secrets: dict[str, str]) -> None:
    exported = stack.pulumi("stack", "export").stdout
    outputs = stack.pulumi("stack", "output", "--json").stdout
    state_files = "".join(p.read_text() for p in Path(stack.env["PULUMI_BACKEND_URL"].removeprefix("file://")).rglob("*.json"))
    for text in (exported, outputs, state_files):
        for value in secrets.values():
            assert value not in text
        assert "PRIVATE KEY" not in text


@pytest.mark.parametrize(
    ("fabric_file", "learns"),
    [
        ("seed000_aws_azure.yaml", {}),
        # seed 004's route tables: the AWS side sees the Azure VNet and the other way round
        ("seed004_dx_er_cloud_router.yaml", {"g-fra-dx": "10.6.0.0/16", "g-fra-er": "172.31.0.0/16"}),
        # both seeds in one fabric, plus the data center whose router learns cloud CIDRs from ExaBGP
        ("architecture_example.yaml", {"g-fra-dx": "172.18.40.0/24", "g-fra-er": "10.30.40.0/24",
                                       "n-dc-fra": "172.18.40.0/24"}),
    ],
)
def test_local_fabric_lifecycle(make_stack, fabric_file: str, learns: dict[str, str]) -> None:
    stack = make_stack(fabric_file)
    stack.pulumi("up", "--yes", "--skip-preview")
    local = find_local_outputs(stack.outputs())
    assert local is not None
    prefix = local["prefix"]
    assert all(ns.startswith(prefix) for ns in local["namespaces"].values())

    _check_flows(local)
    sessions = _wait_established(local["routers"])
    assert all(s.ok for s in sessions), sessions
    routers = {r["name"].removeprefix(f"{prefix}-"): r for r in local["routers"]}
    for router, prefix_learned in learns.items():
        assert prefix_learned in learned_routes(routers[router])

    if "n-dc-fra" in routers:
        _check_dc_traffic_reaches_its_connector(local)

    # the backbone and the internet are separate links: cutting the private path keeps flows going
    backbone = next(link for link in local["links"] if link["kind"] == "backbone" and "-e-" in link["ns_b"]
                    and "-e-" in link["ns_a"])
    subprocess.run(["ip", "-n", backbone["ns_a"], "link", "set", backbone["if_a"], "down"], check=True)
    try:
        time.sleep(1.5)
        _check_flows(local)
    finally:
        subprocess.run(["ip", "-n", backbone["ns_a"], "link", "set", backbone["if_a"], "up"], check=True)

    again = stack.pulumi("up", "--yes", "--skip-preview", "--expect-no-changes")
    assert "unchanged" in again.stdout

    # Every flow of these fabrics crosses both edges: stop one edge's agent (it removes its kernel state)
    # and nothing permitted gets through, by any protocol.
    agent_dir = next(Path("/run/transit").glob(f"{prefix}-agent-edge-*"))
    pid = int((agent_dir / "pid").read_text())
    os.killpg(pid, 15)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    _check_nothing_passes_without(local)
    refreshed = stack.pulumi("refresh", "--yes", "--skip-preview")
    assert "deleted" in refreshed.stdout
    stack.pulumi("up", "--yes", "--skip-preview")
    _check_flows(local)

    _assert_no_secrets(stack, stack.secrets)
    stack.pulumi("destroy", "--yes", "--skip-preview")
    assert _leftovers(prefix) == []


def test_failed_up_can_be_rerun(make_stack) -> None:
    """An up that fails half way (one agent cannot start) is finished by the next up."""
    from components import load_spec
    from components.local.layout import name_prefix

    fabric_file = "seed000_aws_azure.yaml"
    stack = make_stack(fabric_file)
    prefix = name_prefix(load_spec(FABRICS / fabric_file).name, stack.name)
    blocker = Path("/run/transit") / f"{prefix}-agent-edge-az-weu"  # a file where the agent's directory goes
    blocker.parent.mkdir(exist_ok=True)
    blocker.write_text("in the way")
    try:
        failed = stack.pulumi("up", "--yes", "--skip-preview", check=False)
        assert failed.returncode != 0
        assert "created" in failed.stdout  # other resources were made and recorded
    finally:
        blocker.unlink()
    stack.pulumi("up", "--yes", "--skip-preview")
    _check_flows(find_local_outputs(stack.outputs()))
    stack.pulumi("destroy", "--yes", "--skip-preview")
    assert _leftovers(prefix) == []


def test_up_rebuilds_a_fabric_lost_to_a_reboot(make_stack) -> None:
    """After a reboot (no namespace, process or runtime file left) a plain up rebuilds it all."""
    import shutil
    import signal

    stack = make_stack("seed004_dx_er_cloud_router.yaml")
    stack.pulumi("up", "--yes", "--skip-preview")
    local = find_local_outputs(stack.outputs())
    for ns in local["namespaces"].values():
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], check=True)
    for leftover in [*Path("/run/transit").glob(f"{local['prefix']}*"), *Path("/var/run/frr").glob(f"{local['prefix']}*")]:
        shutil.rmtree(leftover)
    rebuilt = stack.pulumi("up", "--yes", "--skip-preview")
    assert "replaced" in rebuilt.stdout
    _check_flows(local)
    assert all(s.ok for s in _wait_established(local["routers"]))
