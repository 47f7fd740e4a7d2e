"""`transit plan FILE`: what the fabric builds, per cloud and region, then each target's section, or as JSON."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import typer

from transit_cli.validate import EXIT_INVALID


def plan(
    file: Path = typer.Argument(..., help="Fabric spec YAML file."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON for machines."),
) -> None:
    """Compile a fabric spec into its plan of nodes and addresses."""
    from components.loader import load_spec
    from components.spec_types import SpecError
    from components.targets import plan_fabric

    try:
        result = plan_fabric(load_spec(file))
    except SpecError as exc:
        for problem in exc.problems:
            typer.echo(str(problem))
        raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    _print_tables(result)


def _print_tables(result: object) -> None:
    """One rich table per cloud and region, then circuits, the cloud router and links."""
    from rich.console import Console
    from rich.table import Table

    from components.plan_models import Plan

    assert isinstance(result, Plan)
    console = Console()
    rows: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
    for e in result.edges:
        subnets = ", ".join(f"{s.zone}={s.cidr}" for s in e.subnets)
        rows[(e.cloud, e.region)].append(
            ("edge", e.name, f"{e.cidr}; {e.instances} VMs; {subnets}; gateway {e.gateway_cidr}; tunnel tcp/{e.tunnel_port}")
        )
    for c in result.connectors:
        place = (c.cloud, c.region or f"site {c.site}")
        detail = f"{', '.join(c.cidrs)} -> edge {c.edge}; {c.instances} VMs"
        if c.subnets:
            detail += "; " + ", ".join(f"{s.zone}={s.cidr}" for s in c.subnets)
        if c.bgp:
            detail += f"; BGP AS{c.bgp.asn} {c.bgp.local_ip} <-> AS{c.bgp.peer_asn} {c.bgp.peer_ip} (md5 key {c.bgp.md5_secret})"
        rows[place].append(("connector", c.name, detail))
    for a in result.attachments:
        rows[(a.cloud, a.region)].append(("attachment", a.name, f"{', '.join(a.cidrs)} via {a.kind} -> edge {a.edge}"))
    for (cloud, region), items in rows.items():
        table = Table(title=f"{cloud} {region}", title_justify="left")
        for column in ("kind", "name", "details"):
            table.add_column(column)
        for item in items:
            table.add_row(*item)
        console.print(table)
    if result.circuits:
        table = Table(title="circuits", title_justify="left")
        for column in ("circuit", "provider", "where", "vlan", "session", "ours / provider", "AS ours / provider"):
            table.add_column(column)
        for c in result.circuits:
            for s in c.sessions:
                table.add_row(
                    c.name, f"{c.provider} {c.connection}", f"{c.location}, {c.bandwidth_mbps} Mbps", str(c.vlan),
                    f"{s.role} {s.subnet}", f"{s.customer_ip} / {s.peer_ip}", f"{c.customer_asn} / {c.peer_asn}",
                )
        console.print(table)
    if result.cloud_router:
        r = result.cloud_router
        table = Table(title=f"cloud router {r.name} AS{r.asn} ({', '.join(r.locations)})", title_justify="left")
        for column in ("circuit", "role", "vlan", "local", "neighbor", "peer AS"):
            table.add_column(column)
        for n in r.neighbors:
            table.add_row(n.circuit, n.role, str(n.vlan), f"{n.local_ip}/{n.prefix_length}", n.peer_ip, str(n.peer_asn))
        console.print(table)
    if result.links:
        table = Table(title="links", title_justify="left")
        for column in ("name", "kind", "a", "b", "addresses", "preference"):
            table.add_column(column)
        for link in result.links:
            table.add_row(link.name, link.kind, link.a, link.b, f"{link.a_ip} / {link.b_ip}", str(link.preference))
        console.print(table)
    _print_sections(console, result)


def _print_sections(console: object, result: object) -> None:
    """Each target's own tables (components.targets: `tables`), in registry order."""
    from rich.table import Table

    from components.plan_models import Plan
    from components.targets import TARGETS

    assert isinstance(result, Plan)
    for name, section in result.sections.items():
        for title, columns, rows in TARGETS[name].tables(section):
            table = Table(title=title, title_justify="left")
            for column in columns:
                table.add_column(column)
            for row in rows:
                table.add_row(*row)
            console.print(table)  # type: ignore[attr-defined]


def register(app: typer.Typer) -> None:
    """Add `plan` to the transit app."""
    app.command("plan")(plan)
