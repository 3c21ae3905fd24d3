"""The `liveness` command line: a thin boundary that opens transactions and prints results."""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from liveness.entry.cli.access import clients_app
from liveness.entry.cli.boundary import (
    DAYS_MOST,
    LARGEST,
    STOPPED_BY_GUARD,
    actor_name,
    boundary,
    console,
    errors,
    migrated_services,
    print_json,
)
from liveness.entry.cli.estimator import classifier_app
from liveness.entry.cli.evidence import evidence_app
from liveness.entry.cli.integrity import leads_command, orders_app
from liveness.entry.cli.scheduler import scheduler_command
from liveness.errors import ConfigurationError, DeliveryRefused

# The core, pandas and SQLAlchemy load inside the command that needs them, so that `--help`
# starts at once (bench/startup measures it; tests/liveness/test_install.py checks it).
if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.orm import Session

    from liveness.ingest import DeliveryReport
    from liveness.services import Services

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Non-intrusive survival certification (全息无感认证) for benefit recipients.",
)
db_app = typer.Typer(no_args_is_help=True, help="Manage the state database's schema.")
app.add_typer(db_app, name="db")
quarantine_app = typer.Typer(no_args_is_help=True, help="Rows that could not be understood.")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(classifier_app, name="classifier")
app.add_typer(evidence_app, name="evidence")
app.add_typer(clients_app, name="clients")
app.add_typer(orders_app, name="orders")
tasks_app = typer.Typer(no_args_is_help=True, help="Review tasks: record what a review found.")
app.add_typer(tasks_app, name="tasks")
notices_app = typer.Typer(no_args_is_help=True, help="Notices to people: pending, sent, letters.")
app.add_typer(notices_app, name="notices")
lists_app = typer.Typer(no_args_is_help=True, help="The suspension and reinstatement list.")
app.add_typer(lists_app, name="lists")
config_app = typer.Typer(no_args_is_help=True, help="The policy files (config/*.toml).")
app.add_typer(config_app, name="config")


@app.callback()
def _fresh_settings() -> None:
    # Each invocation reads its settings anew (one process may run several, as tests do);
    # settings not loaded yet have nothing cached.
    settings = sys.modules.get("liveness.settings")
    if settings is not None:
        settings.get_settings.cache_clear()


app.command("scheduler")(boundary(scheduler_command))
app.command("leads")(boundary(leads_command))


def _services() -> Services:
    from liveness.services import Services
    from liveness.settings import get_settings

    return Services(get_settings())


@db_app.command("upgrade")
@boundary
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the database schema."""
    from liveness.migrate import current_revision, upgrade

    services = _services()
    upgrade(services.engine, revision)
    console.print(f"database at revision {current_revision(services.engine)}")


@db_app.command("current")
@boundary
def db_current() -> None:
    """Print the database's schema revision."""
    from liveness.migrate import current_revision

    console.print(current_revision(_services().engine) or "no schema")


# Whether the simulated city delivers the declared data scenarios too (sources.toml).
ScenariosOption = Annotated[
    bool,
    typer.Option(
        "--scenarios/--no-scenarios",
        help="Simulate the declared data scenarios too (travel, health checks, community, "
        "counters, long-term care, vaccinations, medical care out of the province, family "
        "doctors).",
    ),
]


# Bounds of a simulated city, beyond which a value is a usage error rather than an overflow
# deep in NumPy: a province's roll, births a century and more before its start.
SIMULATED_MOST = 100_000_000
START_EARLIEST = dt.date(1200, 1, 1)


