"""`transit validate FILE`: one line per problem, each starting with its field path."""
from __future__ import annotations

from pathlib import Path

import typer

EXIT_VALID = 0
EXIT_INVALID = 1


def validate(file: Path = typer.Argument(..., help="Fabric spec YAML file.")) -> None:
    """Validate a fabric spec; exit 0 when valid, 1 with every problem otherwise."""
    from components.loader import load_spec
    from components.spec_types import SpecError
    from components.targets import plan_fabric, plan_problems

    try:
        spec = load_spec(file)
    except SpecError as exc:
        for problem in exc.problems:
            typer.echo(str(problem))
        typer.echo(f"{file}: {len(exc.problems)} problem(s)", err=True)
        raise typer.Exit(EXIT_INVALID) from None
    refused = plan_problems(plan_fabric(spec))  # what a cloud would refuse: quotas, circuits
    if refused:
        for line in refused:
            typer.echo(line)
        typer.echo(f"{file}: {len(refused)} problem(s)", err=True)
        raise typer.Exit(EXIT_INVALID)
    typer.echo(
        f"{file}: valid fabric '{spec.name}' ({len(spec.edges)} edges, {len(spec.networks)} networks, "
        f"{len(spec.circuits)} circuits, {len(spec.policy.rules)} rules)"
    )
    raise typer.Exit(EXIT_VALID)


def register(app: typer.Typer) -> None:
    """Add `validate` to the transit app."""
    app.command("validate")(validate)
