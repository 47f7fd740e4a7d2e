"""`pulumi up` of the local target with the real CLI, on seed 000's and seed 004's fabrics.

One test per fabric walks the whole lifecycle on a fresh stack: up; the policy
tests' flows give the policy's verdicts with real traffic; BGP sessions come up
and each side of the cloud router learns the other's prefixes; a second up
changes nothing; refresh notices a killed agent and up brings it back; the MD5
keys and private keys never appear in state or outputs; destroy leaves no
namespace, process, FRR or daemon file behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from transit_cli.local_check import find_local_outputs, learned_routes, read_sessions, send_flow

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
FABRICS = REPO / "stacks" / "fabrics"

PROGRAM = textwrap.dedent(
    '''
    import pulumi

    from components import load_spec
    from components.local.fabric import LocalFabric, LocalFabricArgs

    config = pulumi.Config("transit")
    spec = load_spec(config.require("fabric"))
    keys = [n.bgp.md5_secret for n in spec.networks if n.bgp] + [c.bgp.md5_secret for c in spec.circuits]
    fabric = LocalFabric("fabric", LocalFabricArgs(
        spec=spec, secrets={k: config.require_secret(k) for k in keys}, stack=pulumi.get_stack()))
    pulumi.export("local", fabric.outputs)
    '''
)


class Stack:
    """One throwaway stack of a scratch project that runs the local fabric from this repo."""

    def __init__(self, root: Path, env: dict[str, str], name: str) -> None:
        self.root, self.env, self.name = root, env, name

    def pulumi(self, *args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(REPO / ".tools" / "bin" / "pulumi"), *args, "-s", self.name, "--non-interactive"],
                              cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def outputs(self) -> dict:
        return json.loads(self.pulumi("stack", "output", "--json").stdout)


def _leftovers(prefix: str) -> list[str]:
    """Anything on this machine that still carries the stack's name prefix."""
    found = [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(prefix)] if os.path.isdir("/run/netns") else []
    for root in ("/run/transit", "/etc/frr", "/var/run/frr"):
        if os.path.isdir(root):
            found += [f"{root}/{n}" for n in os.listdir(root) if n.startswith(prefix)]
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found += [f"process {line.strip()}" for line in ps.splitlines() if prefix in line and "pytest" not in line]
    return found


@pytest.fixture
def make_stack(tmp_path: Path, pulumi_env: dict[str, str]) -> Iterator:
    """Create a stack for a fabric file with random MD5 keys; always destroy and remove it."""
    created: list[Stack] = []

    def make(fabric_file: str) -> tuple[Stack, dict[str, str]]:
        root = tmp_path / "project"
        root.mkdir()
        (root / "Pulumi.yaml").write_text(
            f"name: transit\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: {REPO / '.venv'}\n")
        (root / "__main__.py").write_text(PROGRAM)
        stack = Stack(root, pulumi_env, f"e2e{uuid.uuid4().hex[:6]}")
        stack.pulumi("stack", "init")
        created.append(stack)
        stack.pulumi("config", "set", "transit:fabric", str(FABRICS / fabric_file))
        from components import load_spec

        spec = load_spec(FABRICS / fabric_file)
        keys = [n.bgp.md5_secret for n in spec.networks if n.bgp] + [c.bgp.md5_secret for c in spec.circuits]
        secrets = {k: f"md5-{uuid.uuid4().hex[:12]}" for k in keys}
        for key, value in secrets.items():
            stack.pulumi("config", "set", "--secret", f"transit:{key}", value)
        return stack, secrets

    yield make
    for stack in created:
        stack.pulumi("destroy", "--yes", "--skip-preview", check=False)
        stack.pulumi("stack", "rm", "--yes", "--force", check=False)


def _wait_established(routers: list[dict], timeout: float = 40) -> list:
    deadline = time.monotonic() + timeout
    while True:
        sessions = [s for r in routers for s in read_sessions(r)]
        if sessions and all(s.ok and s.prefixes_received > 0 for s in sessions) or time.monotonic() > deadline:
            return sessions
        time.sleep(1)


def _check_flows(local: dict) -> None:
    results = [send_flow(flow) for flow in local["flows"]]
    assert results, "the fabric has no TCP policy tests to send"
    assert [(r.test, r.observed) for r in results] == [(r.test, r.expect) for r in results]


def _assert_no_secrets(stack: Stack, secrets: dict[str, str]) -> None:
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
    ],
)
def test_local_fabric_lifecycle(make_stack, fabric_file: str, learns: dict[str, str]) -> None:
    stack, secrets = make_stack(fabric_file)
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

    again = stack.pulumi("up", "--yes", "--skip-preview", "--expect-no-changes")
    assert "unchanged" in again.stdout

    agent_dir = next(Path("/run/transit").glob(f"{prefix}-agent-edge-*"))
    os.killpg(int((agent_dir / "pid").read_text()), 9)
    refreshed = stack.pulumi("refresh", "--yes", "--skip-preview")
    assert "deleted" in refreshed.stdout
    stack.pulumi("up", "--yes", "--skip-preview")
    _check_flows(local)

    _assert_no_secrets(stack, secrets)
    stack.pulumi("destroy", "--yes", "--skip-preview")
    assert _leftovers(prefix) == []