@app.command()
@boundary
def simulate(
    out: Annotated[Path, typer.Option(help="Folder to write the deliveries to.")],
    persons: Annotated[
        int, typer.Option(min=1, max=SIMULATED_MOST, help="Persons on the roll.")
    ] = 20_000,
    start: Annotated[
        dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="First simulated day.")
    ] = dt.datetime(2025, 1, 1),
    days: Annotated[int, typer.Option(min=1, max=DAYS_MOST, help="Days to simulate.")] = 365,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 1,
    scenarios: ScenariosOption = True,
) -> None:
    """Write a simulated city's deliveries for every source, and its truth."""
    from liveness.simulate import simulate_city

    # Pensioners born up to a century and more before the start, traces until its end: both
    # must be calendar dates (years 1 to 9999).
    if not START_EARLIEST <= start.date() <= dt.date.max - dt.timedelta(days=days):
        raise typer.BadParameter(
            f"{start.date()}: the simulated city needs births a century before it and "
            f"{days} days after it on the calendar (from {START_EARLIEST})",
            param_hint="'--start'",
        )
    if out.is_dir() and any(out.iterdir()):
        # Files of what it holds that this city does not rewrite (a longer city's days, another
        # folder's own files) would stay, mixed with this city's and ingested as its deliveries.
        raise typer.BadParameter(
            f"{out} is not empty: give a new or empty folder for the simulated city",
            param_hint="'--out'",
        )
    summary = simulate_city(
        persons=persons, start=start.date(), days=days, seed=seed, out=out, scenarios=scenarios
    )
    console.print(
        f"simulated {summary.persons:,} persons over {days} days: {summary.deaths:,} deaths, "
        f"{summary.traces:,} traces in {summary.files:,} files under {summary.out}"
    )


def print_delivery_reports(reports: list[DeliveryReport]) -> None:
    """Print one line per delivery with the fate of its rows."""
    table = Table(title="deliveries", show_lines=False)
    for column in ("source", "file", "status", "read", "loaded", "re-delivered", "quarantined",
                   "unmatched"):  # fmt: skip
        table.add_column(column, justify="right" if column not in ("source", "file") else "left")
    for report in reports:
        status = report.status if report.error is None else f"[red]{report.status}[/]"
        table.add_row(
            report.source, Path(report.file).name, status, f"{report.rows_read:,}",
            f"{report.loaded:,}", f"{report.redelivered:,}", f"{report.quarantined:,}",
            f"{report.unmatched:,}",
        )  # fmt: skip
    console.print(table)
    for report in reports:
        if report.error:
            errors.print(f"[bold red]refused:[/] {report.error}", highlight=False)


@app.command()
@boundary
def ingest(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Delivery files or folders of them.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Source the deliveries come from.")] = None,
    all_sources: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Load every configured source: its folder's new files, or a SQL/HTTP pull "
            "since its stored watermark.",
        ),
    ] = False,
    format: Annotated[
        str | None, typer.Option(help="csv, csv.gz, parquet or jsonl (overrides the config).")
    ] = None,
    encoding: Annotated[
        str | None, typer.Option(help="utf-8, utf-8-sig or gb18030 (overrides the config).")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per delivery.")
    ] = False,
) -> None:
    """Load deliveries: every row is loaded, recognised as a re-delivery, or quarantined."""
    from liveness.ingest.runner import ingest_all, ingest_paths

    services = _services()
    show_progress = not json_output and errors.is_terminal
    if all_sources:
        if paths or source:
            raise typer.BadParameter(
                "it loads every configured source: give no PATH or --source", param_hint="'--all'"
            )
        reports = ingest_all(
            services, show_progress=show_progress, console=errors,
            warn=lambda message: errors.print(f"[yellow]{message}[/]", highlight=False),
        )  # fmt: skip
    else:
        if source is None or not paths:
            raise typer.BadParameter("give --source NAME and one or more PATHs, or --all")
        reports = ingest_paths(
            services, source=source, paths=paths, format=format, encoding=encoding,
            show_progress=show_progress, console=errors,
        )  # fmt: skip
    if json_output:
        for report in reports:
            print_json(report.as_dict())
    else:
        print_delivery_reports(reports)
    if any(report.status == "refused" for report in reports):
        raise typer.Exit(DeliveryRefused.exit_code)


