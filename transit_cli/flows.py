"""`transit flows LOG [--follow] [--verdict deny]`: the agent's flow log as a table.

Reads the JSON-lines file written by `dataplane.flowlog`; lines that are not
flow entries are skipped and counted on stderr. With --follow, new flows are
printed as they close, one row each.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from dataplane.flowlog import FlowEntry

EXIT_OK = 0
EXIT_UNREADABLE = 1

# Column name -> minimum width, so rows printed one at a time by --follow line up.
_COLUMNS = {"time": 12, "role": 7, "source": 21, "destination": 21, "proto": 5, "identity": 22, "up": 9, "down": 9,
            "duration": 9, "verdict": 7, "rule": 14, "path": 7, "rtt ms": 6}
_RIGHT = ("up", "down", "duration", "rtt ms")


def _human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _row(entry: FlowEntry) -> list[str]:
    import datetime

    when = datetime.datetime.fromtimestamp(entry.ts, tz=datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    verdict = {"permit": "[green]permit[/]", "deny": "[red]deny[/]"}.get(entry.verdict, f"[yellow]{entry.verdict}[/]")
    return [
        when,
        entry.role,
        f"{entry.src}:{entry.sport}",
        f"{entry.dst}:{entry.dport}",
        entry.proto,
        entry.src_identity.removeprefix("spiffe://"),
        _human_bytes(entry.bytes_up),
        _human_bytes(entry.bytes_down),
        f"{entry.duration_s:.3f} s",
        verdict,
        entry.rule or "default",
        entry.path or "-",
        "-" if entry.rtt_ms is None else f"{entry.rtt_ms:.2f}",
    ]


def _table(*, header: bool = True) -> Table:
    from rich.table import Table

    table = Table(show_header=header, box=None, pad_edge=False)
    for column, width in _COLUMNS.items():
        table.add_column(column, no_wrap=True, min_width=width, justify="right" if column in _RIGHT else "left")
    return table


def flows(
    log: Path = typer.Argument(..., help="Flow log file (JSON lines) written by transit-agent."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing flows as they close."),
    verdict: str | None = typer.Option(None, "--verdict", help="Show only this verdict. Valid values: permit, deny, error."),
    last: int = typer.Option(50, "--last", "-n", min=0, help="How many of the newest flows to show first (0 = all). Defaults to 50."),
) -> None:
    """Show closed flows from an agent's flow log."""
    from rich.console import Console

    from dataplane.flowlog import FlowLogReader

    if verdict is not None and verdict not in ("permit", "deny", "error"):
        raise typer.BadParameter("must be permit, deny or error", param_hint="--verdict")
    console = Console()
    reader = FlowLogReader(log)
    try:
        entries = [e for e in reader.read() if verdict is None or e.verdict == verdict]
    except OSError as exc:
        typer.echo(f"{log}: cannot read: {exc.strerror}", err=True)
        raise typer.Exit(EXIT_UNREADABLE) from None
    shown = entries if last == 0 else list(deque(entries, maxlen=last))
    table = _table()
    for entry in shown:
        table.add_row(*_row(entry))
    console.print(table)
    typer.echo(f"{log}: {len(shown)} of {len(entries)} flows" + (f" (verdict {verdict})" if verdict else ""))
    if reader.skipped:
        typer.echo(f"{log}: skipped {reader.skipped} line(s) that are not flow entries", err=True)
    if not follow:
        raise typer.Exit(EXIT_OK)
    try:
        for entry in reader.follow(from_offset=reader.offset):
            if verdict is None or entry.verdict == verdict:
                row = _table(header=False)
                row.add_row(*_row(entry))
                console.print(row)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_OK) from None


def register(app: typer.Typer) -> None:
    """Add `flows` to the transit app."""
    app.command("flows")(flows)
