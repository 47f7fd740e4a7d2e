"""`transit check FILE`: policy rules, `policy.tests` at every enforcement point, parity.

Runs before any deploy with no cloud and no engine; exits 1 on a mandatory
violation, a failing assertion or an enforcement point that disagrees with the
intent, 2 when the spec or the policy config cannot be read.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_UNUSABLE = 2
STACKS_DIR = Path(__file__).resolve().parents[1] / "stacks"


def _stack_config(env: str, stacks_dir: Path, spec_file: Path) -> dict[str, Any] | None:
    """The `config:` of stacks/Pulumi.<env>.yaml when that stack deploys `spec_file`, else None.

    Read only to see how BGP keys are stored (secret or plain); values are never printed.
    """
    import yaml

    path = stacks_dir / f"Pulumi.{env}.yaml"
    if not path.is_file():
        return None
    config = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}
    fabric = config.get("transit:fabric")
    if not isinstance(fabric, str) or (stacks_dir / fabric).resolve() != spec_file.resolve():
        return None
    return config


def check(
    file: Path = typer.Argument(..., help="Fabric spec YAML file."),
    env: str = typer.Option("dev", "--env", help="Environment whose policy config applies (policies/config/<env>.json). Defaults to dev."),
    samples: int = typer.Option(2000, "--samples", min=0, help="Random flows for the parity check, after the boundary flows. Defaults to 2000."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random flows, so runs repeat. Defaults to 0."),
    policy_config: Path | None = typer.Option(None, "--policy-config", help="Policy config file. Defaults to policies/config/<env>.json."),
    stacks_dir: Path = typer.Option(STACKS_DIR, "--stacks-dir", help="Where Pulumi.<env>.yaml lives; when that stack deploys FILE, its BGP keys must be secrets. Defaults to stacks/."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check a fabric's policy: rules, reachability assertions and enforcement-point parity."""
    from components.checks.config import PolicyConfigError, load_config
    from components.checks.rules import REACHABILITY_RULE
    from components.checks.run import run_check
    from components.loader import load_spec
    from components.spec_types import SpecError

    try:
        spec = load_spec(file)
        settings = load_config(env, policy_config)
    except SpecError as exc:
        for problem in exc.problems:
            typer.echo(str(problem))
        raise typer.Exit(EXIT_UNUSABLE) from None
    except PolicyConfigError as exc:
        typer.echo(str(exc))
        raise typer.Exit(EXIT_UNUSABLE) from None
    report = run_check(spec, settings, stack_config=_stack_config(env, stacks_dir, file), samples=samples, seed=seed)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        for item in report.violations:
            typer.echo(f"{item.level}: {item.violation}")
        for finding in report.findings:
            typer.echo(f"{report.findings_level}: {finding} [{REACHABILITY_RULE}]")
        verdict = "FAILED" if report.failed else "passed"
        typer.echo(
            f"{file}: {verdict} ({env}): {len(report.violations)} violation(s), {report.tests} test(s) at "
            f"{len(report.points)} enforcement point(s) [{', '.join(report.points)}], "
            f"{report.flows_sampled} flows compared, {report.seconds:.2f}s"
        )
    raise typer.Exit(EXIT_FAILED if report.failed else EXIT_PASSED)


def register(app: typer.Typer) -> None:
    """Add `check` to the transit app."""
    app.command("check")(check)