@app.command("run")
@boundary
def run_command(
    as_of: Annotated[
        dt.datetime, typer.Option("--as-of", formats=["%Y-%m-%d"], help="Date the run is as of.")
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    override_guard: Annotated[
        bool,
        typer.Option(
            "--override-guard",
            help="Publish even if the mass-downgrade breaker trips (recorded in the report).",
        ),
    ] = False,
    compact: Annotated[
        bool,
        typer.Option(
            "--compact/--no-compact",
            help="First merge each month's small parts into one, as the nightly job does.",
        ),
    ] = True,
) -> None:
    """Grade everyone as of a date, open reviews, and publish suspensions."""
    from liveness.certification.runner import execute_run
    from liveness.entry.reports import print_run_report
    from liveness.evidence.compaction import compact_store
    from models import RunStatus

    services = migrated_services()
    if compact:
        # A run by hand reads what the nightly job would: one part per source and month, so
        # that no small daily part keeps a summary the size of the roll.
        compact_store(services.sessions, store=services.store)
    run = execute_run(services, as_of=as_of.date(), override_guard=override_guard)
    if json_output:
        payload = {"run_id": run.id, "status": run.status, **run.report}
        print_json(payload)
    elif run.status == RunStatus.PUBLISHED:
        print_run_report(run.report, to=console)
    if run.status == RunStatus.STOPPED_BY_GUARD:
        guard = run.report["guard"]
        errors.print(
            f"[bold red]run {run.id} stopped by the mass-downgrade guard, nothing published:[/] "
            + "; ".join(guard["reasons"])
            + f"\ntransitions: {guard['transitions']}\n"
            "check the sources (liveness deliveries), then rerun, or rerun with --override-guard",
            highlight=False,
        )
        raise typer.Exit(STOPPED_BY_GUARD)


@app.command()
@boundary
def demo(
    persons: Annotated[
        int, typer.Option(min=100, max=SIMULATED_MOST, help="Persons in the simulated city.")
    ] = 20_000,
    days: Annotated[int, typer.Option(min=30, max=DAYS_MOST, help="Days to simulate.")] = 365,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the demo's files (default: a temporary one).")
    ] = None,
    months: Annotated[
        int,
        typer.Option(min=0, max=DAYS_MOST // 30, help="Monthly cycles to run before the last day."),
    ] = 3,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the figures as one JSON object.")
    ] = False,
    scenarios: ScenariosOption = True,
    ablation: Annotated[
        bool,
        typer.Option(
            "--ablation",
            help="Run the cycles again once per data scenario, without it, then once without "
            "any, and compare (about a minute more per rerun).",
        ),
    ] = False,
    nightly_last_month: Annotated[
        bool,
        typer.Option(
            "--nightly-last-month",
            help="Also run the last month nightly, with and without the civil registry's "
            "death notices, and compare the days from death to suspension (longer).",
        ),
    ] = False,
) -> None:
    """Simulate a city, ingest it, run monthly certification cycles, score against the truth."""
    from liveness.entry.demo import run_demo

    figures = run_demo(
        persons=persons, days=days, seed=seed, out=out, months=months, json_output=json_output,
        console=Console(quiet=True) if json_output else console, scenarios=scenarios,
        ablation=ablation, nightly=nightly_last_month,
    )  # fmt: skip
    if json_output:
        print_json(figures)


def print_frame(frame: pd.DataFrame, *, title: str, json_output: bool) -> None:
    """Print a table for people, or one JSON object per row with --json."""
    import pandas as pd

    if json_output:
        for record in frame.to_dict("records"):
            print_json(record)
        return
    table = Table(title=f"{title} ({len(frame):,})")
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*("" if pd.isna(value) else str(value) for value in row))
    console.print(table)


