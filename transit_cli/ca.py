"""`transit ca create FABRIC --out DIR`: a new fabric CA, the pair a stack's config holds (components/fabric_ca.py).

Writes `ca.pem` and `ca.key` (mode 0600, created private) and prints only
where they are and the two `pulumi config set` lines that load them; the key
is never printed. Keep the key offline once the stacks hold it.
"""
from __future__ import annotations

import os
from pathlib import Path

import typer

ca_app = typer.Typer(help="The fabric CA that signs every cloud node's certificate.", no_args_is_help=True)


@ca_app.command("create")
def create(
    fabric: str = typer.Argument(..., help="Fabric name (the spec's `name`), written into the CA's subject."),
    out: Path = typer.Option(..., "--out", help="Directory for ca.pem and ca.key; must not hold a CA already."),
    valid_days: int = typer.Option(3650, "--valid-days", help="Validity of the CA certificate in days."),
) -> None:
    """Make a fabric CA (ECDSA P-256, path length 0) and say how a stack loads it."""
    from components.fabric_ca import CERT_CONFIG, KEY_CONFIG
    from dataplane import pki

    cert_path, key_path = out / "ca.pem", out / "ca.key"
    if cert_path.exists() or key_path.exists():
        typer.echo(f"{out} already holds a CA; refusing to overwrite it", err=True)
        raise typer.Exit(1)
    out.mkdir(parents=True, exist_ok=True)
    ca = pki.create_ca(fabric, valid_days=valid_days)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(ca.key_pem)
    cert_path.write_bytes(ca.cert_pem)
    typer.echo(f"wrote {cert_path} and {key_path} (0600). Load them into each stack:")
    typer.echo(f"  pulumi config set -s <stack> transit:{CERT_CONFIG} < {cert_path}")
    typer.echo(f"  pulumi config set -s <stack> --secret transit:{KEY_CONFIG} < {key_path}")


def register(app: typer.Typer) -> None:
    """Add `ca` to the transit app."""
    app.add_typer(ca_app, name="ca")
