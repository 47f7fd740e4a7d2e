"""The `transit` command line: one typer app, one module per command.

Command modules import their heavy dependencies inside the command function,
so `transit validate` and `transit plan` never import Pulumi or a cloud SDK.
"""
from __future__ import annotations

import typer

app = typer.Typer(
    name="transit",
    help="Validate, plan, check and observe a multicloud transit fabric.",
    no_args_is_help=True,
    add_completion=False,
)

# Each command module registers itself with `register(app)`.
from transit_cli import commands  # noqa: E402

commands.register_all(app)