def print_rows(
    rows: list[dict[str, Any]], columns: list[str], *, title: str, json_output: bool
) -> None:
    """Print rows of plain values as `print_frame` prints a frame, without loading pandas."""
    if json_output:
        for record in rows:
            print_json({column: record[column] for column in columns})
        return
    table = Table(title=f"{title} ({len(rows):,})")
    for column in columns:
        table.add_column(column, overflow="fold")
    for record in rows:
        table.add_row(
            *("" if record[column] is None else str(record[column]) for column in columns)
        )
    console.print(table)


JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
SourceFilter = Annotated[str | None, typer.Option(help="Only this source.")]


def check_source_filter(services: Services, session: Session, source: str | None) -> None:
    """Refuse a `--source` that is no configured source and delivered nothing: a typo.

    Listed silently, it showed an empty table, as if that source had nothing to show.
    """
    if source is None or source in services.source_configs:
        return
    from sqlalchemy import select

    from models import Delivery

    if session.scalar(select(Delivery.id).where(Delivery.source == source).limit(1)) is None:
        raise typer.BadParameter(
            f"{source!r} is no source; known sources: {', '.join(services.source_configs)}",
            param_hint="'--source'",
        )


@app.command()
@boundary
def deliveries(
    source: SourceFilter = None,
    limit: Annotated[int, typer.Option(min=1, max=LARGEST, help="How many, newest first.")] = 50,
    json_output: JsonOption = False,
) -> None:
    """List the delivery log: every file, its checksum and the fate of its rows."""
    from liveness.db import session_scope
    from liveness.ingest.queries import delivery_log

    services = migrated_services()
    with session_scope(services.sessions) as session:
        check_source_filter(services, session, source)
        frame = delivery_log(session, source=source, limit=limit)
    shown = frame if json_output else frame.drop(columns=["checksum", "error"])
    print_frame(shown, title="deliveries", json_output=json_output)


@quarantine_app.command("list")
@boundary
def quarantine_list(
    source: SourceFilter = None,
    limit: Annotated[int, typer.Option(min=1, max=LARGEST, help="How many rows at most.")] = 100,
    json_output: JsonOption = False,
) -> None:
    """List quarantined rows: file, line, reason and raw text."""
    from liveness.db import session_scope
    from liveness.ingest.queries import quarantined_rows

    services = migrated_services()
    with session_scope(services.sessions) as session:
        check_source_filter(services, session, source)
        frame = quarantined_rows(session, source=source, limit=limit)
    print_frame(frame, title="quarantined rows", json_output=json_output)


@quarantine_app.command("export")
@boundary
def quarantine_export(
    out: Annotated[Path, typer.Option(help="CSV file to write.")],
    source: SourceFilter = None,
) -> None:
    """Export every quarantined row to a CSV file (UTF-8 with BOM, for spreadsheets)."""
    from liveness.db import session_scope
    from liveness.ingest.queries import quarantined_rows

    services = migrated_services()
    with session_scope(services.sessions) as session:
        check_source_filter(services, session, source)
        frame = quarantined_rows(session, source=source)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False, encoding="utf-8-sig")
    console.print(f"{len(frame):,} quarantined rows written to {out}")


@app.command()
@boundary
def unmatched(
    source: SourceFilter = None,
    json_output: JsonOption = False,
) -> None:
    """List evidence that matched nobody on the roll (kept, never dropped), and why."""
    from liveness.db import session_scope
    from liveness.ingest.queries import unmatched_death_records, unmatched_evidence
    from liveness.ingest.relink import relink_pending

    services = migrated_services()
    sources = tuple(services.traces) if source is None else (source,)
    with session_scope(services.sessions) as session:
        check_source_filter(services, session, source)
        traces = unmatched_evidence(
            session, store=services.store, sources=sources, links=services.trace_links
        )
        deaths = unmatched_death_records(session)
        pending = relink_pending(session)
    if source is not None:
        deaths = deaths[deaths["source"] == source]
    if json_output:
        print_frame(traces.assign(kind="trace"), title="", json_output=True)
        print_frame(deaths.assign(kind="death_record"), title="", json_output=True)
        return
    print_frame(traces, title="traces that matched nobody, by key", json_output=False)
    print_frame(deaths, title="death records that act on nobody", json_output=False)
    if pending:
        errors.print(
            "[yellow]the roll or the cards changed since evidence was last relinked: "
            "run `liveness relink`[/]",
            highlight=False,
        )


