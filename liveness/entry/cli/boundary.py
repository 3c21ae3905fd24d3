"""The command line's boundary: its consoles and the decorator that turns errors into exits.

Kept apart from `liveness.entry.cli` so that every sub-app (clients, classifier, evidence, orders)
can use it without importing the main app that registers them.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from liveness.errors import LivenessError

if TYPE_CHECKING:
    from liveness.services import Services

console = Console()
errors = Console(stderr=True)

# The exit codes that are no error's `exit_code` (README.md "Exit codes" has them all; Click's
# usage error is 2): a run's outcome, the scheduler's failed night, the one catch-all.
STOPPED_BY_GUARD = 7
NIGHT_FAILED = 14
INTERNAL_ERROR = 70
# sysexits.h EX_IOERR: a file or folder the command was given or needs could not be used.
FILE_ERROR = 74
# sysexits.h EX_TEMPFAIL: the database could not be reached or could not do the work now.
DATABASE_ERROR = 75
# The largest id, and the largest count worth asking for, that the state database holds (a
# 32-bit INTEGER): a larger one is a usage error, never sent to the database (SQLite's driver
# would fail on it with an internal error).
LARGEST = 2**31 - 1
# The most days a simulation or a horizon spans: ten years (beyond, a date overflows).
DAYS_MOST = 3_650

# The longest name of who acted that the audit log and the records hold (String(64) columns).
ACTOR_MOST = 64


def actor_name(value: str) -> str:
    """Check the name of who acted (`--by`, `--operator`): it goes to the audit and the records.

    Refused: empty, longer than the columns hold (on PostgreSQL an internal error), spaces
    around it or unprintable characters (`alice ` would be another person than `alice` to the
    rule that whoever caused an entry may not approve it).
    """
    if not value or len(value) > ACTOR_MOST or value != value.strip() or not value.isprintable():
        raise typer.BadParameter(
            f"{value!r}: give who acted as 1 to {ACTOR_MOST} printable characters, no spaces "
            "around them"
        )
    return value


P = ParamSpec("P")
R = TypeVar("R")


def boundary(command: Callable[P, R]) -> Callable[P, R]:
    """Turn engine errors into a readable message and an exit code, never a traceback.

    Each cause has its own code (README.md, "Exit codes"): an engine error (a connector's too)
    its `exit_code`, a refused option value (`typer.BadParameter`) Click's usage error 2, a
    file or folder the operating system refused 74, a database that could not do the work 75,
    anything else 70.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except LivenessError as error:
            # soft wrap: the message stays one line, whatever the terminal's width
            # Escaped: a message may hold brackets (`pip install 'liveness[spark]'`), not markup.
            errors.print(
                f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(error.exit_code) from None
        except (typer.Exit, typer.Abort, typer.BadParameter, KeyboardInterrupt):
            # Click's own: an option value a command refuses is a usage error, exit 2.
            raise
        except OSError as error:
            # A path that is missing, a file, unwritable or on a full disk: the operator's to
            # fix, so its reason and its path, not an internal error.
            path = " -> ".join(str(p) for p in (error.filename, error.filename2) if p)
            reason = error.strerror or str(error)
            errors.print(
                f"[bold red]error:[/] {escape(reason)}{': ' + escape(path) if path else ''}",
                highlight=False, soft_wrap=True,
            )  # fmt: skip
            raise typer.Exit(FILE_ERROR) from None
        except Exception as error:  # the one top-level catch: report, never a traceback
            from sqlalchemy.exc import OperationalError

            if _debugging():
                raise
            if isinstance(error, OperationalError):
                # The database down, unreachable, locked or out of room: the operator's to
                # fix or to retry, in the driver's own first line.
                reason = str(error.orig or error).strip().splitlines()[0]
                errors.print(
                    f"[bold red]error:[/] the database could not do the work: {escape(reason)}",
                    highlight=False, soft_wrap=True,
                )  # fmt: skip
                raise typer.Exit(DATABASE_ERROR) from None
            errors.print(
                f"[bold red]internal error:[/] {type(error).__name__}: {escape(str(error))}\n"
                "set LIVENESS_DEBUG=1 to see the traceback",
                highlight=False,
            )
            raise typer.Exit(INTERNAL_ERROR) from None

    return wrapper


def _debugging() -> bool:
    """Return whether LIVENESS_DEBUG asks for tracebacks (False while settings are wrong)."""
    from liveness.settings import get_settings

    try:
        return get_settings().debug
    except LivenessError:
        return False


def migrated_services() -> Services:
    """Return the services of this process's settings, refusing a database without schema."""
    from liveness.services import Services
    from liveness.settings import get_settings

    services = Services(get_settings())
    services.require_schema()
    return services


def strict_json(value: Any) -> Any:
    """Return `value` with every missing or non-finite number (NaN, NaT, NA, inf) as None.

    Strict JSON has no NaN or Infinity: a parser that follows the standard refuses them.
    """
    if isinstance(value, Mapping):
        return {str(key): strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [strict_json(item) for item in value]
    # Plain Python values (exactly these types, no numpy or pandas subclass) need neither
    # library: a command printing only them (`liveness runs`) starts without loading them.
    if value is None or type(value) in (str, int, bool):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) in (dt.date, dt.datetime):
        return value.isoformat()
    import numpy as np
    import pandas as pd

    if isinstance(value, np.ndarray):
        return [strict_json(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    try:
        missing = bool(pd.isna(value))
    except (TypeError, ValueError):
        missing = False
    return None if missing else value


def print_json(value: Any, *, sort_keys: bool = False) -> None:
    """Print `value` as one line of strict JSON (missing values null, other types as text)."""
    line = json.dumps(
        strict_json(value), ensure_ascii=False, allow_nan=False, default=str, sort_keys=sort_keys
    )
    sys.stdout.write(line + "\n")
