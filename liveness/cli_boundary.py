"""The command line's boundary: its consoles and the decorator that turns errors into exits.

Kept apart from `liveness.cli` so that every sub-app (clients, classifier, evidence, orders)
can use it without importing the main app that registers them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from connectors import ConnectorError
from liveness.app import Services
from liveness.errors import LivenessError
from liveness.settings import get_settings

console = Console()
errors = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def boundary(command: Callable[P, R]) -> Callable[P, R]:
    """Turn engine errors into a readable message and an exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except LivenessError as error:
            errors.print(f"[bold red]error:[/] {error}", highlight=False)
            raise typer.Exit(error.exit_code) from None
        except ConnectorError as error:
            errors.print(f"[bold red]error:[/] {error}", highlight=False)
            raise typer.Exit(3) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as error:  # the one top-level catch: report, never a traceback
            if get_settings().debug:
                raise
            errors.print(
                f"[bold red]internal error:[/] {type(error).__name__}: {error}\n"
                "set LIVENESS_DEBUG=1 to see the traceback",
                highlight=False,
            )
            raise typer.Exit(70) from None

    return wrapper


def migrated_services() -> Services:
    """Return the services of this process's settings, refusing a database without schema."""
    services = Services(get_settings())
    services.require_schema()
    return services