@app.command("relink")
@boundary
def relink_command(json_output: JsonOption = False) -> None:
    """Link again stored evidence that matched nobody, against today's roll and cards."""
    from liveness.db import session_scope
    from liveness.ingest.relink import relink

    services = migrated_services()
    with session_scope(services.sessions) as session:
        report = relink(
            session,
            store=services.store,
            demographic_confidence=services.certification_policy.demographic_confidence,
            links=services.trace_links,
        )
    if json_output:
        print_json(report.as_dict())
        return
    console.print(
        f"relinked against roll and card deliveries through #{report.through_delivery_id}: "
        f"{report.traces_linked:,} traces linked in {report.parts_rewritten:,} of "
        f"{report.parts_read:,} parts read; {report.cards_relinked:,} card holders, "
        f"{report.death_records_matched:,} death records and "
        f"{report.deregistrations_matched:,} deregistrations matched "
        f"({report.seconds:.1f} s)"
    )


@app.command("runs")
@boundary
def runs_command(
    limit: Annotated[int, typer.Option(min=1, max=LARGEST, help="How many, newest first.")] = 20,
    json_output: JsonOption = False,
) -> None:
    """List the latest runs with their state."""
    from liveness.certification.runner import runs

    services = migrated_services()
    rows = [
        {
            "id": run.id, "as_of": run.as_of, "status": str(run.status),
            "started_at": f"{run.started_at:%Y-%m-%d %H:%M:%S}",
            "finished_at": f"{run.finished_at:%Y-%m-%d %H:%M:%S}" if run.finished_at else "",
            "persons": _whole(run.report.get("persons")), "error": run.error,
        }
        for run in runs(services, limit=limit)
    ]  # fmt: skip
    # Printed without pandas, as print_frame would (a few rows): `liveness runs` starts fast.
    print_rows(
        rows, ["id", "as_of", "status", "started_at", "finished_at", "persons", "error"],
        title="runs", json_output=json_output,
    )  # fmt: skip


@app.command("prune")
@boundary
def prune_command(json_output: JsonOption = False) -> None:
    """Delete the assessments superseded before the retention period (the nightly job does)."""
    from liveness.certification.assessments import prune_assessments
    from liveness.certification.runner import local_today
    from liveness.db import session_scope

    services = migrated_services()
    days = services.policies.certification.assessment_retention_days
    with session_scope(services.sessions) as session:
        pruned = prune_assessments(session, today=local_today(services), retention_days=days)
    if json_output:
        print_json({"assessments_pruned": pruned, "retention_days": days})
    else:
        console.print(f"pruned {pruned:,} assessments superseded more than {days} days ago")


def _whole(value: Any) -> int | None:
    """Return a figure as a whole number, None when missing (what an Int64 column holds)."""
    return None if value is None else int(value)


# What a deceased or a moved_away outcome needs, recorded or corrected alike.
DiedOnOption = Annotated[
    dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="For deceased.")
]
NewRegionOption = Annotated[str | None, typer.Option(help="For moved_away: the new region.")]


