"""The `liveness evidence` commands: maintenance of the Parquet evidence store."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

import typer
from rich.table import Table

from liveness.entry.cli.boundary import LARGEST, boundary

evidence_app = typer.Typer(no_args_is_help=True, help="Maintain the evidence store.")

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@evidence_app.command("compact")
def compact_command(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    month: Annotated[str | None, typer.Option(help="Only this month (YYYY-MM).")] = None,
    grace_minutes: Annotated[
        int | None,
        typer.Option(
            min=0, max=LARGEST, help="Keep unreferenced files younger than this (default 60)."
        ),
    ] = None,
) -> None:
    """Merge each month's parts into one part clustered by person, then remove orphan files.

    Also removes the summaries of replaced parts and of parts older than the long window.
    """
    boundary(_compact)(source=source, month=month, grace_minutes=grace_minutes)


def _compact(*, source: str | None, month: str | None, grace_minutes: int | None) -> None:
    """Compact every selected (source, month) in a transaction of its own, then clean up."""
    from liveness.db import session_scope
    from liveness.entry.cli.boundary import console, migrated_services
    from liveness.entry.jobs import local_today
    from liveness.evidence.compaction import (
        ORPHAN_GRACE,
        compact_store,
        remove_orphans,
    )

    if month is not None and not MONTH.match(month):
        raise typer.BadParameter(f"{month!r}: expected YYYY-MM", param_hint="'--month'")
    services = migrated_services()
    store = services.store
    results = compact_store(services.sessions, store=store, source=source, month=month)
    table = Table(title="evidence compaction")
    for column in ("source", "month", "parts", "rows before", "rows after", "compacted"):
        table.add_column(column, justify="left" if column in ("source", "month") else "right")
    for result in results:
        table.add_row(
            result.source, result.month, f"{result.parts_before:,}", f"{result.rows_before:,}",
            f"{result.rows_after:,}", "yes" if result.compacted else "no",
        )  # fmt: skip
    grace = ORPHAN_GRACE if grace_minutes is None else dt.timedelta(minutes=grace_minutes)
    # Summaries of parts before today's long window are read by no nightly run any more.
    window_start = local_today(services) - dt.timedelta(days=services.policies.scoring.long)
    with session_scope(services.sessions) as session:
        removed = remove_orphans(session, store=store, grace=grace, summaries_before=window_start)
    console.print(table)
    console.print(f"{len(removed):,} unreferenced files removed")
