"""`liveness scheduler`: run the nightly job on its schedule, or once now.

Registered in liveness/entry/cli/__init__.py behind its error boundary:
`app.command("scheduler")(boundary(scheduler_command))`.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from liveness.entry.cli.boundary import NIGHT_FAILED, STOPPED_BY_GUARD, migrated_services
from liveness.errors import DeliveryRefused

console = Console()
errors = Console(stderr=True)


@contextmanager
def _log_to_stderr() -> Iterator[None]:
    """Send the engine's and APScheduler's log records to stderr while the command runs."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def scheduler_command(
    run_now: Annotated[
        bool,
        typer.Option(
            "--run-now", help="Run the nightly job once now (as of yesterday), then exit."
        ),
    ] = False,
    once_as_of: Annotated[
        dt.datetime | None,
        typer.Option(
            "--once-as-of",
            formats=["%Y-%m-%d"],
            help="Run the nightly job once as of this date (a missed night), then exit.",
        ),
    ] = None,
) -> None:
    """Run the nightly job on its cron from config/schedule.toml (Ctrl-C stops), or once now."""
    from liveness.entry.scheduler import (
        JOB_ID,
        NOTICE_JOB_ID,
        build_scheduler,
        load_schedule_policy,
        run_nightly,
        schedule_policy_path,
    )
    from models import RunStatus

    services = migrated_services()
    policy = load_schedule_policy(schedule_policy_path(services.settings))
    with _log_to_stderr():
        if run_now or once_as_of is not None:
            result = run_nightly(
                services=services,
                as_of=once_as_of.date() if once_as_of is not None else None,
                attempts=policy.attempts,
                delay_s=policy.retry_delay_s,
            )
            if result is None:
                errors.print("[bold red]the night failed:[/] see the log above", highlight=False)
                raise typer.Exit(NIGHT_FAILED)
            if result.run_status == RunStatus.STOPPED_BY_GUARD:
                raise typer.Exit(STOPPED_BY_GUARD)
            if result.run_status != RunStatus.PUBLISHED:
                raise typer.Exit(NIGHT_FAILED)
            console.print(
                f"night as of {result.as_of}: run {result.run_id} published, "
                f"{len(result.deliveries)} deliveries, {result.refused} refused"
            )
            if result.refused:
                raise typer.Exit(DeliveryRefused.exit_code)
            return
        scheduler = build_scheduler(services, policy=policy)
        job = scheduler.get_job(JOB_ID)
        next_run = job.next_run_time if job is not None else None
        when = next_run.isoformat(sep=" ", timespec="minutes") if next_run else "never (paused)"
        late = next_run is not None and next_run < dt.datetime.now(dt.UTC)
        console.print(
            f'nightly job: cron "{policy.cron}" ({services.settings.timezone}); next run {when}'
        )
        if late:
            console.print(
                f"that night was missed: it runs now if less than "
                f"{policy.misfire_grace_time_s} s late, else it is skipped"
            )
        if scheduler.get_job(NOTICE_JOB_ID) is not None:
            console.print(
                f"death notices: pulled every {policy.notice_pull_minutes} minutes "
                "(registry_notice)"
            )
        console.print("Ctrl-C stops the scheduler")
        try:
            scheduler.start()
        except KeyboardInterrupt:
            # A night in progress finishes first; abandoning it with a second Ctrl-C is safe,
            # since a run publishes all or nothing and the next one takes over its lock.
            errors.print("stopping the scheduler", highlight=False)
            scheduler.shutdown(wait=True)
        console.print("scheduler stopped")