@tasks_app.command("outcome")
@boundary
def task_outcome(
    task_id: Annotated[int, typer.Argument(min=1, max=LARGEST, help="The review task.")],
    outcome: Annotated[str, typer.Option(help="What the review found (e.g. alive_confirmed).")],
    by: Annotated[
        str,
        typer.Option(callback=actor_name, help="Who found it (recorded, and kept from approving)."),
    ],
    on: Annotated[
        dt.datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Day of the review (default today; not after it, nor before the task opened).",
        ),
    ] = None,
    died_on: DiedOnOption = None,
    region: NewRegionOption = None,
    note: Annotated[str | None, typer.Option(help="A note for the file.")] = None,
) -> None:
    """Record a review's outcome; the next run applies it (certifies, suspends, reinstates)."""
    from liveness.access.audit import record_audit
    from liveness.db import session_scope
    from liveness.entry.jobs import local_today
    from liveness.review.outcomes import record_outcome

    services = migrated_services()
    day = on.date() if on else local_today(services)
    with session_scope(services.sessions) as session:
        task = record_outcome(
            session, task_id=task_id, outcome=outcome, actor=by, on=day,
            died_on=died_on.date() if died_on else None, region=region, note=note,
            today=local_today(services),
        )  # fmt: skip
        record_audit(session, actor=by, action="task_outcome", target_type="review_task",
                     target_ref=str(task_id), detail={"outcome": outcome})  # fmt: skip
        console.print(f"task {task.id}: {task.outcome}, applied by the next run")


@tasks_app.command("correct")
@boundary
def task_correct(
    task_id: Annotated[
        int, typer.Argument(min=1, max=LARGEST, help="The review task whose outcome to correct.")
    ],
    outcome: Annotated[str, typer.Option(help="The outcome the review really had.")],
    by: Annotated[
        str,
        typer.Option(
            callback=actor_name, help="The supervisor correcting it (not who recorded it)."
        ),
    ],
    note: Annotated[str, typer.Option(help="Why: kept on record with the correction.")],
    on: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Day of the correction.")
    ] = None,
    died_on: DiedOnOption = None,
    region: NewRegionOption = None,
) -> None:
    """Correct a recorded outcome on record; a corrected `deceased` withdraws its death."""
    from liveness.access.audit import record_audit
    from liveness.db import session_scope
    from liveness.entry.jobs import local_today
    from liveness.review.outcomes import correct_outcome

    services = migrated_services()
    day = on.date() if on else local_today(services)
    with session_scope(services.sessions) as session:
        task = correct_outcome(
            session, task_id=task_id, outcome=outcome, actor=by, on=day, note=note,
            died_on=died_on.date() if died_on else None, region=region,
        )  # fmt: skip
        record_audit(session, actor=by, action="task_outcome_corrected", target_type="review_task",
                     target_ref=str(task_id),
                     detail=task.outcome_detail["corrections"][-1])  # fmt: skip
        console.print(f"task {task.id}: corrected to {task.outcome}, applied by the next run")


@notices_app.command("list")
@boundary
def notices_list(
    limit: Annotated[int, typer.Option(min=1, max=LARGEST, help="How many, oldest first.")] = 100,
    json_output: JsonOption = False,
) -> None:
    """List the notices waiting to be sent, oldest first."""
    import pandas as pd

    from liveness.db import session_scope
    from liveness.views.gateways import pending_notices

    services = migrated_services()
    with session_scope(services.sessions) as session:
        rows, total = pending_notices(session, limit=limit, offset=0)
    frame = pd.DataFrame([dict(row._mapping) for row in rows])
    print_frame(frame, title=f"pending notices (of {total:,})", json_output=json_output)


