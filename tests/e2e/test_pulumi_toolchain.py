"""The offline Pulumi toolchain end to end: CLI, our language host, shims.

Why: tools/langhost replaces Pulumi's Python language host, which the Go proxy
refuses. These tests drive the real CLI through a whole stack lifecycle, a
Python dynamic provider and CrossGuard policy packs, so a broken host, shim or
interpreter choice shows up here and not in the first real deployment.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

VENV = Path(__file__).resolve().parents[2] / ".venv"

THING_TYPE = "pulumi-python:dynamic/e2e:Thing"
TOKEN = "s3cr3t-e2e-token"

PROGRAM = textwrap.dedent(
    '''
    import sys

    import pulumi
    from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult


    class Counter(ResourceProvider):
        serialize_as_secret_always = False

        def create(self, props):
            import sys
            outs = {**props, "length": len(props["label"]), "provider_python": sys.executable}
            return CreateResult(id_="thing-" + props["label"], outs=outs)

        def diff(self, id_, olds, news):
            return DiffResult(changes=olds.get("label") != news.get("label"))

        def update(self, id_, olds, news):
            return UpdateResult(outs={**olds, **news, "length": len(news["label"])})

        def read(self, id_, props):
            return ReadResult(id_=id_, outs=props)


    class Thing(Resource, module="e2e", name="Thing"):
        def __init__(self, name, label, opts=None):
            props = {"label": label, "length": None, "provider_python": None}
            super().__init__(Counter(), name, props, opts)


    class Box(pulumi.ComponentResource):
        def __init__(self, name, opts=None):
            super().__init__("e2e:index:Box", name, None, opts)
            self.thing = Thing(f"{name}-thing", "hello", pulumi.ResourceOptions(parent=self))
            self.register_outputs({"length": self.thing.length})


    box = Box("box")
    pulumi.export("length", box.thing.length)
    pulumi.export("provider_python", box.thing.provider_python)
    pulumi.export("program_python", sys.executable)

    config = pulumi.Config()
    pulumi.export("greeting", config.require("greeting"))
    pulumi.export("token_is_secret", pulumi.runtime.is_config_secret("toolchain-e2e:token"))
    pulumi.export("token", config.require_secret("token"))
    '''
)

POLICY = textwrap.dedent(
    '''
    from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy


    def {rule}(args, report_violation):
        if args.resource_type == "{thing}" and {condition}:
            report_violation("{message}")


    PolicyPack(
        "{pack}",
        [ResourceValidationPolicy("{name}", "{message}", {rule}, EnforcementLevel.MANDATORY)],
    )
    '''
)


def pulumi(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI non-interactively; output is kept for assertions and failure messages."""
    return subprocess.run(
        ["pulumi", *args, "--non-interactive", "--color=never"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """Return the output of a command that must have succeeded."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{result.args} failed:\n{output}"
    return output


def make_project(root: Path, program: str) -> Path:
    """A project whose `virtualenv` option is relative, like the repo's own Pulumi.yaml."""
    project = root / "project"
    project.mkdir()
    (project / ".venv").symlink_to(VENV)
    (project / "Pulumi.yaml").write_text(
        "name: toolchain-e2e\n"
        "runtime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: .venv\n"
    )
    (project / "__main__.py").write_text(program)
    return project


def make_policy_pack(root: Path, pack: str, *, virtualenv: bool, **rule: str) -> Path:
    """A policy pack with one mandatory rule on Thing resources."""
    directory = root / pack
    directory.mkdir()
    if virtualenv:
        (directory / ".venv").symlink_to(VENV)
        runtime = "runtime:\n  name: python\n  options:\n    virtualenv: .venv\n"
    else:
        runtime = "runtime: python\n"
    (directory / "PulumiPolicy.yaml").write_text(runtime)
    (directory / "__main__.py").write_text(POLICY.format(pack=pack, thing=THING_TYPE, **rule))
    return directory


@pytest.fixture
def stack(tmp_path: Path, pulumi_env: dict[str, str]) -> Iterator[Path]:
    """A fresh `dev` stack of the test program; its resources are destroyed afterwards."""
    project = make_project(tmp_path, PROGRAM)
    ok(pulumi(pulumi_env, project, "stack", "init", "dev"))
    ok(pulumi(pulumi_env, project, "config", "set", "greeting", "hi"))
    ok(pulumi(pulumi_env, project, "config", "set", "--secret", "token", TOKEN))
    try:
        yield project
    finally:
        pulumi(pulumi_env, project, "destroy", "--yes")


def test_stack_lifecycle_with_component_and_dynamic_provider(stack: Path, pulumi_env: dict[str, str]) -> None:
    preview = ok(pulumi(pulumi_env, stack, "preview"))
    assert "e2e:index:Box" in preview and THING_TYPE in preview
    assert "3 to create" in preview

    up = ok(pulumi(pulumi_env, stack, "up", "--yes"))
    assert "3 created" in up
    assert TOKEN not in up
    assert ok(pulumi(pulumi_env, stack, "stack", "output", "length")).strip() == "5"
    venv_python = str(stack / ".venv" / "bin" / "python")
    assert ok(pulumi(pulumi_env, stack, "stack", "output", "program_python")).strip() == venv_python
    assert ok(pulumi(pulumi_env, stack, "stack", "output", "provider_python")).strip() == venv_python

    assert ok(pulumi(pulumi_env, stack, "stack", "output", "greeting")).strip() == "hi"
    assert ok(pulumi(pulumi_env, stack, "stack", "output", "token_is_secret")).strip() == "true"
    assert ok(pulumi(pulumi_env, stack, "stack", "output", "token")).strip() == "[secret]"
    assert TOKEN not in ok(pulumi(pulumi_env, stack, "stack", "export"))
    assert TOKEN not in (stack / "Pulumi.dev.yaml").read_text()

    again = ok(pulumi(pulumi_env, stack, "up", "--yes"))
    assert "3 unchanged" in again
    ok(pulumi(pulumi_env, stack, "preview", "--expect-no-changes"))

    refresh = ok(pulumi(pulumi_env, stack, "refresh", "--yes"))
    assert "3 unchanged" in refresh

    destroy = ok(pulumi(pulumi_env, stack, "destroy", "--yes"))
    assert "3 deleted" in destroy
    assert "No resources" in ok(pulumi(pulumi_env, stack, "stack", "--show-urns"))


def test_policy_pack_mandatory_violation_fails_preview(
    tmp_path: Path, stack: Path, pulumi_env: dict[str, str]
) -> None:
    pack = make_policy_pack(
        tmp_path,
        "forbid-things",
        virtualenv=False,
        rule="no_things",
        name="no-things",
        condition="True",
        message="Prohibits Thing resources.",
    )
    # No virtualenv option in the pack: the host must use PULUMI_PYTHON_CMD.
    env = {**pulumi_env, "PULUMI_PYTHON_CMD": str(VENV / "bin" / "python")}
    result = pulumi(env, stack, "preview", "--policy-pack", str(pack))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "[mandatory]  no-things" in output
    assert "Prohibits Thing resources." in output


def test_policy_pack_without_violations_passes(tmp_path: Path, stack: Path, pulumi_env: dict[str, str]) -> None:
    pack = make_policy_pack(
        tmp_path,
        "require-labels",
        virtualenv=True,
        rule="label_set",
        name="label-set",
        condition='not args.props.get("label")',
        message="Requires a label.",
    )
    output = ok(pulumi(pulumi_env, stack, "preview", "--policy-pack", str(pack)))
    assert "require-labels" in output
    assert "mandatory" not in output


def test_program_exception_is_reported_once(tmp_path: Path, pulumi_env: dict[str, str]) -> None:
    project = make_project(tmp_path, 'raise RuntimeError("spec is broken")\n')
    ok(pulumi(pulumi_env, project, "stack", "init", "dev"))
    result = pulumi(pulumi_env, project, "preview")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "RuntimeError: spec is broken" in output
    # The exec script already showed the error, so the host asks the CLI to bail quietly.
    assert "non-zero exit code" not in output
