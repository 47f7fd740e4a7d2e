"""`subsystem.event key=value` log lines, the one log shape the agent writes.

Values are quoted when they hold spaces or quotes so a line stays one
parseable record. Never pass secrets (keys, MD5 passwords) as values.
"""
from __future__ import annotations

import logging


def _value(value: object) -> str:
    text = str(value)
    if not text or any(ch in text for ch in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def format_event(name: str, fields: dict[str, object]) -> str:
    """Render `name key=value ...` in the given field order."""
    return " ".join([name, *(f"{key}={_value(val)}" for key, val in fields.items())])


def event(logger: logging.Logger, name: str, /, *, level: int = logging.INFO, **fields: object) -> None:
    """Log one event if the level is enabled (formatting is skipped otherwise)."""
    if logger.isEnabledFor(level):
        logger.log(level, "%s", format_event(name, fields))