@notices_app.command("sent")
@boundary
def notices_sent(
    notice_ids: Annotated[list[int], typer.Argument(min=1, max=LARGEST, help="The notices sent.")],
    by: Annotated[
        str, typer.Option(callback=actor_name, help="Who sent or handed them over (logged).")
    ],
    letter: Annotated[
        bool, typer.Option("--letter", help="Sent as a letter posted or handed over by staff.")
    ] = False,
    on: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Day they were sent.")
    ] = None,
) -> None:
    """Record notices as sent: only a sent notice gives a lapse its notice period."""
    from zoneinfo import ZoneInfo

    from liveness.access.audit import record_audit
    from liveness.access.gateways import mark_notice_sent
    from liveness.db import session_scope
    from liveness.entry.jobs import local_today
    from models import Notice, NoticeChannel, NoticeStatus

    services = migrated_services()
    day = on.date() if on else local_today(services)
    if day > local_today(services):
        raise typer.BadParameter(
            f"{day.isoformat()}: a notice cannot be sent in the future", param_hint="'--on'"
        )
    zone = ZoneInfo(services.settings.timezone)
    sent_at = dt.datetime.combine(day, dt.time(12), tzinfo=zone).astimezone(dt.UTC)
    unique = list(dict.fromkeys(notice_ids))  # each notice once, however often it is named
    earlier = 0
    with session_scope(services.sessions) as session:
        for notice_id in unique:
            # Marked before: its first day stands (a later one would move the notice period).
            known = session.get(Notice, notice_id)
            already = known is not None and known.status == NoticeStatus.SENT
            notice = mark_notice_sent(
                session, notice_id=notice_id, sent_at=sent_at,
                channel=NoticeChannel.LETTER if letter else None, zone=zone,
            )  # fmt: skip
            earlier += already
            record_audit(
                session, actor=by, action="notice_sent", target_type="notice",
                target_ref=str(notice_id),
                detail={"channel": str(notice.channel), "already_sent": already},
            )  # fmt: skip
    console.print(
        f"{len(unique) - earlier:,} notices recorded as sent on {day.isoformat()}"
        + (f"; {earlier:,} already recorded as sent, their first day kept" if earlier else "")
    )


@lists_app.command("approve")
@boundary
def lists_approve(
    entry_id: Annotated[int, typer.Argument(min=1, max=LARGEST, help="The held list entry.")],
    operator: Annotated[
        str,
        typer.Option(
            callback=actor_name, help="The approving operator (not the one who caused it)."
        ),
    ],
) -> None:
    """Approve a held entry as a second operator: a new published entry carries it out."""
    from liveness.access.audit import record_audit
    from liveness.db import session_scope
    from liveness.lists import approve_entry

    services = migrated_services()
    with session_scope(services.sessions) as session:
        approval = approve_entry(session, entry_id=entry_id, operator=operator)
        record_audit(session, actor=operator, action="list_entry_approved",
                     target_type="list_entry", target_ref=str(entry_id),
                     detail={"approval_seq": approval.seq})  # fmt: skip
        console.print(f"entry {entry_id} approved by {operator}: published as seq {approval.seq}")


@lists_app.command("reject")
@boundary
def lists_reject(
    entry_id: Annotated[int, typer.Argument(min=1, max=LARGEST, help="The held list entry.")],
    operator: Annotated[
        str,
        typer.Option(
            callback=actor_name, help="The rejecting operator (not the one who caused it)."
        ),
    ],
    reason: Annotated[str, typer.Option(help="Why, in words; kept on the entry.")],
) -> None:
    """Reject a held entry as a second operator: the benefit's suspension stands."""
    from liveness.access.audit import record_audit
    from liveness.db import session_scope
    from liveness.lists import reject_entry

    services = migrated_services()
    with session_scope(services.sessions) as session:
        reject_entry(session, entry_id=entry_id, operator=operator, reason=reason)
        record_audit(session, actor=operator, action="list_entry_rejected",
                     target_type="list_entry", target_ref=str(entry_id),
                     detail={"reason": reason})  # fmt: skip
        console.print(f"entry {entry_id} rejected by {operator}: the suspension stands")


