"""`liveness demo`: a whole certification cycle on a simulated city, scored against its truth."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from liveness.app import Services
from liveness.db import session_scope
from liveness.ingest import INGEST_ORDER
from liveness.ingest.runner import ingest_paths
from liveness.migrate import upgrade
from liveness.runner import execute_run
from liveness.settings import get_settings
from models import Benefit, ListEntry, Person

DEMO_START = dt.date(2025, 1, 1)


def suspension_list(services: Services, run_id: int) -> pd.DataFrame:
    """Return a run's list entries as the payment system would receive them."""
    with session_scope(services.sessions) as session:
        rows = session.execute(
            select(
                ListEntry.seq, Person.person_ref, Benefit.benefit_type, ListEntry.action,
                ListEntry.reason, ListEntry.effective_on, ListEntry.amount,
            )
            .join(Person, Person.id == ListEntry.person_id)
            .join(Benefit, Benefit.id == ListEntry.benefit_id)
            .where(ListEntry.run_id == run_id)
            .order_by(ListEntry.seq)
        ).all()  # fmt: skip
    return pd.DataFrame(
        rows,
        columns=["seq", "person_ref", "benefit_type", "action", "reason", "effective_on", "amount"],
    ).astype({"benefit_type": str, "action": str, "reason": str})


def score_against_truth(
    truth: pd.DataFrame, entries: pd.DataFrame, as_of: dt.date
) -> dict[str, object]:
    """Count caught deaths and wrongful suspensions of a run against the simulation's truth."""
    died = pd.to_datetime(truth["died_on"], errors="coerce")
    dead = truth[died.notna() & (died <= pd.Timestamp(as_of))]
    suspended = set(entries.loc[entries["action"] == "suspend", "person_ref"])
    caught = dead["person_ref"].isin(suspended)
    by_record = (
        dead.assign(caught=caught.to_numpy())
        .groupby(dead["death_record"].fillna("none"))["caught"]
        .agg(["sum", "size"])
    )
    alive_refs = set(truth["person_ref"]) - set(dead["person_ref"])
    wrongful = sorted(suspended & alive_refs)
    return {
        "dead": len(dead),
        "caught": int(caught.sum()),
        "by_record": {str(k): (int(v["sum"]), int(v["size"])) for k, v in by_record.iterrows()},
        "wrongful": wrongful,
        "living": len(alive_refs),
    }


def run_demo(*, persons: int, days: int, seed: int, out: Path | None, console: Console) -> None:
    """Simulate, ingest, certify and report; files go to `out` or a temporary folder."""
    from liveness.cli import print_run_report
    from liveness.simulate import simulate_city

    started = time.perf_counter()
    folder = out or Path(tempfile.mkdtemp(prefix="liveness-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    settings = get_settings().model_copy(
        update={
            "database_url": f"sqlite:///{folder / 'state.sqlite'}",
            "evidence_dir": folder / "evidence",
        }
    )
    services = Services(settings)
    as_of = DEMO_START + dt.timedelta(days=days - 1)

    with console.status(f"simulating {persons:,} persons over {days} days"):
        summary = simulate_city(
            persons=persons, start=DEMO_START, days=days, seed=seed, out=folder / "city"
        )
    console.print(
        f"[bold]1. simulated[/] {summary.persons:,} persons, {summary.deaths:,} deaths, "
        f"{summary.traces:,} traces in {summary.files:,} files "
        f"({time.perf_counter() - started:.1f} s)"
    )

    upgrade(services.engine)
    totals = {"read": 0, "loaded": 0, "redelivered": 0, "quarantined": 0, "unmatched": 0}
    refused = []
    with console.status("ingesting") as status:
        for source in INGEST_ORDER:
            status.update(f"ingesting {source}")
            for report in ingest_paths(services, source=source, paths=[folder / "city" / source]):
                totals["read"] += report.rows_read
                totals["loaded"] += report.loaded
                totals["redelivered"] += report.redelivered
                totals["quarantined"] += report.quarantined
                totals["unmatched"] += report.unmatched
                if report.error:
                    refused.append(report.error)
    console.print(
        f"[bold]2. ingested[/] {totals['read']:,} rows: {totals['loaded']:,} loaded, "
        f"{totals['redelivered']:,} re-delivered, {totals['quarantined']:,} quarantined "
        f"({totals['unmatched']:,} matched nobody, kept) "
        f"({time.perf_counter() - started:.1f} s)"
    )
    for error in refused:
        console.print(f"   [red]refused:[/] {error}")

    if days >= 300:
        from liveness.estimator import demo_evaluation

        # Train half-way through the year, evaluate on what the next 90 days revealed.
        train_as_of = DEMO_START + dt.timedelta(days=days // 2 - 1)
        with console.status("training the learned estimator"):
            evaluation = demo_evaluation(
                services, train_as_of=train_as_of,
                evaluate_as_of=train_as_of + dt.timedelta(days=90), horizon_days=90,
            )  # fmt: skip
        console.print(
            f"[bold]3. learned estimator[/] trained as of {train_as_of}, beside the rules "
            f"({time.perf_counter() - started:.1f} s)"
        )
        evaluation.render(console)

    run = execute_run(services, as_of=as_of)
    console.print(f"[bold]4. certified[/] as of {as_of} ({time.perf_counter() - started:.1f} s)")
    print_run_report(run.report)

    entries = suspension_list(services, run.id)
    list_path = folder / "suspensions.csv"
    entries.to_csv(list_path, index=False)
    truth = pd.read_csv(folder / "city" / "truth.csv", dtype=str, keep_default_na=False)
    truth = truth.replace({"": None})
    scored = score_against_truth(truth, entries, as_of)
    table = Table(title="against the simulation's truth")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("people who died in the period", f"{scored['dead']:,}")
    table.add_row("  of whom suspended (caught)", f"{scored['caught']:,}")
    for record, (caught, total) in scored["by_record"].items():  # type: ignore[attr-defined]
        table.add_row(f"    death evidence: {record}", f"{caught:,} of {total:,}")
    table.add_row("living people", f"{scored['living']:,}")
    table.add_row("  of whom wrongly suspended", f"{len(scored['wrongful']):,}")  # type: ignore[arg-type]
    console.print(table)
    console.print(f"suspension list: {list_path}")
    console.print(f"[bold]done[/] in {time.perf_counter() - started:.1f} s; files in {folder}")
