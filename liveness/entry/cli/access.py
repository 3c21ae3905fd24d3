"""`liveness clients`: create, list and revoke API clients; a token is shown once, not kept.

People also get a password for the pages (`password`), optionally a one-time code (`code`),
and are let back in early after a lock-out (`unlock`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from liveness.entry.cli.boundary import boundary, migrated_services

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["clients_app"]

clients_app = typer.Typer(
    no_args_is_help=True, help="API clients: bearer tokens with a role, revocable, with expiry."
)
console = Console()
error_console = Console(stderr=True)

# models.Role's values, repeated: `--role`'s choices are needed when the command line is built,
# and importing `models` loads SQLAlchemy (tests/api/test_clients_cli.py checks they agree).
RoleName = Literal[
    "admin",
    "operator",
    "grid_worker",
    "payment",
    "verifier",
    "notifier",
    "auditor",
    "inspector",
    "registrar",
]


@clients_app.command("create")
@boundary
def create_command(
    name: Annotated[str, typer.Option(help="Unique name of the client (it appears in the audit).")],
    role: Annotated[RoleName, typer.Option(help="What the client may do.")],
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
        int | None,
        typer.Option(min=1, max=36_500, help="Days until the token expires (default: never)."),
    ] = None,
    secret: Annotated[
        bool,
        typer.Option(
            "--secret", help="Also issue an HMAC signing secret (verifiers always get one)."
        ),
    ] = False,
    public_key: Annotated[
        typer.FileText | None,
        typer.Option(
            help="A registrar's Ed25519 public key (PEM file, or its 32 raw bytes in base64):"
            " its notices are then signed with the private key, and no secret is issued."
        ),
    ] = None,
) -> None:
    """Create a client and print its token (and signing secret) once: they are not kept."""
    from liveness.access.service import create_client, grids_nobody_is_in
    from liveness.db import session_scope
    from models import Role

    with session_scope(migrated_services().sessions) as session:
        issued = create_client(
            session, name=name, role=Role(role), grids=grid or [], regions=region or [],
            expires_days=expires_days, with_secret=secret,
            public_key=None if public_key is None else public_key.read(),
        )  # fmt: skip
        empty = grids_nobody_is_in(session, grid or [])
    console.print(f"client {issued.name} ({issued.role}) created", highlight=False)
    for code in empty:
        # Created all the same: the roll may not hold the grid yet.
        error_console.print(
            f"warning: nobody on the roll is in grid {code!r}: the worker's queue stays empty "
            "until the roll holds it (a typo? `liveness clients revoke` then create again)",
            highlight=False,
        )
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
    """List clients: name, role, scope, dates, how a person signs in (never tokens)."""
    from liveness.access.passwords import sign_in_states
    from liveness.access.service import list_clients
    from liveness.db import session_scope
    from models import utcnow

    with session_scope(migrated_services().sessions) as session:
        clients = list_clients(session)
        states = sign_in_states(session, now=utcnow())
    table = Table(title=f"API clients ({len(clients)})")
    columns = ["name", "role", "grids", "regions", "created", "expires", "revoked"]
    # How people sign in, once anyone has a password (machines have only their token).
    columns += ["sign-in"] if states else []
    for column in columns:
        table.add_column(column)
    for client in clients:
        table.add_row(
            client.name, str(client.role), ", ".join(client.grids), ", ".join(client.regions),
            f"{client.created_at:%Y-%m-%d %H:%M}",
            "" if client.expires_at is None else f"{client.expires_at:%Y-%m-%d %H:%M}",
            "" if client.revoked_at is None else f"{client.revoked_at:%Y-%m-%d %H:%M}",
            *([states.get(client.id, "token only")] if states else []),
        )  # fmt: skip
    console.print(table)


@clients_app.command("revoke")
@boundary
def revoke_command(
    name: Annotated[str, typer.Argument(help="Name of the client to revoke.")],
) -> None:
    """Revoke a client's token: every later request with it is refused."""
    from liveness.access.service import revoke_client
    from liveness.db import session_scope

    with session_scope(migrated_services().sessions) as session:
        client = revoke_client(session, name=name)
    console.print(f"client {client.name} revoked", highlight=False)


@clients_app.command("password")
@boundary
def password_command(
    name: Annotated[str, typer.Argument(help="Name of the client: the person's user name.")],
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password from the first line of standard input (for scripts).",
        ),
    ] = False,
) -> None:
    """Set a person's password for the pages: asked twice, unechoed (never on the command line)."""
    from liveness.access.passwords import set_password
    from liveness.db import session_scope
    from models import utcnow

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(
            f"new password for {name}", hide_input=True, confirmation_prompt=True
        )
    services = migrated_services()
    with session_scope(services.sessions) as session:
        client = set_password(
            session, name=name, password=password, policy=services.sign_in_policy, now=utcnow()
        )
        _audit(session, action="clients.password", client_id=client.id)
    console.print(
        f"password of {client.name} set; they sign in at /web/sign-in with the name"
        f" {client.name!r} (the account is unlocked)",
        highlight=False,
    )


@clients_app.command("code")
@boundary
def code_command(
    name: Annotated[str, typer.Argument(help="Name of the client: the person's user name.")],
    off: Annotated[bool, typer.Option("--off", help="Stop asking for a one-time code.")] = False,
) -> None:
    """Ask a person for a one-time code after their password; print its secret once."""
    from liveness.access.passwords import code_uri, disable_code, enable_code
    from liveness.db import session_scope

    with session_scope(migrated_services().sessions) as session:
        if off:
            client = disable_code(session, name=name)
            _audit(session, action="clients.code_off", client_id=client.id)
            secret = None
        else:
            client, secret = enable_code(session, name=name)
            _audit(session, action="clients.code_on", client_id=client.id)
    if secret is None:
        console.print(f"{name} signs in with a password only", highlight=False)
        return
    console.print(
        f"{name} is now asked for a one-time code after the password. Add it to their"
        " authenticator app (shown once, keep it safe): type the secret, or make a QR code"
        " of the URI.",
        highlight=False,
    )
    typer.echo(secret)
    typer.echo(code_uri(name=name, secret=secret))


@clients_app.command("unlock")
@boundary
def unlock_command(
    name: Annotated[str, typer.Argument(help="Name of the client to let in again.")],
) -> None:
    """Lift a lock-out after failed sign-ins before it ends by itself."""
    from liveness.access.passwords import unlock
    from liveness.db import session_scope

    with session_scope(migrated_services().sessions) as session:
        client = unlock(session, name=name)
        _audit(session, action="clients.unlock", client_id=client.id)
    console.print(f"{client.name} unlocked", highlight=False)


def _audit(session: Session, *, action: str, client_id: int) -> None:
    """Record an administrator's change to a client's sign-in (the CLI is the actor)."""
    from liveness.access.audit import record_audit

    record_audit(
        session, actor="cli", action=action, target_type="client", target_ref=str(client_id)
    )
