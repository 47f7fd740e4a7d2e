"""The list of command modules; each exposes `register(app)`."""
from __future__ import annotations

import importlib

import typer

# Add a module here when you add a command (e.g. "transit_cli.validate").
COMMAND_MODULES: list[str] = ["transit_cli.validate", "transit_cli.plan", "transit_cli.check", "transit_cli.local_check", "transit_cli.flows", "transit_cli.status", "transit_cli.ca"]


def register_all(app: typer.Typer) -> None:
    """Import each command module and let it add its commands to `app`."""
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
