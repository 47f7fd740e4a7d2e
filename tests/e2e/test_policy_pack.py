"""The CrossGuard pack with the real CLI: `pulumi preview --policy-pack policies` on local fabrics.

Why: unit tests call the validators directly; only the engine proves that the
pack loads through our language host, receives the preview's resources (the
`transit:index:Fabric` component carrying the spec, the agents LocalFabric
would start, each carrying its filter in agent.json), applies the
per-environment levels from policies/config/<env>.json, and fails the preview
on a mandatory violation. A preview creates nothing, so there is nothing on
the machine to clean up beyond the stacks themselves.
"""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components.checks.points import build_points
from components.checks.reachability import decisions
from components.loader import load_spec
from components.local.scratch_stack import ScratchStack
from components.segmentation.protocol import Flow
from transit_cli.local_check import find_local_outputs, send_flow

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "policies"
FABRIC = REPO / "stacks" / "fabrics" / "seed000_aws_azure.yaml"
OPEN_SSH = {"name": "open-ssh", "from": "any", "to": "az-app", "proto": "tcp", "ports": [22], "action": "permit"}


@pytest.fixture
def scratch(tmp_path: Path, pulumi_env: dict[str, str]) -> Iterator:
    """Make a scratch stack for a fabric document; always removed afterwards."""
    made: list[ScratchStack] = []

    def make(document: dict) -> ScratchStack:
        fabric = tmp_path / "fabric.yaml"
        fabric.write_text(yaml.safe_dump(document, sort_keys=False))
        stack = ScratchStack(tmp_path / "project", pulumi_env)
        made.append(stack)
        stack.create(fabric)
        return stack

    yield make
    for stack in made:
        stack.remove()


def preview(stack: ScratchStack, env: str) -> subprocess.CompletedProcess[str]:
    return stack.pulumi("preview", "--color=never", "--policy-pack", str(PACK),
                        "--policy-pack-config", str(PACK / "config" / f"{env}.json"), check=False)


def violating() -> dict:
    document = yaml.safe_load(FABRIC.read_text())
    document["policy"]["rules"].insert(0, OPEN_SSH)
    return document


def test_violating_fabric_fails_preview_in_prod(scratch) -> None:
    result = preview(scratch(violating()), "prod")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "[mandatory]  no-open-admin-ports" in output
    assert "rule 'open-ssh' permits every source to administrative port(s) 22" in output


def test_same_violation_is_advisory_in_dev(scratch) -> None:
    result = preview(scratch(violating()), "dev")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "[advisory]  no-open-admin-ports" in output


def test_compliant_fabric_passes_in_prod(scratch) -> None:
    result = preview(scratch(yaml.safe_load(FABRIC.read_text())), "prod")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "multicloud-transit" in output and "mandatory" not in output


@pytest.fixture
def repo_local_stack(tmp_path: Path, pulumi_env: dict[str, str]) -> Iterator:
    """A copy of this project whose `local` stack deploys a given fabric document; the stack is removed afterwards."""
    project = tmp_path / "transit"
    env = {**pulumi_env, "PULUMI_CONFIG_PASSPHRASE": "transit-local"}  # the local stack's documented passphrase
    made: list[bool] = []

    def make(mutate) -> Path:  # type: ignore[no-untyped-def]
        project.mkdir()
        shutil.copy(REPO / "Pulumi.yaml", project)
        (project / ".venv").symlink_to(REPO / ".venv")
        shutil.copytree(REPO / "stacks", project / "stacks", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        config = yaml.safe_load((project / "stacks" / "Pulumi.local.yaml").read_text())["config"]
        fabric = project / "stacks" / config["transit:fabric"]
        document = yaml.safe_load(fabric.read_text())
        mutate(document)
        fabric.write_text(yaml.safe_dump(document, sort_keys=False))
        run(env, project, "stack", "init", "local")
        made.append(True)
        return project

    yield make, env
    if made:
        run(env, project, "stack", "rm", "local", "--yes", "--force")


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pulumi", *args, "--non-interactive", "--color=never"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def test_preview_s_local_fails_on_the_fabric_spec_and_its_agents(repo_local_stack) -> None:
    make, env = repo_local_stack
    project = make(lambda document: document["policy"]["rules"].insert(0, {**OPEN_SSH, "to": "any"}))
    result = run(env, project, "preview", "-s", "local", "--policy-pack", str(PACK),
                 "--policy-pack-config", str(PACK / "config" / "prod.json"))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "[mandatory]  no-open-admin-ports  (transit:index:Fabric:" in output
    assert ".spec.policy.rules[0]: rule 'open-ssh' permits any to administrative port(s) 22" in output
    assert "[mandatory]  no-open-admin-ports  (pulumi-python:dynamic" in output  # an agent's agent.json
    assert "rule 'open-ssh' permits every source to administrative port(s) 22" in output


def test_preview_s_local_of_the_shipped_fabric_is_advisory_only(repo_local_stack) -> None:
    make, env = repo_local_stack
    project = make(lambda document: None)
    result = run(env, project, "preview", "-s", "local", "--policy-pack", str(PACK),
                 "--policy-pack-config", str(PACK / "config" / "local.json"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "[advisory]  encrypted-transit  (transit:index:Fabric:" in output
    assert "[mandatory]" not in output


@pytest.mark.parametrize("fabric", sorted(p.name for p in (REPO / "stacks" / "fabrics").glob("*.yaml")))
def test_policy_tests_proved_before_deploy_hold_with_real_traffic(scratch, fabric: str) -> None:
    """Every `policy.tests` assertion of every example fabric, at the addresses the local stack uses:
    what `transit check` proves at every enforcement point before the deploy is the verdict the test
    expects, and for TCP it is what real traffic gets on the local stack after the deploy.

    The local data plane carries TCP only (docs/architecture.md, "Data plane"); udp and icmp assertions are
    proved by `transit check` alone.
    """
    spec = load_spec(REPO / "stacks" / "fabrics" / fabric)
    points = build_points(spec)
    stack = scratch(yaml.safe_load((REPO / "stacks" / "fabrics" / fabric).read_text()))
    stack.pulumi("up", "--yes", "--skip-preview", timeout=600)
    local = find_local_outputs(stack.outputs())
    assert local is not None
    assert {flow["test"] for flow in local["flows"]} == {f"policy.tests[{i}]" for i in range(len(spec.policy.tests))}
    sent = 0
    for flow in local["flows"]:
        proved = decisions(points, Flow(flow["src"], flow["dst"], flow["proto"], flow["port"]))
        assert {verdict for verdict, _ in proved.values()} == {flow["expect"]}, (flow, proved)
        if flow["proto"] == "tcp":
            observed = send_flow(flow)
            assert observed.observed == flow["expect"], (flow, observed)
            sent += 1
    assert sent == sum(1 for t in spec.policy.tests if t.proto == "tcp")


def test_preview_s_local_fails_when_the_fabrics_own_tests_fail(repo_local_stack) -> None:
    def expect_the_wrong_thing(document: dict) -> None:
        document["policy"]["tests"][0]["expect"] = "deny" if document["policy"]["tests"][0]["expect"] == "permit" else "permit"

    make, env = repo_local_stack
    project = make(expect_the_wrong_thing)
    result = run(env, project, "preview", "-s", "local", "--policy-pack", str(PACK),
                 "--policy-pack-config", str(PACK / "config" / "local.json"))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "[mandatory]  policy-tests-hold  (transit:index:Fabric:" in output
    assert ".spec.policy.tests[0]: test-fails" in output