@lists_app.command("audit-sample")
@boundary
def lists_audit_sample(
    month: Annotated[str, typer.Option(help="The month whose decisions to sample, YYYY-MM.")],
    by: Annotated[str, typer.Option(callback=actor_name, help="Who draws the sample (logged).")],
    out: Annotated[Path | None, typer.Option(help="Also write the sample to this CSV.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Draw the month's audit sample (at least the policy's share of its decisions)."""
    from liveness.db import session_scope
    from liveness.entry.jobs import local_today
    from liveness.lists.audit import draw_sample

    services = migrated_services()
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise typer.BadParameter(f"{month!r}: expected YYYY-MM", param_hint="'--month'")
    with session_scope(services.sessions) as session:
        sample = draw_sample(
            session, month=month, share=services.policies.certification.audit_share, actor=by,
            today=local_today(services),
        )  # fmt: skip
    if out is not None:
        sample.to_csv(out, index=False, encoding="utf-8-sig")
    print_frame(sample, title=f"audit sample of {month}", json_output=json_output)


@app.command("init")
@boundary
def init_command(
    folder: Annotated[Path, typer.Argument(help="Folder to write the policy files to.")],
    force: Annotated[bool, typer.Option(help="Overwrite policy files already there.")] = False,
) -> None:
    """Write an editable copy of the shipped policy files, with their comments, to FOLDER."""
    from liveness.entry.policy_check import write_policy_copy

    for path in write_policy_copy(folder, force=force):
        console.print(f"wrote {path}", highlight=False)
    console.print(
        f"edit them, check with `liveness config check {folder}`, and point "
        f"LIVENESS_CONFIG_DIR at {folder}",
        highlight=False,
    )


@config_app.command("check")
@boundary
def config_check(
    folder: Annotated[
        Path | None,
        typer.Argument(help="Folder of policy files (default: the configured one)."),
    ] = None,
) -> None:
    """Validate every policy file of a folder; print each file's version or its error."""
    from liveness.settings import get_settings

    _check_policy_folder(folder if folder is not None else get_settings().config_dir)


def _check_policy_folder(folder: Path, *, quiet: bool = False) -> None:
    """Print each policy file's version (unless `quiet`) or its error; refuse an invalid folder."""
    from liveness.entry.policy_check import check_policy_folder

    if not folder.is_dir():
        raise ConfigurationError(f"{folder}: no such policy folder")
    checks = check_policy_folder(folder)
    for check in checks:
        if check.error is None:
            if not quiet:
                console.print(f"{check.name:<20} {check.version}", highlight=False)
        else:
            errors.print(
                f"{check.name:<20} [bold red]error:[/] {check.error}",
                highlight=False,
                soft_wrap=True,
            )
    failed = sum(check.error is not None for check in checks)
    if failed:
        raise ConfigurationError(f"{folder}: {failed} of {len(checks)} policy files are invalid")


@app.command("what-if")
@boundary
def what_if_command(
    policy: Annotated[
        Path, typer.Option("--policy", help="Candidate policy folder (a copy of the live one).")
    ],
    first: Annotated[
        dt.datetime,
        typer.Option("--from", formats=["%Y-%m-%d"], help="First day of the period replayed."),
    ],
    last: Annotated[
        dt.datetime,
        typer.Option("--to", formats=["%Y-%m-%d"], help="Last day of the period replayed."),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object.")
    ] = False,
    scratch: Annotated[
        Path | None,
        typer.Option(help="Keep the two replays' scratch states in this (new or empty) folder."),
    ] = None,
) -> None:
    """Replay a period's history under a candidate policy and the live one; compare them."""
    from liveness.entry.whatif import print_what_if
    from liveness.whatif import save_report, what_if

    _check_policy_folder(policy, quiet=True)
    services = migrated_services()
    with errors.status("replaying the history under both policies"):
        report = what_if(
            services, policy_dir=policy, first=first.date(), last=last.date(), scratch=scratch
        )
    report_id = save_report(services, report)
    if json_output:
        print_json({"id": report_id, **report})
        return
    print_what_if(report, to=console)
    console.print(
        f"kept as what-if report {report_id} "
        f"({services.settings.whatif_reports_dir / report_id}.json)",
        highlight=False,
    )


@app.command("serve")
@boundary
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the HTTP API (/api/v1; OpenAPI at /docs)."""
    from liveness.entry.cli.serve import serve_command  # lazy: the API loads only to serve

    serve_command(host=host, port=port)


def main() -> None:
    """Run the command line."""
    app()
