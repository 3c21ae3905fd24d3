"""`liveness clients`: create, list and revoke API clients; a token is shown once, not kept."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from liveness.access.service import create_client, list_clients, revoke_client
from liveness.cli_boundary import boundary, migrated_services
from liveness.db import session_scope
from models import Role

__all__ = ["clients_app"]

clients_app = typer.Typer(
    no_args_is_help=True, help="API clients: bearer tokens with a role, revocable, with expiry."
)
console = Console()


@clients_app.command("create")
@boundary
def create_command(
    name: Annotated[str, typer.Option(help="Unique name of the client (it appears in the audit).")],
    role: Annotated[Role, typer.Option(help="What the client may do.")],
    grid: Annotated[
        list[str] | None, typer.Option(help="A grid a grid worker may see (repeatable).")
    ] = None,
    region: Annotated[
        list[str] | None,
        typer.Option(
            help="A region an inspector may see: a 6-digit code, or a prefix like 3301 covering"
            " its counties (repeatable)."
        ),
    ] = None,
    expires_days: Annotated[
        int | None, typer.Option(min=1, help="Days until the token expires (default: never).")
    ] = None,
    secret: Annotated[
        bool,
        typer.Option(
            "--secret", help="Also issue an HMAC signing secret (verifiers always get one)."
        ),
    ] = False,
) -> None:
    """Create a client and print its token (and signing secret) once: they are not kept."""
    with session_scope(migrated_services().sessions) as session:
        issued = create_client(
            session, name=name, role=role, grids=grid or [], regions=region or [],
            expires_days=expires_days, with_secret=secret,
        )  # fmt: skip
    console.print(f"client {issued.name} ({issued.role}) created", highlight=False)
    if issued.expires_at is not None:
        console.print(f"expires at {issued.expires_at:%Y-%m-%d %H:%M} UTC", highlight=False)
    console.print("token (shown once, keep it safe):", highlight=False)
    typer.echo(issued.token)
    if issued.secret is not None:
        console.print("signing secret (shown once, keep it safe):", highlight=False)
        typer.echo(issued.secret)


@clients_app.command("list")
@boundary
def list_command() -> None:
    """List clients: name, role, grids, regions, creation, expiry, revocation (never tokens)."""
    with session_scope(migrated_services().sessions) as session:
        clients = list_clients(session)
    table = Table(title=f"API clients ({len(clients)})")
    for column in ("name", "role", "grids", "regions", "created", "expires", "revoked"):
        table.add_column(column)
    for client in clients:
        table.add_row(
            client.name, str(client.role), ", ".join(client.grids), ", ".join(client.regions),
            f"{client.created_at:%Y-%m-%d %H:%M}",
            "" if client.expires_at is None else f"{client.expires_at:%Y-%m-%d %H:%M}",
            "" if client.revoked_at is None else f"{client.revoked_at:%Y-%m-%d %H:%M}",
        )  # fmt: skip
    console.print(table)


@clients_app.command("revoke")
@boundary
def revoke_command(
    name: Annotated[str, typer.Argument(help="Name of the client to revoke.")],
) -> None:
    """Revoke a client's token: every later request with it is refused."""
    with session_scope(migrated_services().sessions) as session:
        client = revoke_client(session, name=name)
    console.print(f"client {client.name} revoked", highlight=False)
